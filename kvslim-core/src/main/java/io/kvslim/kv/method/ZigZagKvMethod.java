package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.number;

import io.kvslim.kv.policy.LayerAllocator;
import java.util.Arrays;
import java.util.List;
import java.util.Set;

/**
 * ZigZagKV (Zhong et al. 2024, "ZigZagKV: Dynamic KV Cache Compression for Long-context Modeling
 * based on Layer Uncertainty", arXiv:2412.09036 §3; METHODS.md B3): per-layer budgets in proportion
 * to each layer's uncertainty, with a guaranteed minimum. A layer's uncertainty is its LMBA — the
 * least number of prefix tokens whose window attention (normalised over the prefix) reaches τ —
 * averaged over its KV heads and divided by the sum over layers: {@code B_l = B_min + (T −
 * L·B_min)·u_l}, {@code B_min = ⌊μ·B⌋}. Budgets past a layer's prefix are clipped and the rest
 * spread over the other layers in the same proportions, so the layers keep exactly {@code T = L·B}
 * tokens together. Token choice in each layer is SnapKV's (or Ada-KV's when composed with it).
 *
 * <p>No authors' code was found; the LMBA definition is the paper's (and kvpress PR #238's), τ and
 * μ are the catalog's values, marked unverified there.
 */
public final class ZigZagKvMethod implements KvMethod {
  @Override
  public String name() {
    return "zigzagkv";
  }

  @Override
  public Family family() {
    return Family.ALLOCATOR;
  }

  @Override
  public String paper() {
    return "Zhong et al. 2024, ZigZagKV: Dynamic KV Cache Compression for Long-context Modeling"
        + " based on Layer Uncertainty, arXiv:2412.09036 §3";
  }

  @Override
  public String summary() {
    return "ZigZagKV: per-layer budgets from layer uncertainty (LMBA), with a floor.";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        number("tau", "0.9", "attention mass a layer's LMBA must cover").between(0.01, 1),
        number("mu", "0.2", "floor: share of the uniform budget every layer keeps").between(0, 1));
  }

  @Override
  public Set<Need> needs() {
    return Set.of(Need.QUERIES);
  }

  @Override
  public LayerAllocator allocator(MethodCall c, PolicyContext ctx) {
    return new Allocator(c.number("tau"), c.number("mu"));
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of(
        "zigzagkv + snapkv:budget=12.5%,window=32",
        "zigzagkv + snapkv:budget=25%,window=32", "zigzagkv + snapkv:budget=50%,window=32");
  }

  @Override
  public String specKeeping(int tokens) {
    return "zigzagkv + snapkv:budget=" + Math.max(tokens, 17) + ",window=16";
  }

  @Override
  public String specCompressing(int tokens) {
    return "zigzagkv + snapkv:budget=" + Math.max(9, tokens / 4) + ",window=8";
  }

  /** The allocation of one sequence. */
  static final class Allocator implements LayerAllocator {
    private final double tau;
    private final double mu;

    Allocator(double tau, double mu) {
      this.tau = tau;
      this.mu = mu;
    }

    @Override
    public String name() {
      return "zigzagkv";
    }

    @Override
    public int[] allocate(LayerVotes[] layers, long total) {
      int n = layers.length;
      double[] lmba = new double[n];
      int[] floor = new int[n];
      int[] cap = new int[n];
      int uniform = (int) Math.min(Integer.MAX_VALUE, total / Math.max(1, n));
      for (int i = 0; i < n; i++) {
        float[][] votes = layers[i].votes();
        double sum = 0;
        for (float[] head : votes) {
          sum += lmba(head, tau);
        }
        lmba[i] = votes.length == 0 ? 0 : sum / votes.length;
        floor[i] = (int) Math.floor(mu * uniform);
        cap[i] = layers[i].prefix();
      }
      return LayerAllocator.apportion(lmba, total, floor, cap);
    }

    /**
     * The least number of tokens whose attention, normalised to sum 1, reaches {@code tau}: 1 for a
     * one-hot row, 0 for an empty one.
     */
    static int lmba(float[] attention, double tau) {
      if (attention.length == 0) {
        return 0;
      }
      float[] sorted = attention.clone();
      Arrays.sort(sorted);
      double total = 0;
      for (float a : sorted) {
        total += a;
      }
      if (total <= 0) {
        return sorted.length; // no signal: every token counts alike
      }
      double acc = 0;
      for (int m = 1; m <= sorted.length; m++) {
        acc += sorted[sorted.length - m];
        if (acc >= tau * total) {
          return m;
        }
      }
      return sorted.length;
    }
  }
}
