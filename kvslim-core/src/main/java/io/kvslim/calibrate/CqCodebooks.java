package io.kvslim.calibrate;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.kvslim.engine.Engine;
import io.kvslim.kv.format.CqFormat;
import io.kvslim.model.ModelConfig;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Coupled Quantization's codebooks (METHODS.md Q5 step 1), learned by {@code kvslim calibrate} and
 * kept in the profile's {@code cq} section: for each coupling {@code c} of {@link #COUPLINGS} (with
 * 8-bit codes: CQ-2c8b, CQ-4c8b, CQ-8c8b) and each layer, one codebook for keys and one for values,
 * {@code d/c} groups of {@value CqFormat#CENTROIDS} centroids in R^c ({@link CqFormat}'s layout).
 *
 * <p>Training: the calibration windows are prefilled with an F32 cache; a reservoir sample of at
 * most {@link #SAMPLES} (token, KV head) vectors per layer (the same tokens in every layer) is kept
 * of the keys as stored (after RoPE) and of the values; each group's codebook is {@link KMeans} on
 * the sample's c channels of that group. One codebook per layer serves all its KV heads; per
 * (layer, KV head) codebooks, as the paper learns them ({@code cq:codebooks=head}), are the same
 * k-means on the sample's rows of that head only, trained after the layer's (so those stay the
 * same).
 *
 * <p>JSON: {@code "cq": {"samples", "iterations", "configs": [{"c", "keys": [L], "values": [L],
 * "keys_per_head": [L][H], "values_per_head": [L][H]}]}}, each codebook the base64 of its f32
 * values, little-endian; the per-head lists are absent in profiles made before them.
 *
 * @param keys {@code keys[i][layer]}: the key codebook of coupling {@code COUPLINGS[i]}, or null
 *     when the head dimension is not a multiple of it
 * @param keysPerHead {@code keysPerHead[i][layer][head]}, or null (an older profile)
 */
public record CqCodebooks(
    int samples,
    int iterations,
    float[][][] keys,
    float[][][] values,
    float[][][][] keysPerHead,
    float[][][][] valuesPerHead) {
  /** The couplings learned: c = 2, 4, 8 channels per 8-bit code (4, 2, 1 bits per channel). */
  public static final int[] COUPLINGS = {2, 4, 8};

  /** Most (token, KV head) vectors a layer's k-means sees. */
  public static final int SAMPLES = 4096;

  /** Most Lloyd iterations. */
  public static final int ITERATIONS = 12;

  /** The key (or value) codebook of coupling {@code c} for {@code layer}, or null. */
  public float[] book(int c, int layer, boolean values) {
    int i = Arrays.binarySearch(COUPLINGS, c);
    if (i < 0) {
      return null;
    }
    float[][] books = values ? this.values[i] : this.keys[i];
    return books == null ? null : books[layer];
  }

  /** The key (or value) codebook of coupling {@code c} for {@code layer} and KV head, or null. */
  public float[] headBook(int c, int layer, int head, boolean values) {
    int i = Arrays.binarySearch(COUPLINGS, c);
    float[][][][] all = values ? valuesPerHead : keysPerHead;
    if (i < 0 || all == null || all[i] == null) {
      return null;
    }
    return all[i][layer][head];
  }

  /** Learns the codebooks on {@code windows} (token ids, each at most the model's context). */
  public static CqCodebooks train(Engine engine, List<int[]> windows, long seed) {
    ModelConfig c = engine.config();
    int layers = c.layers();
    int d = c.headDim();
    SplittableRandom random = new SplittableRandom(seed);
    KvSamples sample = KvSamples.draw(engine, windows, SAMPLES, random);
    float[][] resK = sample.keys();
    float[][] resV = sample.values();
    int n = sample.n();
    float[][][] keys = new float[COUPLINGS.length][][];
    float[][][] values = new float[COUPLINGS.length][][];
    for (int i = 0; i < COUPLINGS.length; i++) {
      int cc = COUPLINGS[i];
      if (d % cc != 0) {
        continue;
      }
      keys[i] = new float[layers][];
      values[i] = new float[layers][];
      for (int l = 0; l < layers; l++) {
        keys[i][l] = books(resK[l], n, d, cc, random.split());
        values[i][l] = books(resV[l], n, d, cc, random.split());
      }
    }
    int kv = c.kvHeads();
    float[][][][] keysH = new float[COUPLINGS.length][][][];
    float[][][][] valuesH = new float[COUPLINGS.length][][][];
    for (int i = 0; i < COUPLINGS.length; i++) {
      int cc = COUPLINGS[i];
      if (d % cc != 0) {
        continue;
      }
      keysH[i] = new float[layers][kv][];
      valuesH[i] = new float[layers][kv][];
      for (int l = 0; l < layers; l++) {
        for (int g = 0; g < kv; g++) {
          float[][] rows = headRows(sample, l, g, d);
          int ng = rows[0].length / d;
          keysH[i][l][g] = books(rows[0], ng, d, cc, random.split());
          valuesH[i][l][g] = books(rows[1], ng, d, cc, random.split());
        }
      }
    }
    return new CqCodebooks(n, ITERATIONS, keys, values, keysH, valuesH);
  }

  /** The sample's keys and values of layer {@code l} taken from KV head {@code g}, in order. */
  private static float[][] headRows(KvSamples s, int l, int g, int d) {
    int ng = 0;
    for (int t = 0; t < s.n(); t++) {
      ng += s.heads()[t] == g ? 1 : 0;
    }
    float[] k = new float[Math.max(1, ng) * d];
    float[] v = new float[Math.max(1, ng) * d];
    int j = 0;
    for (int t = 0; t < s.n(); t++) {
      if (s.heads()[t] == g) {
        System.arraycopy(s.keys()[l], t * d, k, j * d, d);
        System.arraycopy(s.values()[l], t * d, v, j * d, d);
        j++;
      }
    }
    return new float[][] {k, v};
  }

  /** k-means per group of {@code c} channels over {@code n} rows of {@code d}. */
  static float[] books(float[] rows, int n, int d, int c, SplittableRandom random) {
    int groups = d / c;
    int k = CqFormat.CENTROIDS;
    float[] book = new float[groups * k * c];
    float[] data = new float[n * c];
    for (int g = 0; g < groups; g++) {
      for (int t = 0; t < n; t++) {
        System.arraycopy(rows, t * d + g * c, data, t * c, c);
      }
      float[] centroids = KMeans.train(data, n, c, k, ITERATIONS, random.split());
      System.arraycopy(centroids, 0, book, g * k * c, k * c);
    }
    return book;
  }

  /** Writes the {@code cq} section into {@code root}. */
  public void write(ObjectNode root) {
    ObjectNode o = root.putObject("cq");
    o.put("samples", samples);
    o.put("iterations", iterations);
    ArrayNode configs = o.putArray("configs");
    for (int i = 0; i < COUPLINGS.length; i++) {
      if (keys[i] == null) {
        continue;
      }
      ObjectNode cfg = configs.addObject();
      cfg.put("c", COUPLINGS[i]);
      ArrayNode k = cfg.putArray("keys");
      ArrayNode v = cfg.putArray("values");
      for (int l = 0; l < keys[i].length; l++) {
        k.add(FloatTables.encode(keys[i][l]));
        v.add(FloatTables.encode(values[i][l]));
      }
      if (keysPerHead != null && keysPerHead[i] != null) {
        ArrayNode kh = cfg.putArray("keys_per_head");
        ArrayNode vh = cfg.putArray("values_per_head");
        for (int l = 0; l < keysPerHead[i].length; l++) {
          ArrayNode kl = kh.addArray();
          ArrayNode vl = vh.addArray();
          for (int g = 0; g < keysPerHead[i][l].length; g++) {
            kl.add(FloatTables.encode(keysPerHead[i][l][g]));
            vl.add(FloatTables.encode(valuesPerHead[i][l][g]));
          }
        }
      }
    }
  }

  /**
   * Reads the {@code cq} section of profile {@code file} for a model of {@code layers} layers and
   * head dimension {@code headDim}.
   *
   * @throws CalibrationProfile.ProfileException one sentence naming the file and the bad field
   */
  public static CqCodebooks read(JsonNode o, int layers, int kvHeads, int headDim, Path file) {
    JsonNode configs = o.path("configs");
    if (!o.path("samples").canConvertToInt()
        || !o.path("iterations").canConvertToInt()
        || !configs.isArray()) {
      throw FloatTables.damaged(file, "cq needs samples, iterations and configs");
    }
    float[][][] keys = new float[COUPLINGS.length][][];
    float[][][] values = new float[COUPLINGS.length][][];
    float[][][][] keysH = new float[COUPLINGS.length][][][];
    float[][][][] valuesH = new float[COUPLINGS.length][][][];
    boolean perHead = false;
    for (JsonNode cfg : configs) {
      int i = Arrays.binarySearch(COUPLINGS, cfg.path("c").asInt(-1));
      if (i < 0 || headDim % COUPLINGS[i] != 0) {
        throw FloatTables.damaged(
            file, "cq.configs has a coupling other than 2, 4 or 8 dividing " + headDim);
      }
      keys[i] = layers(cfg.path("keys"), layers, headDim, file);
      values[i] = layers(cfg.path("values"), layers, headDim, file);
      if (cfg.has("keys_per_head") || cfg.has("values_per_head")) {
        perHead = true;
        keysH[i] = perHead(cfg.path("keys_per_head"), layers, kvHeads, headDim, file);
        valuesH[i] = perHead(cfg.path("values_per_head"), layers, kvHeads, headDim, file);
      }
    }
    return new CqCodebooks(
        o.path("samples").asInt(),
        o.path("iterations").asInt(),
        keys,
        values,
        perHead ? keysH : null,
        perHead ? valuesH : null);
  }

  private static float[][][] perHead(JsonNode a, int layers, int kvHeads, int headDim, Path file) {
    if (!a.isArray() || a.size() != layers) {
      throw FloatTables.damaged(
          file, "a per-head cq codebook list does not have " + layers + " layers");
    }
    float[][][] out = new float[layers][][];
    for (int l = 0; l < layers; l++) {
      out[l] = layers(a.get(l), kvHeads, headDim, file);
    }
    return out;
  }

  private static float[][] layers(JsonNode a, int layers, int headDim, Path file) {
    if (!a.isArray() || a.size() != layers) {
      throw FloatTables.damaged(file, "a cq codebook list does not have " + layers + " layers");
    }
    float[][] out = new float[layers][];
    for (int l = 0; l < layers; l++) {
      out[l] =
          FloatTables.decode(
              a.get(l), headDim * CqFormat.CENTROIDS, file, "cq codebook of layer " + l);
    }
    return out;
  }
}
