package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.number;

import io.kvslim.kv.policy.LayerAllocator;
import java.util.Arrays;
import java.util.List;
import java.util.Set;

/**
 * SqueezeAttention (Wang et al. 2024, "SqueezeAttention: 2D Management of KV-Cache in LLM Inference
 * via Layer-wise Optimal Budget", arXiv:2404.04793 §3; METHODS.md B4): a layer whose attention
 * block barely turns its input matters less. During the prefill each layer measures the mean over
 * prompt tokens of {@code cos(x, x + Attn(x))} (x: the residual stream entering the attention
 * block), as the authors' decoder layer does (hetailang/SqueezeAttention {@code
 * utils_hh/modify_llama_drop.py} lines 296–314). The cosines are split into 3 clusters by 1-D
 * k-means; the cluster with the highest centre is unimportant and its layers keep {@code p·B}, the
 * other layers share the rest equally (same file, lines 519–541: {@code a = (L·ini_size −
 * |U|·percent)/|rest|}, where the authors' {@code percent} is our {@code p·ini_size}). When the
 * other layers cannot hold their share (it exceeds their prefix), the excess goes back to the
 * unimportant layers, so a budget covering the sequence evicts nothing.
 *
 * <p>Deviations: the authors run scikit-learn's randomly seeded k-means; this is the exact optimum
 * of 1-D k-means (contiguous clusters of the sorted cosines, found by dynamic programming), which
 * is deterministic. With fewer than 3 distinct cosines the layers cannot form 3 clusters and the
 * budgets stay uniform. The authors pair the budgets with a sliding window or H2O; here the token
 * choice is SnapKV's (or Ada-KV's), as for every allocator.
 */
public final class SqueezeAttentionMethod implements KvMethod {
  @Override
  public String name() {
    return "squeezeattention";
  }

  @Override
  public Family family() {
    return Family.ALLOCATOR;
  }

  @Override
  public String paper() {
    return "Wang et al. 2024, SqueezeAttention: 2D Management of KV-Cache in LLM Inference via"
        + " Layer-wise Optimal Budget, arXiv:2404.04793 §3";
  }

  @Override
  public String summary() {
    return "SqueezeAttention: layers clustered by cos(x, x+Attn(x)); the least important keep p·B.";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        number("p", "0.3", "share of the uniform budget the unimportant layers keep (1 = uniform)")
            .between(0, 1));
  }

  @Override
  public Set<Need> needs() {
    return Set.of(Need.QUERIES);
  }

  @Override
  public LayerAllocator allocator(MethodCall c, PolicyContext ctx) {
    return new Allocator(c.number("p"), ctx.layers().length);
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of(
        "squeezeattention + snapkv:budget=12.5%,window=32",
        "squeezeattention + snapkv:budget=25%,window=32",
        "squeezeattention + snapkv:budget=50%,window=32");
  }

  @Override
  public String specKeeping(int tokens) {
    return "squeezeattention + snapkv:budget=" + Math.max(tokens, 17) + ",window=16";
  }

  @Override
  public String specCompressing(int tokens) {
    return "squeezeattention + snapkv:budget=" + Math.max(9, tokens / 4) + ",window=8";
  }

  /** The allocation of one sequence: cosines summed over the prompt's rows, per layer. */
  static final class Allocator implements LayerAllocator {
    private final double p;
    private final double[] cosSum;
    private final long[] rows;

    Allocator(double p, int layers) {
      this.p = p;
      this.cosSum = new double[layers];
      this.rows = new long[layers];
    }

    @Override
    public String name() {
      return "squeezeattention";
    }

    @Override
    public boolean wantsAttentionOutput(int layer) {
      return true;
    }

    @Override
    public void onAttentionOutput(int layer, int n, int dim, float[] x, float[] out) {
      for (int r = 0; r < n; r++) {
        cosSum[layer] += cosine(x, out, r * dim, dim);
      }
      rows[layer] += n;
    }

    /** cos(x, x + a) of one row; 1 when the block adds nothing. */
    static double cosine(float[] x, float[] a, int off, int dim) {
      double dot = 0;
      double nx = 0;
      double ny = 0;
      for (int i = 0; i < dim; i++) {
        double xi = x[off + i];
        double yi = xi + a[off + i];
        dot += xi * yi;
        nx += xi * xi;
        ny += yi * yi;
      }
      double norm = Math.sqrt(nx) * Math.sqrt(ny);
      return norm == 0 ? 1 : dot / norm;
    }

    /** The mean cosine of {@code layer} over the prompt rows seen (1 when none were). */
    double meanCosine(int layer) {
      return rows[layer] == 0 ? 1 : cosSum[layer] / rows[layer];
    }

    @Override
    public int[] allocate(LayerVotes[] layers, long total) {
      int n = layers.length;
      double[] cos = new double[n];
      int[] cap = new int[n];
      for (int i = 0; i < n; i++) {
        cos[i] = meanCosine(layers[i].layer());
        cap[i] = layers[i].prefix();
      }
      boolean[] unimportant = highestCluster(cos);
      return budgets(unimportant, total, cap, p);
    }

    /** Unimportant layers keep {@code p} of the uniform budget, the others share the rest. */
    static int[] budgets(boolean[] unimportant, long total, int[] cap, double p) {
      int n = unimportant.length;
      long uniform = total / Math.max(1, n);
      int[] fixed = new int[n];
      int[] restCap = new int[n];
      long left = total;
      for (int i = 0; i < n; i++) {
        if (unimportant[i]) {
          fixed[i] = (int) Math.min(cap[i], Math.floor(p * uniform));
          left -= fixed[i];
        } else {
          restCap[i] = cap[i];
        }
      }
      double[] equal = new double[n];
      for (int i = 0; i < n; i++) {
        equal[i] = unimportant[i] ? 0 : 1;
      }
      int[] rest = LayerAllocator.apportion(equal, left, new int[n], restCap);
      long unspent = left - sumOf(rest);
      // what the other layers cannot hold (they keep their whole prefix) goes back to the
      // unimportant ones, so the layers always keep min(T, Σ prefix) together
      double[] back = new double[n];
      int[] room = new int[n];
      for (int i = 0; i < n; i++) {
        back[i] = unimportant[i] ? 1 : 0;
        room[i] = unimportant[i] ? cap[i] - fixed[i] : 0;
      }
      int[] returned = LayerAllocator.apportion(back, unspent, new int[n], room);
      for (int i = 0; i < n; i++) {
        rest[i] += fixed[i] + returned[i];
      }
      return rest;
    }

    /**
     * The layers in the 1-D k-means cluster (k = 3) with the highest centre: the optimal split of
     * the sorted values into 3 contiguous groups by least squares. None with fewer than 3 distinct
     * values.
     */
    static boolean[] highestCluster(double[] values) {
      int n = values.length;
      boolean[] out = new boolean[n];
      if (Arrays.stream(values).distinct().count() < 3) {
        return out;
      }
      double[] v = values.clone();
      Arrays.sort(v);
      double best = Double.POSITIVE_INFINITY;
      int cut = n; // first index of the top cluster in sorted order
      for (int a = 1; a < n - 1; a++) {
        for (int b = a + 1; b < n; b++) {
          double cost = sse(v, 0, a) + sse(v, a, b) + sse(v, b, n);
          if (cost < best - 1e-15) {
            best = cost;
            cut = b;
          }
        }
      }
      double threshold = v[cut];
      for (int i = 0; i < n; i++) {
        out[i] = values[i] >= threshold;
      }
      return out;
    }

    private static long sumOf(int[] a) {
      long s = 0;
      for (int x : a) {
        s += x;
      }
      return s;
    }

    private static double sse(double[] v, int from, int to) {
      double mean = 0;
      for (int i = from; i < to; i++) {
        mean += v[i];
      }
      mean /= to - from;
      double s = 0;
      for (int i = from; i < to; i++) {
        s += (v[i] - mean) * (v[i] - mean);
      }
      return s;
    }
  }
}
