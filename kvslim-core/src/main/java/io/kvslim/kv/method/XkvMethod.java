package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.number;

import io.kvslim.kv.policy.LayerAllocator;
import java.util.Arrays;
import java.util.List;
import java.util.PriorityQueue;
import java.util.Set;

/**
 * XKV (Li et al. 2024, "XKV: Personalized KV Cache Memory Reduction for Long-Context LLM
 * Inference", arXiv:2412.05896 §4; METHODS.md B5): per-layer cache sizes from each layer's
 * attention-mass profile, chosen by a global optimisation for this input. F_l(c) is the share of
 * the layer's importance its c most important prefix tokens cover (the window's mean attention, per
 * KV head, sorted; averaged over heads); the sizes maximise {@code Σ_l F_l(c_l)} subject to {@code
 * Σ_l c_l = T}. Each F_l is concave and non-decreasing (its increments are the sorted attentions),
 * so handing out tokens one at a time to the layer with the largest next increment is optimal (ties
 * go to the lower layer).
 *
 * <p>The objective is the catalog's formalisation (marked unverified there: no authors' code was
 * found); the profiling uses the whole observation window rather than a sample of its rows, and
 * only the budget mode is built (not the θ-coverage mode, which does not keep a byte budget).
 */
public final class XkvMethod implements KvMethod {
  @Override
  public String name() {
    return "xkv";
  }

  @Override
  public Family family() {
    return Family.ALLOCATOR;
  }

  @Override
  public String paper() {
    return "Li et al. 2024, XKV: Personalized KV Cache Memory Reduction for Long-Context LLM"
        + " Inference, arXiv:2412.05896 §4";
  }

  @Override
  public String summary() {
    return "XKV: per-layer sizes maximising the attention mass kept (greedy on concave curves).";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        number("floor", "0", "share of the uniform budget every layer keeps at least")
            .between(0, 1));
  }

  @Override
  public Set<Need> needs() {
    return Set.of(Need.QUERIES);
  }

  @Override
  public LayerAllocator allocator(MethodCall c, PolicyContext ctx) {
    return new Allocator(c.number("floor"));
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of(
        "xkv + snapkv:budget=12.5%,window=32",
        "xkv + snapkv:budget=25%,window=32", "xkv + snapkv:budget=50%,window=32");
  }

  @Override
  public String specKeeping(int tokens) {
    return "xkv + snapkv:budget=" + Math.max(tokens, 17) + ",window=16";
  }

  @Override
  public String specCompressing(int tokens) {
    return "xkv + snapkv:budget=" + Math.max(9, tokens / 4) + ",window=8";
  }

  /** The allocation of one sequence. */
  static final class Allocator implements LayerAllocator {
    private final double floor;

    Allocator(double floor) {
      this.floor = floor;
    }

    @Override
    public String name() {
      return "xkv";
    }

    @Override
    public int[] allocate(LayerVotes[] layers, long total) {
      int n = layers.length;
      double[][] gains = new double[n][];
      int[] start = new int[n];
      long uniform = total / Math.max(1, n);
      long given = 0;
      for (int i = 0; i < n; i++) {
        gains[i] = increments(layers[i].votes());
        start[i] = (int) Math.min(gains[i].length, Math.floor(floor * uniform));
        given += start[i];
      }
      return greedy(gains, start, Math.max(given, Math.min(total, capacity(gains))));
    }

    private static long capacity(double[][] gains) {
      long sum = 0;
      for (double[] g : gains) {
        sum += g.length;
      }
      return sum;
    }

    /**
     * F_l's increments: {@code F_l(c+1) − F_l(c)} for c = 0..prefix−1, the mean over heads of each
     * head's attention sorted descending and divided by its sum (non-increasing: F_l is concave).
     */
    static double[] increments(float[][] votes) {
      int prefix = votes.length == 0 ? 0 : votes[0].length;
      double[] out = new double[prefix];
      for (float[] head : votes) {
        float[] sorted = head.clone();
        Arrays.sort(sorted);
        double sum = 0;
        for (float a : sorted) {
          sum += a;
        }
        for (int c = 0; c < prefix; c++) {
          float a = sorted[prefix - 1 - c];
          out[c] += (sum > 0 ? a / sum : 1.0 / prefix) / votes.length;
        }
      }
      return out;
    }

    /**
     * Starting from {@code start}, gives {@code total − Σ start} more tokens one at a time to the
     * layer whose next increment is largest (lower layer first among equals).
     */
    static int[] greedy(double[][] gains, int[] start, long total) {
      int n = gains.length;
      int[] c = start.clone();
      long left = total;
      for (int s : start) {
        left -= s;
      }
      PriorityQueue<Integer> next =
          new PriorityQueue<>(
              Math.max(1, n),
              (a, b) -> {
                int byGain = Double.compare(gains[b][c[b]], gains[a][c[a]]);
                return byGain != 0 ? byGain : Integer.compare(a, b);
              });
      for (int i = 0; i < n; i++) {
        if (c[i] < gains[i].length) {
          next.add(i);
        }
      }
      while (left > 0 && !next.isEmpty()) {
        int i = next.poll();
        c[i]++;
        left--;
        if (c[i] < gains[i].length) {
          next.add(i);
        }
      }
      return c;
    }
  }
}
