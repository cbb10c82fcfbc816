package io.kvslim.calibrate;

import io.kvslim.engine.Engine;
import io.kvslim.kv.KvCache;
import io.kvslim.model.Forward;
import io.kvslim.model.ModelConfig;
import java.util.Arrays;
import java.util.List;

/**
 * KVQuant's offline calibration (Hooper et al., arXiv:2401.18079; METHODS.md Q4 step 1): the tables
 * of {@link KvQuantTables} from the pre-RoPE keys and the values the model projects on the
 * calibration windows ({@link Forward.ProjectionListener}), following {@code SimQuant.quantize} in
 * {@code quant/kvquant/simquant_module_quantizer.py} of SqueezeAILab/KVQuant:
 *
 * <ul>
 *   <li>keys, per KV head and channel: the outlier thresholds are the {@code 100·t} and {@code
 *       100·(1 − t)} percentiles with t = 1 − f/2 (lines 467–474, {@code np.percentile}, linear
 *       interpolation), f the outlier fraction; offset = (hi + lo)/2, range = (hi − lo)/2 (lines
 *       480–484);
 *   <li>values, per token: the ⌈d·f/2⌉ largest and smallest entries are outliers, the others
 *       normalized by their own min and max ({@code get_outliers_dynamic}, lines 80–113);
 *   <li>per layer, separately for keys and values, a 2^b-entry codebook by 1-D k-means on the
 *       normalized inliers (|u| ≤ 1), at most 50 iterations (lines 495–527, sklearn {@code KMeans}
 *       with {@code max_iter=50}). The authors weight each sample by its Fisher information
 *       (squared gradient of the loss, lines 503–515), which needs a backward pass this engine does
 *       not have: {@code uniform} is the unweighted fit (METHODS.md's "nuq-unweighted") and {@code
 *       act2} weights by the squared activation, a computable stand-in. The fit starts from the
 *       weighted quantiles (i + ½)/2^b, deterministic, where the authors use k-means++ with seed 0.
 * </ul>
 *
 * The first token of each window (the attention sink, kept in full precision at inference) is left
 * out of every statistic, as the authors mask {@code first_few_fp16} tokens (lines 488–493).
 */
public final class KvQuantCalibration {
  /** The default outlier fraction f (the authors' 1% sparsity, METHODS.md Q4 knobs). */
  public static final double OUTLIER_FRACTION = 0.01;

  /** k-means iterations at most (the authors' {@code max_iter=50}). */
  static final int ITERATIONS = 50;

  /** Samples per layer and kind the codebook fit reads at most (every n-th beyond). */
  static final int MAX_SAMPLES = 1 << 20;

  private KvQuantCalibration() {}

  /** Sparse outliers a key keeps: ⌈d·f⌉. */
  public static int keyOutliers(int headDim, double fraction) {
    return (int) Math.ceil(headDim * fraction - 1e-9);
  }

  /** Sparse outliers a value keeps at each end: ⌈d·f/2⌉. */
  public static int valueOutliersPerSide(int headDim, double fraction) {
    return (int) Math.ceil(headDim * fraction / 2 - 1e-9);
  }

  /**
   * Runs the model over {@code windows} (each from its own fresh full cache) and fits the tables.
   */
  public static KvQuantTables run(Engine engine, List<int[]> windows, double fraction) {
    ModelConfig c = engine.config();
    int layers = c.layers();
    int kvDim = c.kvHeads() * c.headDim();
    int total = 0;
    for (int[] w : windows) {
      total += w.length;
    }
    float[][] keys =
        new float[layers][(long) total * kvDim > Integer.MAX_VALUE ? 0 : total * kvDim];
    float[][] values = new float[layers][keys[0].length];
    int[] filled = new int[layers]; // rows collected per layer
    boolean[] first = new boolean[total]; // rows that are a window's first token
    int[] windowStart = {0};
    Forward.ProjectionListener listener =
        new Forward.ProjectionListener() {
          @Override
          public void onProjections(int layer, int rows, float[] q, float[] k) {
            System.arraycopy(k, 0, keys[layer], filled[layer] * kvDim, rows * kvDim);
          }

          @Override
          public void onValues(int layer, int rows, float[] v) {
            System.arraycopy(v, 0, values[layer], filled[layer] * kvDim, rows * kvDim);
            filled[layer] += rows;
          }
        };
    engine.forward().setProjectionListener(listener);
    try {
      float[] logits = new float[c.vocabSize()];
      for (int[] window : windows) {
        first[windowStart[0]] = true;
        try (KvCache cache = engine.newCache()) {
          engine.prefill(cache, window, 0, window.length, 0, false, logits);
        }
        windowStart[0] += window.length;
      }
    } finally {
      engine.forward().setProjectionListener(null);
    }
    for (int l = 0; l < layers; l++) {
      if (filled[l] != total) {
        throw new IllegalStateException(
            "layer " + l + " projected " + filled[l] + " rows of " + total + " calibration tokens");
      }
    }
    return fit(keys, values, first, total, c.kvHeads(), c.headDim(), fraction);
  }

  /**
   * The tables from {@code keys[l]} and {@code values[l]} ({@code rows × kvHeads × headDim},
   * pre-RoPE keys), leaving out the rows marked in {@code skip}.
   */
  public static KvQuantTables fit(
      float[][] keys,
      float[][] values,
      boolean[] skip,
      int rows,
      int kvHeads,
      int headDim,
      double fraction) {
    if (!(fraction >= 0 && fraction < 0.5)) {
      throw new IllegalArgumentException(
          "the outlier fraction must be in [0, 0.5), got " + fraction);
    }
    int layers = keys.length;
    int kvDim = kvHeads * headDim;
    int used = 0;
    for (int r = 0; r < rows; r++) {
      used += skip[r] ? 0 : 1;
    }
    if (used < 2) {
      throw new IllegalArgumentException(
          "kvquant calibration needs at least 2 tokens besides each window's first");
    }
    double t = 1 - fraction / 2;
    float[][][] offset = new float[layers][kvHeads][headDim];
    float[][][] range = new float[layers][kvHeads][headDim];
    float[][][][][] centroids = new float[KvQuantTables.WEIGHTINGS.length][2][3][layers][];
    int perSide = valueOutliersPerSide(headDim, fraction);
    float[] channel = new float[used];
    int stride = Math.max(1, (int) (((long) used * kvDim + MAX_SAMPLES - 1) / MAX_SAMPLES));
    for (int l = 0; l < layers; l++) {
      float[] k = keys[l];
      for (int g = 0; g < kvHeads; g++) {
        for (int j = 0; j < headDim; j++) {
          int n = 0;
          for (int r = 0; r < rows; r++) {
            if (!skip[r]) {
              channel[n++] = k[r * kvDim + g * headDim + j];
            }
          }
          Arrays.sort(channel, 0, n);
          float hi = percentile(channel, n, t);
          float lo = percentile(channel, n, 1 - t);
          offset[l][g][j] = (hi + lo) / 2f;
          float half = (hi - lo) / 2f;
          range[l][g][j] = half > 1e-6f ? half : 1e-6f;
        }
      }
      // normalized inliers of keys and values, every stride-th element, with their activations
      int cap = (int) ((long) used * kvDim / stride + 1);
      float[] ku = new float[cap];
      float[] kw = new float[cap];
      float[] vu = new float[cap];
      float[] vw = new float[cap];
      int kn = 0;
      int vn = 0;
      long element = 0;
      float[] row = new float[headDim];
      boolean[] out = new boolean[headDim];
      for (int r = 0; r < rows; r++) {
        if (skip[r]) {
          continue;
        }
        for (int g = 0; g < kvHeads; g++) {
          int base = r * kvDim + g * headDim;
          System.arraycopy(values[l], base, row, 0, headDim);
          float min = Float.POSITIVE_INFINITY;
          float max = Float.NEGATIVE_INFINITY;
          for (int j = 0; j < headDim; j++) {
            out[j] = isOutlier(row, j, perSide);
            if (!out[j]) {
              min = Math.min(min, row[j]);
              max = Math.max(max, row[j]);
            }
          }
          float vo = (max + min) / 2f;
          float vhalf = (max - min) / 2f;
          for (int j = 0; j < headDim; j++, element++) {
            if (element % stride != 0) {
              continue;
            }
            float x = k[base + j];
            float u = (x - offset[l][g][j]) / range[l][g][j];
            if (Math.abs(u) <= 1f) {
              ku[kn] = u;
              kw[kn++] = x * x;
            }
            if (!out[j]) {
              float v = row[j];
              vu[vn] = vhalf > 0f ? Math.max(-1f, Math.min(1f, (v - vo) / vhalf)) : 0f;
              vw[vn++] = v * v;
            }
          }
        }
      }
      for (int w = 0; w < KvQuantTables.WEIGHTINGS.length; w++) {
        for (int b = 2; b <= 4; b++) {
          centroids[w][0][b - 2][l] = kmeans(ku, w == 0 ? null : kw, kn, 1 << b, ITERATIONS);
          centroids[w][1][b - 2][l] = kmeans(vu, w == 0 ? null : vw, vn, 1 << b, ITERATIONS);
        }
      }
    }
    return new KvQuantTables(fraction, 1, used, offset, range, centroids);
  }

  /**
   * Whether entry j is among the {@code perSide} largest or smallest (larger entries, or equal ones
   * at lower indices, rank first).
   */
  static boolean isOutlier(float[] row, int j, int perSide) {
    if (perSide == 0) {
      return false;
    }
    int above = 0;
    int below = 0;
    float x = row[j];
    for (int i = 0; i < row.length; i++) {
      if (row[i] > x || (row[i] == x && i < j)) {
        above++;
      }
      if (row[i] < x || (row[i] == x && i < j)) {
        below++;
      }
    }
    return above < perSide || below < perSide;
  }

  /** numpy's linear percentile of {@code sorted[0..n)} at fraction {@code p} ∈ [0, 1]. */
  static float percentile(float[] sorted, int n, double p) {
    double at = p * (n - 1);
    int i = (int) Math.floor(at);
    if (i >= n - 1) {
      return sorted[n - 1];
    }
    double frac = at - i;
    return (float) (sorted[i] + frac * ((double) sorted[i + 1] - sorted[i]));
  }

  /**
   * 1-D weighted k-means (Lloyd) of {@code x[0..n)} with weights {@code w} (null: 1) into {@code k}
   * centroids, sorted, strictly increasing, in [−1, 1]: starts at the weighted quantiles (i + ½)/k,
   * stops when no centroid moves or after {@code iterations}. Fewer distinct points than k give
   * evenly spread extra centroids.
   */
  public static float[] kmeans(float[] x, float[] w, int n, int k, int iterations) {
    float[] v = Arrays.copyOf(x, n);
    double[] weight = new double[n];
    // sort values with their weights: by value, ties in input order
    long[] order = new long[n];
    for (int i = 0; i < n; i++) {
      int bits = Float.floatToIntBits(v[i] == 0f ? 0f : v[i]);
      int key = bits >= 0 ? bits : bits ^ 0x7fffffff;
      order[i] = ((long) key << 32) | i;
    }
    Arrays.sort(order);
    float[] sorted = new float[n];
    for (int i = 0; i < n; i++) {
      int at = (int) order[i];
      sorted[i] = v[at];
      weight[i] = w == null ? 1.0 : Math.max(w[at], 1e-30);
    }
    double[] cw = new double[n + 1];
    double[] cwx = new double[n + 1];
    for (int i = 0; i < n; i++) {
      cw[i + 1] = cw[i] + weight[i];
      cwx[i + 1] = cwx[i] + weight[i] * sorted[i];
    }
    double[] c = new double[k];
    if (n == 0) {
      for (int i = 0; i < k; i++) {
        c[i] = -1 + (2.0 * i + 1) / k;
      }
    } else {
      for (int i = 0; i < k; i++) {
        double target = cw[n] * (i + 0.5) / k;
        int at = Arrays.binarySearch(cw, 1, n + 1, target);
        at = at >= 0 ? at - 1 : -at - 2;
        c[i] = sorted[Math.min(n - 1, Math.max(0, at))];
      }
      for (int it = 0; it < iterations; it++) {
        boolean moved = false;
        int start = 0;
        for (int i = 0; i < k; i++) {
          int end = n;
          if (i < k - 1) {
            double mid = (c[i] + c[i + 1]) / 2;
            end = upper(sorted, start, n, mid);
          }
          double mass = cw[end] - cw[start];
          if (mass > 0) {
            double next = (cwx[end] - cwx[start]) / mass;
            moved |= next != c[i];
            c[i] = next;
          }
          start = end;
        }
        Arrays.sort(c);
        if (!moved) {
          break;
        }
      }
    }
    float[] out = new float[k];
    for (int i = 0; i < k; i++) {
      out[i] = (float) Math.max(-1, Math.min(1, c[i]));
    }
    Arrays.sort(out);
    // strictly increasing (duplicates from empty clusters or few distinct points): spread them
    for (int i = 1; i < k; i++) {
      if (!(out[i] > out[i - 1])) {
        out[i] = Math.nextUp(out[i - 1]);
      }
    }
    if (out[k - 1] > 1f) {
      // pushed past 1: spread evenly instead
      for (int i = 0; i < k; i++) {
        out[i] = (float) (-1 + (2.0 * i + 1) / k);
      }
    }
    return out;
  }

  /** The first index in {@code [from, to)} whose value is above {@code x} ({@code to} if none). */
  private static int upper(float[] sorted, int from, int to, double x) {
    int lo = from;
    int hi = to;
    while (lo < hi) {
      int m = (lo + hi) >>> 1;
      if (sorted[m] <= x) {
        lo = m + 1;
      } else {
        hi = m;
      }
    }
    return lo;
  }
}
