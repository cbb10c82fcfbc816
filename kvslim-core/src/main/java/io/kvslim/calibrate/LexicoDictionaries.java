package io.kvslim.calibrate;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.kvslim.engine.Engine;
import io.kvslim.kv.format.Omp;
import io.kvslim.model.ModelConfig;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.IntStream;

/**
 * Lexico's dictionaries (METHODS.md Q9 step 1), learned by {@code kvslim calibrate} and kept in the
 * profile's {@code lexico} section: per layer one dictionary of {@link #ATOMS} unit-norm atoms (no
 * more than the samples) for keys and one for values ({@link io.kvslim.kv.format.LexicoFormat}'s
 * atom-major layout).
 *
 * <p>Training: the calibration windows are prefilled with an F32 cache and a reservoir sample of at
 * most {@link #SAMPLES} (token, KV head) vectors per layer is kept of the keys as stored (after
 * RoPE) and of the values, as {@link CqCodebooks} does. The atoms start as distinct sampled vectors
 * (random Gaussian ones when the sample is smaller than the dictionary), normalised; then {@link
 * #ROUNDS} rounds of: code every sample by OMP ({@link #encode}, as {@link Omp}) at sparsity {@link
 * #TRAIN_SPARSITY} (the authors' {@code Autoencoder.encode}, krafton-ai/lexico {@code
 * lexico/dictionary_learning/model.py} lines 24–30), replace the dictionary by the least-squares
 * solution {@code D = X Yᵀ (Y Yᵀ)⁻¹} for those codes (the method of optimal directions), and
 * renormalise every atom to unit norm ({@code normalise_decoder_weights}, same file lines 41–46).
 * The authors take Adam steps on the reconstruction loss instead ({@code
 * lexico/dictionary_learning/train.py} lines 56–66); the closed-form update reaches a lower error
 * in the few rounds a CPU calibration can afford. Atoms no sample uses are re-seeded with the worst
 * coded samples. Every (layer, keys/values) dictionary has its own seeded random stream, so the
 * result does not depend on the threads.
 *
 * <p>JSON: {@code "lexico": {"samples", "rounds", "sparsity", "atoms", "keys": [L], "values":
 * [L]}}, each dictionary the base64 of its {@code atoms × d} f32 values, little-endian.
 *
 * @param keys {@code keys[layer]}: the key dictionary, atom-major
 */
public record LexicoDictionaries(
    int samples, int rounds, int sparsity, int atoms, float[][] keys, float[][] values) {
  /** Atoms per dictionary (fewer when the sample is smaller: no more atoms than samples). */
  public static final int ATOMS = 1024;

  /** Most (token, KV head) vectors a layer's dictionary is trained on. */
  public static final int SAMPLES = 2048;

  /** Rounds of coding and dictionary update. */
  public static final int ROUNDS = 3;

  /** Atoms per sample when training. */
  public static final int TRAIN_SPARSITY = 8;

  /** The key (or value) dictionary of {@code layer}. */
  public float[] dictionary(int layer, boolean values) {
    return values ? this.values[layer] : this.keys[layer];
  }

  /** Learns the dictionaries on {@code windows} (token ids, each at most the model's context). */
  public static LexicoDictionaries train(Engine engine, List<int[]> windows, long seed) {
    ModelConfig c = engine.config();
    int layers = c.layers();
    int d = c.headDim();
    SplittableRandom random = new SplittableRandom(seed);
    KvSamples sample = KvSamples.draw(engine, windows, SAMPLES, random);
    float[][] resK = sample.keys();
    float[][] resV = sample.values();
    int n = sample.n();
    int atoms = Math.max(1, Math.min(ATOMS, n)); // no more atoms than samples
    long[] seeds = new long[2 * layers];
    for (int i = 0; i < seeds.length; i++) {
      seeds[i] = random.nextLong();
    }
    float[][] dicts = new float[2 * layers][];
    IntStream.range(0, 2 * layers)
        .parallel()
        .forEach(
            i -> {
              float[] x = i % 2 == 0 ? resK[i / 2] : resV[i / 2];
              float[] dict = initial(x, n, d, atoms, new SplittableRandom(seeds[i]));
              for (int r = 0; r < ROUNDS; r++) {
                round(dict, atoms, x, n, d, TRAIN_SPARSITY);
              }
              dicts[i] = dict;
            });
    float[][] keys = new float[layers][];
    float[][] values = new float[layers][];
    for (int l = 0; l < layers; l++) {
      keys[l] = dicts[2 * l];
      values[l] = dicts[2 * l + 1];
    }
    return new LexicoDictionaries(n, ROUNDS, TRAIN_SPARSITY, atoms, keys, values);
  }

  /**
   * The starting dictionary: {@code atoms} distinct samples of {@code x} ({@code n × d}) in a
   * seeded random order, then Gaussian vectors when there are fewer samples, each normalised.
   */
  static float[] initial(float[] x, int n, int d, int atoms, SplittableRandom random) {
    int[] order = new int[n];
    for (int i = 0; i < n; i++) {
      order[i] = i;
    }
    for (int i = n - 1; i > 0; i--) {
      int j = random.nextInt(i + 1);
      int t = order[i];
      order[i] = order[j];
      order[j] = t;
    }
    float[] dict = new float[atoms * d];
    for (int a = 0; a < atoms; a++) {
      if (a < n) {
        System.arraycopy(x, order[a] * d, dict, a * d, d);
      }
      if (!normalise(dict, a, d)) {
        gaussian(dict, a, d, random);
      }
    }
    return dict;
  }

  private static void gaussian(float[] dict, int a, int d, SplittableRandom random) {
    do {
      for (int i = 0; i < d; i++) {
        // Box-Muller's cosine half: a standard normal from two uniforms
        double u = 1 - random.nextDouble();
        dict[a * d + i] =
            (float) (Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random.nextDouble()));
      }
    } while (!normalise(dict, a, d));
  }

  /** Scales atom {@code a} to unit norm; false when it is zero. */
  private static boolean normalise(float[] dict, int a, int d) {
    double n2 = 0;
    for (int i = 0; i < d; i++) {
      n2 += (double) dict[a * d + i] * dict[a * d + i];
    }
    if (!(n2 > 1e-30)) {
      return false;
    }
    double inv = 1 / Math.sqrt(n2);
    for (int i = 0; i < d; i++) {
      dict[a * d + i] = (float) (dict[a * d + i] * inv);
    }
    return true;
  }

  /** The sparse codes of {@code n} samples: {@code s} atoms and coefficients each. */
  record Codes(int s, int[] index, float[] coef) {}

  /** Codes every sample of {@code x} by OMP at sparsity {@code s} ({@link GramOmp#encode}). */
  static Codes encode(float[] dict, int atoms, float[] x, int n, int d, int s) {
    return GramOmp.encode(dict, atoms, x, n, d, s);
  }

  /** Σ ‖x_t − D y_t‖² over the samples. */
  static double error(float[] dict, float[] x, int n, int d, Codes codes) {
    int s = codes.s();
    double e = 0;
    double[] r = new double[d];
    for (int t = 0; t < n; t++) {
      for (int i = 0; i < d; i++) {
        r[i] = x[t * d + i];
      }
      for (int j = 0; j < s; j++) {
        float c = codes.coef()[t * s + j];
        int a = codes.index()[t * s + j];
        for (int i = 0; i < d; i++) {
          r[i] -= (double) c * dict[a * d + i];
        }
      }
      for (double v : r) {
        e += v * v;
      }
    }
    return e;
  }

  /** One round: codes the samples, then {@link #update}s the dictionary in place for them. */
  static void round(float[] dict, int atoms, float[] x, int n, int d, int s) {
    update(dict, atoms, x, n, d, encode(dict, atoms, x, n, d, s));
  }

  /**
   * Replaces the atoms the codes use by the least-squares dictionary {@code X Yᵀ (Y Yᵀ)⁻¹} over
   * those atoms, renormalised (their coefficients in {@code codes} are rescaled so that {@code D y}
   * is unchanged), and re-seeds unused atoms with the samples coded worst.
   */
  static void update(float[] dict, int atoms, float[] x, int n, int d, Codes codes) {
    int s = codes.s();
    int[] pos = new int[atoms];
    Arrays.fill(pos, -1);
    int m = 0;
    for (int t = 0; t < n * s; t++) {
      if (codes.coef()[t] != 0 && pos[codes.index()[t]] < 0) {
        pos[codes.index()[t]] = m++;
      }
    }
    if (m > 0) {
      double[] gram = new double[m * m]; // Y Yᵀ over the used atoms
      double[] xy = new double[m * d]; // (X Yᵀ)ᵀ: row u = Σ_t y_ut x_t
      for (int t = 0; t < n; t++) {
        for (int j = 0; j < s; j++) {
          double cj = codes.coef()[t * s + j];
          if (cj == 0) {
            continue;
          }
          int u = pos[codes.index()[t * s + j]];
          for (int k = 0; k < s; k++) {
            double ck = codes.coef()[t * s + k];
            if (ck != 0) {
              gram[u * m + pos[codes.index()[t * s + k]]] += cj * ck;
            }
          }
          for (int i = 0; i < d; i++) {
            xy[u * d + i] += cj * x[t * d + i];
          }
        }
      }
      double ridge = 0;
      for (int u = 0; u < m; u++) {
        ridge = Math.max(ridge, gram[u * m + u]);
      }
      ridge *= 1e-9;
      for (int u = 0; u < m; u++) {
        gram[u * m + u] += ridge;
      }
      double[] l = GramOmp.cholesky(gram, m);
      double[] col = new double[m];
      double[] solved = new double[m * d];
      for (int i = 0; i < d; i++) {
        for (int u = 0; u < m; u++) {
          col[u] = xy[u * d + i];
        }
        GramOmp.solveInPlace(l, m, col);
        for (int u = 0; u < m; u++) {
          solved[u * d + i] = col[u];
        }
      }
      double[] scale = new double[atoms];
      for (int a = 0; a < atoms; a++) {
        int u = pos[a];
        if (u < 0) {
          continue;
        }
        double n2 = 0;
        for (int i = 0; i < d; i++) {
          n2 += solved[u * d + i] * solved[u * d + i];
        }
        if (!(n2 > 1e-30)) {
          pos[a] = -1; // the solution dropped it: it is re-seeded below
          continue;
        }
        double norm = Math.sqrt(n2);
        scale[a] = norm;
        for (int i = 0; i < d; i++) {
          dict[a * d + i] = (float) (solved[u * d + i] / norm);
        }
      }
      for (int t = 0; t < n * s; t++) {
        int a = codes.index()[t];
        codes.coef()[t] = pos[a] < 0 ? 0f : (float) (codes.coef()[t] * scale[a]);
      }
    }
    reseed(dict, atoms, x, n, d, codes, pos);
  }

  /** Atoms with {@code pos[a] < 0} become the samples of largest residual, worst first. */
  private static void reseed(
      float[] dict, int atoms, float[] x, int n, int d, Codes codes, int[] pos) {
    int unused = 0;
    for (int a = 0; a < atoms; a++) {
      unused += pos[a] < 0 ? 1 : 0;
    }
    if (unused == 0 || n == 0) {
      return;
    }
    double[] residual = new double[n];
    float[] r = new float[d];
    for (int t = 0; t < n; t++) {
      Codes one =
          new Codes(
              codes.s(),
              Arrays.copyOfRange(codes.index(), t * codes.s(), (t + 1) * codes.s()),
              Arrays.copyOfRange(codes.coef(), t * codes.s(), (t + 1) * codes.s()));
      System.arraycopy(x, t * d, r, 0, d);
      residual[t] = error(dict, r, 1, d, one);
    }
    Integer[] order = new Integer[n];
    for (int t = 0; t < n; t++) {
      order[t] = t;
    }
    Arrays.sort(
        order,
        (p, q) ->
            residual[p] != residual[q]
                ? Double.compare(residual[q], residual[p])
                : Integer.compare(p, q));
    int next = 0;
    for (int a = 0; a < atoms && next < n; a++) {
      if (pos[a] >= 0) {
        continue;
      }
      while (next < n) {
        System.arraycopy(x, order[next++] * d, dict, a * d, d);
        if (normalise(dict, a, d)) {
          break;
        }
      }
    }
  }

  /** Writes the {@code lexico} section into {@code root}. */
  public void write(ObjectNode root) {
    ObjectNode o = root.putObject("lexico");
    o.put("samples", samples);
    o.put("rounds", rounds);
    o.put("sparsity", sparsity);
    o.put("atoms", atoms);
    ArrayNode k = o.putArray("keys");
    ArrayNode v = o.putArray("values");
    for (int l = 0; l < keys.length; l++) {
      k.add(FloatTables.encode(keys[l]));
      v.add(FloatTables.encode(values[l]));
    }
  }

  /**
   * Reads the {@code lexico} section of profile {@code file} for a model of {@code layers} layers
   * and head dimension {@code headDim}.
   *
   * @throws CalibrationProfile.ProfileException one sentence naming the file and the bad field
   */
  public static LexicoDictionaries read(JsonNode o, int layers, int headDim, Path file) {
    int atoms = o.path("atoms").asInt(-1);
    if (!o.path("samples").canConvertToInt()
        || !o.path("rounds").canConvertToInt()
        || !o.path("sparsity").canConvertToInt()
        || atoms < 1
        || atoms > 4096) {
      throw FloatTables.damaged(file, "lexico needs samples, rounds, sparsity and 1..4096 atoms");
    }
    return new LexicoDictionaries(
        o.path("samples").asInt(),
        o.path("rounds").asInt(),
        o.path("sparsity").asInt(),
        atoms,
        layers(o.path("keys"), layers, atoms * headDim, file),
        layers(o.path("values"), layers, atoms * headDim, file));
  }

  private static float[][] layers(JsonNode a, int layers, int floats, Path file) {
    if (!a.isArray() || a.size() != layers) {
      throw FloatTables.damaged(
          file, "a lexico dictionary list does not have " + layers + " layers");
    }
    float[][] out = new float[layers][];
    for (int l = 0; l < layers; l++) {
      out[l] = FloatTables.decode(a.get(l), floats, file, "lexico dictionary of layer " + l);
    }
    return out;
  }
}
