package io.kvslim.kv.policy;

/**
 * A per-layer budget allocator (METHODS.md §5: ZigZagKV, SqueezeAttention, XKV): given what the
 * prefill showed about each layer, it splits a total token budget over the layers a rule covers.
 * The token choice inside each layer's budget stays the policy's it is composed with (SnapKV's or
 * Ada-KV's, e.g. {@code zigzagkv + snapkv:budget=25%}). One allocator is made per sequence.
 */
public interface LayerAllocator {

  /**
   * What the allocator sees of one scoped layer at the end of the prefill: per KV head, the mean
   * attention the observation window's queries paid to each prefix token (before pooling; the
   * window itself excluded).
   *
   * @param layer the layer's index in the model
   * @param votes {@code votes[g][i]} for KV head g and prefix token i
   */
  record LayerVotes(int layer, float[][] votes) {
    /** The most prefix tokens a head of the layer holds. */
    public int prefix() {
      int most = 0;
      for (float[] head : votes) {
        most = Math.max(most, head.length);
      }
      return most;
    }
  }

  /** Whether the allocator needs {@link #onAttentionOutput} for {@code layer} during prefill. */
  default boolean wantsAttentionOutput(int layer) {
    return false;
  }

  /**
   * The residual stream entering {@code layer}'s attention block ({@code x}) and the block's output
   * ({@code out}, after the output projection, before it is added), {@code rows × dim} each, for
   * the prompt rows of one prefill call.
   */
  default void onAttentionOutput(int layer, int rows, int dim, float[] x, float[] out) {}

  /**
   * Per-layer prefix budgets (window excluded) for the scoped layers in {@code layers}' order,
   * summing to exactly {@code min(total, Σ prefix)}, each within {@code [0, prefix]}.
   *
   * @param total the tokens the layers keep together: the uniform budget times the layer count
   */
  int[] allocate(LayerVotes[] layers, long total);

  /** The name of the allocator's method, for messages. */
  String name();

  /**
   * Whole budgets in proportion to {@code weights}, each between {@code floor[i]} and {@code
   * cap[i]}, summing to exactly {@code min(total, Σ cap)} (largest remainders get the rounding;
   * ties go to the lower index). Weights that are all zero share equally. When the floors already
   * exceed the total, each layer gets its floor scaled down in the same way.
   */
  static int[] apportion(double[] weights, long total, int[] floor, int[] cap) {
    int n = weights.length;
    long capSum = 0;
    long floorSum = 0;
    int[] lo = new int[n];
    for (int i = 0; i < n; i++) {
      lo[i] = Math.min(floor[i], cap[i]);
      capSum += cap[i];
      floorSum += lo[i];
    }
    long target = Math.min(total, capSum);
    if (floorSum > target) {
      // floors alone overshoot: share the target in proportion to the floors
      double[] w = new double[n];
      for (int i = 0; i < n; i++) {
        w[i] = lo[i];
      }
      return apportion(w, target, new int[n], lo);
    }
    int[] out = lo.clone();
    long left = target - floorSum;
    boolean[] full = new boolean[n];
    double[] share = new double[n];
    // water-filling: shares past a cap are clipped and the rest re-spread over the others
    while (left > 0) {
      double wsum = 0;
      int open = 0;
      for (int i = 0; i < n; i++) {
        if (!full[i]) {
          wsum += Math.max(0, weights[i]);
          open++;
        }
      }
      if (open == 0) {
        break;
      }
      boolean clipped = false;
      for (int i = 0; i < n; i++) {
        if (full[i]) {
          continue;
        }
        double w = wsum > 0 ? Math.max(0, weights[i]) / wsum : 1.0 / open;
        share[i] = w * left;
        if (out[i] + share[i] >= cap[i]) {
          left -= cap[i] - out[i];
          out[i] = cap[i];
          full[i] = true;
          clipped = true;
        }
      }
      if (clipped) {
        continue;
      }
      long given = 0;
      for (int i = 0; i < n; i++) {
        if (!full[i]) {
          int whole = (int) Math.floor(share[i]);
          out[i] += whole;
          given += whole;
          share[i] -= whole;
        }
      }
      long rest = left - given;
      while (rest > 0) {
        int best = -1;
        for (int i = 0; i < n; i++) {
          if (!full[i] && out[i] < cap[i] && (best < 0 || share[i] > share[best])) {
            best = i;
          }
        }
        out[best]++;
        share[best] = -1;
        rest--;
      }
      left = 0;
    }
    return out;
  }
}
