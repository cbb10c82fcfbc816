package io.kvslim.kv.policy;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.Rotary;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.method.Budget;
import io.kvslim.kv.store.HeadStore;
import java.util.BitSet;

/**
 * Expected Attention (Devoto et al. 2025, "Expected Attention: KV Cache Compression by Estimating
 * Attention from Future Queries Distribution", arXiv:2510.00636; METHODS.md N5), once per layer at
 * the end of the prefill, as kvpress's {@code ExpectedAttentionPress} (NVIDIA/kvpress @8bb29b9,
 * {@code kvpress/presses/expected_attention_press.py}) wrapped in its {@code AdaKVPress}, the way
 * kvpress's registry entry {@code "expected_attention": AdaKVPress(ExpectedAttentionPress(
 * epsilon=1e-2))} runs it ({@code evaluation/evaluate_registry.py} line 90). Per layer and query
 * head:
 *
 * <ol>
 *   <li>μ, Σ: mean and covariance (divided by N) of the head's pre-RoPE prompt queries, the first
 *       {@code nSink} rows left out ({@code expected_attention_press.py} lines 70-80). The policy
 *       receives post-RoPE queries and rotates each back by its position's angles (R(t)ᵀ, the
 *       model's own {@link Rotary}), or takes them as they are where the layer rotates at read
 *       time.
 *   <li>R̄ = mean of the rotations R(t) over the next {@code nFuture} positions t = p … p+T−1, p
 *       the position after the prompt (lines 110-120), built in the model's RoPE pairing (adjacent
 *       pairs for GGML's normal mode, halves for NEOX; kvpress writes HF's half split, lines
 *       114-119); μ̄ = R̄μ, Σ̄ = R̄ΣR̄ᵀ (lines 121-123).
 *   <li>Each cached (post-RoPE) key i from {@code nSink} on: z_i = μ̄·k_i/√d + k_iᵀΣ̄k_i/(2d), the
 *       log of E[exp(q·k_i/√d)] for q ~ N(μ̄, Σ̄); a = softmax(z) over those keys (lines 149-152).
 *   <li>KV-head score = mean of a over the head's query heads (lines 155-156), then (· + ε)·‖v_i‖
 *       when {@code vnorm} (lines 159-160); the first {@code nSink} entries score the layer's
 *       maximum + 1 (line 163).
 *   <li>Selection (Ada-KV as kvpress applies it, {@code adakv_press.py} lines 63-71): each head's
 *       top ⌊B·safeguard⌋ scores are raised to the float maximum, then the layer keeps its top Σ_g
 *       min(n_g, B) scores over all heads together, so heads hold different numbers of tokens.
 * </ol>
 *
 * Computation runs in double; decode steps evict nothing (kvpress's {@code DecodingPress} variant
 * is not implemented). With no query left after the sinks, μ = 0 and Σ = 0 (every z is 0).
 */
public final class ExpectedAttentionPolicy implements ChunkedPrefill.Compressor {
  /** The method's knobs. */
  public record Settings(
      Budget budget,
      int nFuture,
      int nSink,
      boolean covariance,
      boolean vnorm,
      double epsilon,
      double safeguard) {}

  private final boolean[] layers;
  private final Settings s;
  private final Rotary rope;
  private final double bytesPerToken;
  private final QueryStats[] stats; // per layer, while the prefill runs
  private boolean done;

  public ExpectedAttentionPolicy(
      boolean[] layers, Settings settings, Rotary rope, double bytesPerTokenAll) {
    if (rope == null) {
      throw new IllegalArgumentException(
          "expected needs the model's rotary embedding, which this cache was built without");
    }
    this.layers = layers;
    this.s = settings;
    this.rope = rope;
    this.bytesPerToken = bytesPerTokenAll;
    this.stats = new QueryStats[layers.length];
  }

  @Override
  public boolean wantsQueries(int layer) {
    return layers[layer] && !done;
  }

  @Override
  public void onQueries(
      ManagedKvCache cache, int layer, int n, int[] positions, int heads, float[] q, float scale) {
    PagedLayerKv kv = cache.paged(layer);
    int d = kv.headDim();
    QueryStats st = stats[layer];
    if (st == null) {
      st = stats[layer] = new QueryStats(heads, d, s.covariance());
    }
    boolean relative = kv.cacheRelative();
    int rowLen = heads * d;
    int half = rope.dims() / 2;
    float[] row = new float[rowLen];
    float[] cos = new float[half];
    float[] sin = new float[half];
    for (int r = 0; r < n; r++) {
      st.lastPosition = Math.max(st.lastPosition, positions[r]);
      if (st.rows++ < s.nSink()) {
        continue; // kvpress drops the first n_sink hidden states (line 70)
      }
      System.arraycopy(q, r * rowLen, row, 0, rowLen);
      if (!relative) {
        unrotate(rope, positions[r], row, heads, d, cos, sin);
      }
      st.add(row);
    }
  }

  /** The query statistics of {@code layer} gathered so far (null once it was compressed). */
  QueryStats statsOf(int layer) {
    return stats[layer];
  }

  /** Rotates {@code heads} post-RoPE vectors back to before RoPE: R(position)ᵀ. */
  static void unrotate(
      Rotary rope, int position, float[] x, int heads, int d, float[] cos, float[] sin) {
    rope.angles(position, cos, sin, 0);
    for (int i = 0; i < sin.length; i++) {
      sin[i] = -sin[i];
    }
    rope.rotate(x, 0, heads, d, cos, sin, 0);
  }

  @Override
  public void afterStep(ManagedKvCache cache, KvCache.StepKind kind) {
    if (done || kind != KvCache.StepKind.PREFILL) {
      return;
    }
    done = true;
    for (int l = 0; l < layers.length; l++) {
      compressLayer(cache, l, cache.promptTokens());
      stats[l] = null;
    }
  }

  /** Inside a chunked prefill, the statistics go on accumulating over every query seen. */
  @Override
  public void compressLayer(ManagedKvCache cache, int layer, int promptTokens) {
    if (layers[layer] && stats[layer] != null) {
      int keep = s.budget().tokens(promptTokens, bytesPerToken);
      compressLayer(cache.paged(layer), stats[layer], keep);
    }
  }

  private void compressLayer(PagedLayerKv layer, QueryStats st, int keep) {
    int kvHeads = layer.kvHeads();
    int[] sizes = new int[kvHeads];
    boolean over = false;
    for (int g = 0; g < kvHeads; g++) {
      sizes[g] = layer.size(g);
      over |= sizes[g] > keep;
    }
    if (!over) {
      return;
    }
    int d = layer.headDim();
    boolean relative = layer.cacheRelative();
    // kvpress averages over positions q_len … q_len+T−1 after a prompt at 0 … q_len−1 (line 110)
    int future = relative ? layer.size(0) : st.lastPosition + 1;
    double[] rBar = averageRotation(rope, future, s.nFuture(), d);
    int heads = st.heads;
    double[][] mu = new double[heads][];
    double[][] sigma = new double[heads][];
    for (int h = 0; h < heads; h++) {
      mu[h] = times(rBar, st.mean(h), d);
      sigma[h] = s.covariance() ? sandwich(rBar, st.covariance(h), d) : null;
    }
    int group = heads / kvHeads;
    float[][] scores = new float[kvHeads][];
    float max = Float.NEGATIVE_INFINITY;
    for (int g = 0; g < kvHeads; g++) {
      int n = sizes[g];
      HeadStore head = layer.head(g);
      float[] keys = new float[n * d];
      float[] values = new float[n * d];
      head.readKeys(keys);
      head.readValues(values);
      if (relative) {
        float[] cos = new float[rope.dims() / 2];
        float[] sin = new float[rope.dims() / 2];
        for (int i = 0; i < n; i++) { // such a layer rotates key i at its cache index
          rope.angles(i, cos, sin, 0);
          rope.rotate(keys, i * d, 1, d, cos, sin, 0);
        }
      }
      double[][] m = java.util.Arrays.copyOfRange(mu, g * group, (g + 1) * group);
      double[][] c = java.util.Arrays.copyOfRange(sigma, g * group, (g + 1) * group);
      scores[g] = headScores(keys, values, n, d, m, c, s.nSink(), s.vnorm(), s.epsilon());
      for (int i = Math.min(s.nSink(), n); i < n; i++) {
        max = Math.max(max, scores[g][i]);
      }
    }
    float sink = max == Float.NEGATIVE_INFINITY ? 1f : max + 1f; // line 163
    for (int g = 0; g < kvHeads; g++) {
      java.util.Arrays.fill(scores[g], 0, Math.min(s.nSink(), sizes[g]), sink);
    }
    BitSet[] kept = adaKvKeep(scores, sizes, keep, s.safeguard());
    for (int g = 0; g < kvHeads; g++) {
      kept[g].flip(0, sizes[g]);
      layer.evict(g, kept[g]);
    }
  }

  /**
   * One KV head's scores (sink entries left 0): per query head h of its group, z_i = μ̄_h·k_i/√d +
   * k_iᵀΣ̄_hk_i/(2d) for i ≥ nSink ({@code sigma[h]} null: no covariance term), softmax over those
   * keys, mean over the group, then (mean + ε)·‖v_i‖ when {@code vnorm}.
   */
  static float[] headScores(
      float[] keys,
      float[] values,
      int n,
      int d,
      double[][] mu,
      double[][] sigma,
      int nSink,
      boolean vnorm,
      double epsilon) {
    float[] out = new float[n];
    int from = Math.min(nSink, n);
    if (from == n) {
      return out;
    }
    double[] mean = new double[n];
    for (int h = 0; h < mu.length; h++) {
      double[] a = softmax(logits(keys, from, n, d, mu[h], sigma[h]));
      for (int i = from; i < n; i++) {
        mean[i] += a[i - from] / mu.length;
      }
    }
    for (int i = from; i < n; i++) {
      double v = mean[i];
      if (vnorm) {
        double sq = 0;
        for (int j = 0; j < d; j++) {
          double x = values[i * d + j];
          sq += x * x;
        }
        v = (v + epsilon) * Math.sqrt(sq);
      }
      out[i] = (float) v;
    }
    return out;
  }

  /** z_i = μ·k_i/√d + k_iᵀΣk_i/(2d) for keys {@code from … n−1}; {@code sigma} may be null. */
  public static double[] logits(float[] keys, int from, int n, int d, double[] mu, double[] sigma) {
    double[] z = new double[n - from];
    double root = Math.sqrt(d);
    for (int i = from; i < n; i++) {
      int o = i * d;
      double lin = 0;
      for (int a = 0; a < d; a++) {
        lin += mu[a] * keys[o + a];
      }
      double quad = 0;
      if (sigma != null) {
        for (int a = 0; a < d; a++) {
          double row = 0;
          for (int b = 0; b < d; b++) {
            row += sigma[a * d + b] * keys[o + b];
          }
          quad += keys[o + a] * row;
        }
      }
      z[i - from] = lin / root + quad / (2.0 * d);
    }
    return z;
  }

  static double[] softmax(double[] z) {
    double max = Double.NEGATIVE_INFINITY;
    for (double v : z) {
      max = Math.max(max, v);
    }
    double sum = 0;
    double[] out = new double[z.length];
    for (int i = 0; i < z.length; i++) {
      out[i] = Math.exp(z[i] - max);
      sum += out[i];
    }
    for (int i = 0; i < z.length; i++) {
      out[i] /= sum;
    }
    return out;
  }

  /**
   * R̄ = mean of the rotations of positions {@code start … start+count−1}, a {@code d × d} matrix
   * (row-major) in {@code rope}'s pairing: the rotation is linear in (cos, sin), so R̄ is the
   * rotation by the mean cosines and sines, applied to each basis vector for its column.
   */
  public static double[] averageRotation(Rotary rope, int start, int count, int d) {
    int half = rope.dims() / 2;
    float[] cos = new float[half];
    float[] sin = new float[half];
    double[] cs = new double[half];
    double[] ss = new double[half];
    for (int t = start; t < start + count; t++) {
      rope.angles(t, cos, sin, 0);
      for (int j = 0; j < half; j++) {
        cs[j] += cos[j];
        ss[j] += sin[j];
      }
    }
    for (int j = 0; j < half; j++) {
      cos[j] = (float) (cs[j] / count);
      sin[j] = (float) (ss[j] / count);
    }
    double[] r = new double[d * d];
    float[] e = new float[d];
    for (int b = 0; b < d; b++) {
      java.util.Arrays.fill(e, 0f);
      e[b] = 1f;
      rope.rotate(e, 0, 1, d, cos, sin, 0);
      for (int a = 0; a < d; a++) {
        r[a * d + b] = e[a];
      }
    }
    return r;
  }

  /** M·x for a {@code d × d} row-major M. */
  static double[] times(double[] m, double[] x, int d) {
    double[] y = new double[d];
    for (int a = 0; a < d; a++) {
      double acc = 0;
      for (int b = 0; b < d; b++) {
        acc += m[a * d + b] * x[b];
      }
      y[a] = acc;
    }
    return y;
  }

  /** R·S·Rᵀ for {@code d × d} row-major R and S. */
  static double[] sandwich(double[] r, double[] sMat, int d) {
    double[] rs = new double[d * d];
    for (int a = 0; a < d; a++) {
      for (int k = 0; k < d; k++) {
        double v = r[a * d + k];
        if (v != 0) {
          for (int b = 0; b < d; b++) {
            rs[a * d + b] += v * sMat[k * d + b];
          }
        }
      }
    }
    double[] out = new double[d * d];
    for (int a = 0; a < d; a++) {
      for (int b = 0; b < d; b++) {
        double acc = 0;
        for (int k = 0; k < d; k++) {
          acc += rs[a * d + k] * r[b * d + k];
        }
        out[a * d + b] = acc;
      }
    }
    return out;
  }

  /**
   * kvpress's Ada-KV selection ({@code adakv_press.py} lines 63-71) over one layer: each head's top
   * ⌊keep·safeguard⌋ scores are raised to the float maximum, then the top Σ_g min(n_g, keep) scores
   * of all heads together are kept (ties to the lower head, then the earlier token). Returns the
   * kept indices per head; {@code scores} is modified.
   */
  public static BitSet[] adaKvKeep(float[][] scores, int[] sizes, int keep, double safeguard) {
    int heads = scores.length;
    int safe = (int) (keep * safeguard);
    int total = 0;
    int[] offset = new int[heads + 1];
    BitSet top = new BitSet();
    for (int g = 0; g < heads; g++) {
      top.clear();
      Selection.highest(scores[g], 0, sizes[g], safe, top);
      for (int i = top.nextSetBit(0); i >= 0; i = top.nextSetBit(i + 1)) {
        scores[g][i] = Float.MAX_VALUE;
      }
      total += Math.min(sizes[g], keep);
      offset[g + 1] = offset[g] + sizes[g];
    }
    float[] flat = new float[offset[heads]];
    for (int g = 0; g < heads; g++) {
      System.arraycopy(scores[g], 0, flat, offset[g], sizes[g]);
    }
    BitSet all = new BitSet();
    Selection.highest(flat, 0, flat.length, total, all);
    BitSet[] out = new BitSet[heads];
    for (int g = 0; g < heads; g++) {
      out[g] = all.get(offset[g], offset[g + 1]);
    }
    return out;
  }

  /** Running sums of one layer's pre-RoPE queries, per query head. */
  static final class QueryStats {
    final int heads;
    final int d;
    final double[][] sum;
    final double[][] outer; // upper triangle used; null without covariance
    int rows; // rows offered, sinks included
    int count; // rows summed
    int lastPosition = -1;

    QueryStats(int heads, int d, boolean covariance) {
      this.heads = heads;
      this.d = d;
      this.sum = new double[heads][d];
      this.outer = covariance ? new double[heads][d * d] : null;
    }

    void add(float[] row) {
      count++;
      for (int h = 0; h < heads; h++) {
        double[] s = sum[h];
        int o = h * d;
        for (int a = 0; a < d; a++) {
          s[a] += row[o + a];
        }
        if (outer != null) {
          double[] m = outer[h];
          for (int a = 0; a < d; a++) {
            double x = row[o + a];
            for (int b = a; b < d; b++) {
              m[a * d + b] += x * row[o + b];
            }
          }
        }
      }
    }

    double[] mean(int h) {
      double[] m = new double[d];
      for (int a = 0; a < d && count > 0; a++) {
        m[a] = sum[h][a] / count;
      }
      return m;
    }

    /** (1/N)·Σ_t (q_t − μ)(q_t − μ)ᵀ, from the running sums. */
    double[] covariance(int h) {
      double[] c = new double[d * d];
      if (count == 0) {
        return c;
      }
      double[] m = mean(h);
      for (int a = 0; a < d; a++) {
        for (int b = a; b < d; b++) {
          double v = outer[h][a * d + b] / count - m[a] * m[b];
          c[a * d + b] = v;
          c[b * d + a] = v;
        }
      }
      return c;
    }
  }
}
