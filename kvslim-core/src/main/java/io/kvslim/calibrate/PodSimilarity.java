package io.kvslim.calibrate;

import io.kvslim.engine.Engine;
import io.kvslim.kv.AttentionObserver;
import io.kvslim.kv.KvCache;
import io.kvslim.model.ModelConfig;
import java.util.Arrays;
import java.util.List;
import java.util.function.LongConsumer;

/**
 * POD's offline step (Ma et al. 2024, "Compressing KV Cache for Long-Context LLM Inference with
 * Inter-Layer Attention Similarity", arXiv:2412.02252 §3; METHODS.md S4 step 1): how alike
 * consecutive layers' attention over distant tokens is, and the greedy grouping of consecutive
 * layers that {@code pod} applies. The authors' code is not public (none found; the paper states
 * the idea, not the measure), so the measure is this project's choice, named in the profile as
 * {@link #MEASURE}:
 *
 * <ol>
 *   <li>the first {@link #WINDOWS} windows of the calibration text run with a full cache; in each,
 *       up to {@link #QUERIES} query positions {@code p} evenly spaced over those with at least
 *       {@link #MIN_DISTANT} distant tokens;
 *   <li>for each such query and query head, the layer's attention over the distant tokens
 *       (positions {@code SINKS .. p − window}, {@code window = min(WINDOW, length / 4)}),
 *       renormalized to sum 1;
 *   <li>{@code similarity[l]} = the mean over queries and heads of {@code 1 − JSD(P_l, P_{l+1})},
 *       the Jensen-Shannon divergence in bits (so 1 means the same distribution, 0 disjoint).
 * </ol>
 *
 * {@link #groups} then groups consecutive layers greedily: boundaries between layers {@code l} and
 * {@code l + 1} are taken from the most similar down (ties to the lower layer), each merging its
 * two groups when the merged group has at most {@code g} layers.
 */
public final class PodSimilarity {
  /** The measure's name in the profile. */
  public static final String MEASURE = "1 - jensen_shannon_bits(distant attention)";

  static final int WINDOWS = 8;
  static final int QUERIES = 32;
  static final int SINKS = 4;
  static final int WINDOW = 64;
  static final int MIN_DISTANT = 8;

  private PodSimilarity() {}

  /** Tokens {@link #run} feeds the model at most for {@code used} tokens of text. */
  static long work(ModelConfig c, int used) {
    return Math.min((long) used + WINDOWS, (long) WINDOWS * c.contextLength());
  }

  /** Runs the pass on {@code engine} (full caches) over {@code windows}; progress in tokens. */
  static CalibrationProfile.Pod run(Engine engine, List<int[]> windows, LongConsumer progress) {
    ModelConfig c = engine.config();
    int layers = c.layers();
    int heads = c.heads();
    double[] sums = new double[Math.max(0, layers - 1)];
    long[] counts = new long[sums.length];
    int used = 0;
    int queriesUsed = 0;
    int windowUsed = 0;
    for (int w = 0; w < windows.size() && used < WINDOWS; w++) {
      int[] text = windows.get(w);
      int len = text.length;
      int window = Math.min(WINDOW, Math.max(1, len / 4));
      int lo = SINKS + window + MIN_DISTANT - 1; // the first query with MIN_DISTANT distant tokens
      if (lo > len - 1 || layers < 2) {
        continue;
      }
      int[] slot = new int[len];
      Arrays.fill(slot, -1);
      int q = 0;
      for (int k = 0; k < QUERIES; k++) {
        int p = QUERIES == 1 ? len - 1 : lo + (int) ((long) k * (len - 1 - lo) / (QUERIES - 1));
        if (slot[p] < 0) {
          slot[p] = q++;
        }
      }
      float[][][] dist = new float[2][q * heads][];
      int[] chunkStart = {0};
      int win = window;
      engine
          .forward()
          .setLayerObservers(
              layer ->
                  (AttentionObserver)
                      (qi, head, kvHead, probs, count) -> {
                        int p = chunkStart[0] + qi;
                        if (slot[p] < 0) {
                          return;
                        }
                        float[] d = distant(probs, p, win);
                        int at = slot[p] * heads + head;
                        dist[layer & 1][at] = d;
                        if (layer > 0) {
                          sums[layer - 1] += 1 - jensenShannonBits(dist[(layer - 1) & 1][at], d);
                          counts[layer - 1]++;
                        }
                      });
      try (KvCache cache = engine.newCache()) {
        float[] logits = new float[c.vocabSize()];
        for (int s = 0; s < len; s += Engine.DEFAULT_PREFILL_CHUNK) {
          int e = Math.min(len, s + Engine.DEFAULT_PREFILL_CHUNK);
          chunkStart[0] = s;
          engine.prefill(cache, text, s, e, s, false, logits);
        }
      } finally {
        engine.forward().setLayerObservers(null);
      }
      progress.accept(len);
      used++;
      queriesUsed = Math.max(queriesUsed, q);
      windowUsed = Math.max(windowUsed, window);
    }
    double[] similarity = new double[sums.length];
    for (int l = 0; l < sums.length; l++) {
      similarity[l] = counts[l] == 0 ? 0 : sums[l] / counts[l];
    }
    return new CalibrationProfile.Pod(
        SINKS, Math.max(1, windowUsed), used, Math.max(1, queriesUsed), similarity);
  }

  /** The attention over positions {@code SINKS .. p − window}, renormalized (uniform if none). */
  static float[] distant(float[] probs, int p, int window) {
    int n = Math.max(0, p - window - SINKS + 1);
    float[] out = new float[n];
    double sum = 0;
    for (int t = 0; t < n; t++) {
      sum += probs[SINKS + t];
    }
    for (int t = 0; t < n; t++) {
      out[t] = sum > 0 ? (float) (probs[SINKS + t] / sum) : 1f / n;
    }
    return out;
  }

  /** Jensen-Shannon divergence of two distributions, in bits (0 when equal, 1 when disjoint). */
  static double jensenShannonBits(float[] a, float[] b) {
    double d = 0;
    for (int t = 0; t < a.length; t++) {
      double m = 0.5 * ((double) a[t] + b[t]);
      if (a[t] > 0) {
        d += 0.5 * a[t] * Math.log(a[t] / m);
      }
      if (b[t] > 0) {
        d += 0.5 * b[t] * Math.log(b[t] / m);
      }
    }
    return Math.min(1, Math.max(0, d / Math.log(2)));
  }

  /**
   * The greedy grouping of consecutive layers into groups of at most {@code g}: {@code firstOf[l]}
   * is the first layer of layer {@code l}'s group. {@code similarity[l]} is that of layers {@code
   * l} and {@code l + 1}; {@code g = 1} gives every layer its own group.
   */
  public static int[] groups(double[] similarity, int g) {
    int layers = similarity.length + 1;
    Integer[] order = new Integer[similarity.length];
    for (int b = 0; b < order.length; b++) {
      order[b] = b;
    }
    Arrays.sort(order, (x, y) -> x.equals(y) ? 0 : compare(similarity[y], similarity[x], x, y));
    int[] firstOf = new int[layers];
    int[] size = new int[layers]; // by first layer
    for (int l = 0; l < layers; l++) {
      firstOf[l] = l;
      size[l] = 1;
    }
    for (int b : order) {
      int left = firstOf[b];
      int right = b + 1; // first layer of the group after the boundary
      if (size[left] + size[right] > g) {
        continue;
      }
      size[left] += size[right];
      for (int l = right; l < layers && firstOf[l] == right; l++) {
        firstOf[l] = left;
      }
    }
    return firstOf;
  }

  private static int compare(double a, double b, int x, int y) {
    int c = Double.compare(a, b);
    return c != 0 ? c : Integer.compare(x, y);
  }
}
