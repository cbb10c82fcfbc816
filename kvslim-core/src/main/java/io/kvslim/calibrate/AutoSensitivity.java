package io.kvslim.calibrate;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.kvslim.engine.Engine;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.policy.AutoPlanner;
import io.kvslim.kv.policy.AutoPolicy;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.model.ModelConfig;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

/**
 * The adaptive controller's section of a calibration profile ({@code "auto"}, read by {@code
 * auto}): for every layer and KV head, the mean KL divergence of the next-token distribution from
 * the full cache's when that head alone keeps a share of its prompt tokens ({@link
 * AutoPlanner#KEEP}, SnapKV's selection, {@code evict[l][g][k]}; the same with the evicted tokens
 * merged into the kept ones, {@code merged[l][g][k]}, what {@code auto:merge=true} plans with) and
 * when that head alone is stored at each format level ({@link AutoPolicy#LEVELS}, {@code
 * quant[l][g][b]}); every other head stays whole in F32. Measured on the text's first {@code
 * prefill + decode} tokens: the prefix is prefilled, the policy acts, then {@code decode} tokens
 * are decoded (teacher-forced) and their logits compared. JSON: {@code "auto": {"prefill",
 * "decode", "window", "keep": [K], "levels": [B], "evict": [L][G][K], "merged": [L][G][K], "quant":
 * [L][G][B]}}.
 */
public record AutoSensitivity(
    int prefill,
    int decode,
    int window,
    double[][][] evict,
    double[][][] merged,
    double[][][] quant) {

  /** The recent tokens every head keeps while measured. */
  public static final int WINDOW = 32;

  private static final ObjectMapper JSON =
      new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
  // read once per profile read (a profile read again, after the file changed, reads it again)
  private static final java.util.Map<CalibrationProfile, AutoSensitivity> READ =
      java.util.Collections.synchronizedMap(new java.util.WeakHashMap<>());

  /**
   * The planner's curves, {@code [layer][kvHead]}: eviction measured with the evicted tokens merged
   * ({@code merge}) or dropped.
   */
  public AutoPlanner.Head[][] curves(boolean merge) {
    double[][][] evict = merge ? merged : this.evict;
    AutoPlanner.Head[][] out = new AutoPlanner.Head[evict.length][];
    for (int l = 0; l < evict.length; l++) {
      out[l] = new AutoPlanner.Head[evict[l].length];
      for (int g = 0; g < evict[l].length; g++) {
        out[l][g] = new AutoPlanner.Head(evict[l][g], quant[l][g]);
      }
    }
    return out;
  }

  /**
   * Measures the model of {@code engine} on {@code text} (token ids): up to 544 tokens, the last 32
   * (an eighth of shorter texts) decoded. Deterministic: same model and text, same numbers.
   */
  public static AutoSensitivity measure(Engine engine, int[] text) {
    ModelConfig c = engine.config();
    int n = Math.min(Math.min(text.length, c.contextLength()), 544);
    int decode = Math.min(32, n / 8);
    int prefill = n - decode;
    if (decode < 1 || prefill <= WINDOW) {
      throw new IllegalArgumentException(
          "the adaptive controller's calibration needs at least "
              + (WINDOW + 9)
              + " tokens of text, got "
              + n);
    }
    int layers = c.layers();
    int kvHeads = c.kvHeads();
    int levels = AutoPolicy.LEVELS.size();
    float[][] reference = run(engine, text, prefill, decode, fixed(c, -1, -1, 1, 0), false);
    double[][][] evict = new double[layers][kvHeads][AutoPlanner.KEEP.length];
    double[][][] merged = new double[layers][kvHeads][AutoPlanner.KEEP.length];
    double[][][] quant = new double[layers][kvHeads][levels];
    for (int l = 0; l < layers; l++) {
      for (int g = 0; g < kvHeads; g++) {
        for (int k = 1; k < AutoPlanner.KEEP.length; k++) {
          AutoPolicy.Fixed f = fixed(c, l, g, AutoPlanner.KEEP[k], 0);
          evict[l][g][k] = kld(reference, run(engine, text, prefill, decode, f, false));
          merged[l][g][k] = kld(reference, run(engine, text, prefill, decode, f, true));
        }
        for (int b = 1; b < levels; b++) {
          AutoPolicy.Fixed f = fixed(c, l, g, 1, b);
          quant[l][g][b] = kld(reference, run(engine, text, prefill, decode, f, false));
        }
      }
    }
    return new AutoSensitivity(prefill, decode, WINDOW, evict, merged, quant);
  }

  /** Every head whole in F32 but (l, g), which keeps {@code keep} of its prompt at level b. */
  private static AutoPolicy.Fixed fixed(ModelConfig c, int l, int g, double keep, int b) {
    double[][] k = new double[c.layers()][c.kvHeads()];
    int[][] level = new int[c.layers()][c.kvHeads()];
    for (double[] row : k) {
      Arrays.fill(row, 1.0);
    }
    if (l >= 0) {
      k[l][g] = keep;
      level[l][g] = b;
    }
    return new AutoPolicy.Fixed(k, level);
  }

  /** The logits of the decoded tokens, one row per step. */
  private static float[][] run(
      Engine engine, int[] text, int prefill, int decode, AutoPolicy.Fixed f, boolean merge) {
    ModelConfig c = engine.config();
    boolean[] all = new boolean[c.layers()];
    Arrays.fill(all, true);
    KvCacheFormat[] formats = new KvCacheFormat[c.layers()];
    Arrays.fill(formats, AutoPolicy.LAYER_FORMAT);
    AutoPolicy policy =
        new AutoPolicy(
            "calibration", all, c.kvHeads(), c.headDim(), null, null, false, merge, f, WINDOW);
    float[][] out = new float[decode][c.vocabSize()];
    float[] logits = new float[c.vocabSize()];
    try (ManagedKvCache cache =
        new ManagedKvCache(new BlockPool(), c.kvHeads(), c.headDim(), formats, List.of(policy))) {
      engine.prefill(cache, text, 0, prefill, 0, false, logits);
      for (int i = 0; i < decode; i++) {
        engine.decode(cache, text[prefill + i], prefill + i, out[i]);
      }
    }
    return out;
  }

  /** Mean over rows of KL(p ‖ q), p the reference's softmax. */
  static double kld(float[][] p, float[][] q) {
    double sum = 0;
    for (int r = 0; r < p.length; r++) {
      double[] lp = logSoftmax(p[r]);
      double[] lq = logSoftmax(q[r]);
      double kl = 0;
      for (int i = 0; i < lp.length; i++) {
        kl += Math.exp(lp[i]) * (lp[i] - lq[i]);
      }
      sum += Math.max(0, kl);
    }
    return sum / p.length;
  }

  private static double[] logSoftmax(float[] x) {
    double max = Double.NEGATIVE_INFINITY;
    for (float v : x) {
      max = Math.max(max, v);
    }
    double s = 0;
    for (float v : x) {
      s += Math.exp(v - max);
    }
    double log = max + Math.log(s);
    double[] out = new double[x.length];
    for (int i = 0; i < x.length; i++) {
      out[i] = x[i] - log;
    }
    return out;
  }

  /**
   * Sensitivities that rise with depth and head index, even heads' mostly to eviction and odd ones'
   * mostly to bits, for tests that need a profile of a model's shape without calibrating it.
   */
  public static AutoSensitivity synthetic(int layers, int kvHeads) {
    int levels = AutoPolicy.LEVELS.size();
    double[][][] evict = new double[layers][kvHeads][AutoPlanner.KEEP.length];
    double[][][] merged = new double[layers][kvHeads][AutoPlanner.KEEP.length];
    double[][][] quant = new double[layers][kvHeads][levels];
    for (int l = 0; l < layers; l++) {
      for (int g = 0; g < kvHeads; g++) {
        double w = 1 + l * kvHeads + g;
        boolean even = (l * kvHeads + g) % 2 == 0; // even heads fear eviction, odd ones bits
        for (int k = 1; k < AutoPlanner.KEEP.length; k++) {
          evict[l][g][k] = (even ? 1e-3 : 1e-5) * w * k;
          merged[l][g][k] = evict[l][g][k] / 2;
        }
        for (int b = 1; b < levels; b++) {
          quant[l][g][b] = (even ? 1e-5 : 1e-3) * w * b * b;
        }
      }
    }
    return new AutoSensitivity(64, 8, WINDOW, evict, merged, quant);
  }

  // ---- the profile's "auto" section
  // --------------------------------------------------------------

  /** Adds (or replaces) this section in the profile file {@code file}. */
  public void addTo(Path file) {
    try {
      ObjectNode root = (ObjectNode) JSON.readTree(Files.readString(file));
      ObjectNode a = JSON.createObjectNode();
      a.put("prefill", prefill);
      a.put("decode", decode);
      a.put("window", window);
      ArrayNode keep = a.putArray("keep");
      for (double k : AutoPlanner.KEEP) {
        keep.add(k);
      }
      ArrayNode names = a.putArray("levels");
      AutoPolicy.LEVELS.forEach(f -> names.add(f.name()));
      a.set("evict", cube(evict));
      a.set("merged", cube(merged));
      a.set("quant", cube(quant));
      root.set("auto", a);
      Files.writeString(file, JSON.writeValueAsString(root) + "\n");
    } catch (IOException e) {
      throw new UncheckedIOException("cannot add the auto section to " + file, e);
    }
  }

  private static ArrayNode cube(double[][][] v) {
    ArrayNode out = JSON.createArrayNode();
    for (double[][] layer : v) {
      ArrayNode l = out.addArray();
      for (double[] head : layer) {
        ArrayNode h = l.addArray();
        for (double x : head) {
          h.add(x);
        }
      }
    }
    return out;
  }

  /**
   * The section of {@code p}, read from the file {@code p} was read from.
   *
   * @throws CalibrationProfile.ProfileException one sentence: no file, no section, or a section of
   *     the wrong shape
   */
  public static AutoSensitivity of(CalibrationProfile p) {
    if (p.source() == null) {
      throw new CalibrationProfile.ProfileException(
          "the adaptive controller reads its calibration from a profile file");
    }
    return READ.computeIfAbsent(p, x -> read(x.source(), x.model()));
  }

  private static AutoSensitivity read(Path file, CalibrationProfile.ModelInfo m) {
    JsonNode a;
    try {
      a = JSON.readTree(Files.readString(file)).path("auto");
    } catch (JacksonException e) {
      throw new CalibrationProfile.ProfileException("calibration profile " + file + " is not JSON");
    } catch (IOException e) {
      throw new CalibrationProfile.ProfileException(
          "calibration profile " + file + " cannot be read");
    }
    if (!a.isObject()) {
      throw new CalibrationProfile.ProfileException(
          "calibration profile "
              + file
              + " has no 'auto' section (make it again with this kvslim's 'kvslim calibrate')");
    }
    List<String> names = AutoPolicy.LEVELS.stream().map(f -> f.name()).toList();
    List<String> got = new java.util.ArrayList<>();
    a.path("levels").forEach(x -> got.add(x.asText()));
    List<Double> keep = new java.util.ArrayList<>();
    a.path("keep").forEach(x -> keep.add(x.asDouble()));
    List<Double> want = Arrays.stream(AutoPlanner.KEEP).boxed().toList();
    if (!names.equals(got) || !want.equals(keep)) {
      throw new CalibrationProfile.ProfileException(
          "calibration profile "
              + file
              + "'s 'auto' section measured other levels or keep ratios (make it again with"
              + " 'kvslim calibrate')");
    }
    if (!a.has("merged")) {
      throw new CalibrationProfile.ProfileException(
          "calibration profile "
              + file
              + "'s 'auto' section has no merged eviction curves (make it again with"
              + " 'kvslim calibrate')");
    }
    double[][][] evict = cube(a.path("evict"), m, AutoPlanner.KEEP.length, file, "auto.evict");
    double[][][] merged = cube(a.path("merged"), m, AutoPlanner.KEEP.length, file, "auto.merged");
    double[][][] quant = cube(a.path("quant"), m, names.size(), file, "auto.quant");
    return new AutoSensitivity(
        a.path("prefill").asInt(),
        a.path("decode").asInt(),
        a.path("window").asInt(),
        evict,
        merged,
        quant);
  }

  private static double[][][] cube(
      JsonNode v, CalibrationProfile.ModelInfo m, int inner, Path file, String what) {
    double[][][] out = new double[m.layers()][m.kvHeads()][inner];
    boolean ok = v.isArray() && v.size() == m.layers();
    for (int l = 0; ok && l < m.layers(); l++) {
      JsonNode layer = v.get(l);
      ok = layer.isArray() && layer.size() == m.kvHeads();
      for (int g = 0; ok && g < m.kvHeads(); g++) {
        JsonNode head = layer.get(g);
        ok = head.isArray() && head.size() == inner;
        for (int i = 0; ok && i < inner; i++) {
          ok = head.get(i).isNumber() && head.get(i).asDouble() >= 0;
          out[l][g][i] = head.get(i).asDouble();
        }
      }
    }
    if (!ok) {
      throw new CalibrationProfile.ProfileException(
          "calibration profile "
              + file
              + " has a bad '"
              + what
              + "' (expected ["
              + m.layers()
              + "]["
              + m.kvHeads()
              + "]["
              + inner
              + "] non-negative numbers)");
    }
    return out;
  }
}
