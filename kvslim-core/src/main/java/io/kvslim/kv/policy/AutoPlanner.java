package io.kvslim.kv.policy;

/**
 * The planner of the adaptive controller ({@link AutoPolicy}): given each KV head's measured
 * sensitivity (the KL divergence when that head alone keeps a share of its tokens, and when it
 * alone is stored at each format level), the tokens each head holds and its current level, it
 * lowers heads step by step until the estimated bytes fit the budget, always taking the step with
 * the least sensitivity added per byte saved (greedy marginal KLD per byte; a format step may skip
 * levels, to any level of fewer bytes; ties go to the earlier layer, head, the token step, then the
 * nearer level). Steps only go down: a head never gets tokens or bits back, so re-planning during
 * decode evicts or requantizes the least sensitive heads first. Deterministic: the same inputs give
 * the same plan.
 *
 * <p>A head's cost is additive: {@code E(T / n) + Q(level)}, with E interpolated linearly between
 * the measured keep ratios ({@link #KEEP}, E(1) = 0), extended below the smallest one along its
 * last segment, and made non-increasing in the ratio (a measurement below noise never rewards
 * eviction).
 */
public final class AutoPlanner {
  /** The keep ratios whose sensitivity calibration measures, from the full head down. */
  public static final double[] KEEP = {1.0, 0.5, 0.25, 0.125, 0.0625};

  private AutoPlanner() {}

  /**
   * One head's state and curves.
   *
   * @param evict E at {@link #KEEP} (E[0] is the full head, taken as 0)
   * @param quant Q per format level (level 0 the layer's own format, taken as 0)
   */
  public record Head(double[] evict, double[] quant) {}

  /**
   * Lowers the heads until {@code Σ tokens[h] · tokenBytes[level[h]] + overhead <= budget}.
   *
   * @param heads the curves of each head
   * @param tokens tokens each head holds; lowered in place
   * @param floor the fewest tokens each head keeps (its recent window)
   * @param level format level of each head; raised in place (levels may be skipped)
   * @param tokenBytes bytes one token of one head costs at each level (non-increasing)
   * @param seen tokens the sequence has seen (the ratio's denominator)
   * @param budget bytes the heads may hold
   * @param overhead bytes held besides the tokens' (tail blocks, position codes)
   * @return whether the plan fits; when not, every head is at its floor and lowest level
   */
  public static boolean plan(
      Head[] heads,
      int[] tokens,
      int[] floor,
      int[] level,
      long[] tokenBytes,
      int seen,
      long budget,
      long overhead) {
    long held = overhead;
    for (int h = 0; h < heads.length; h++) {
      held += tokens[h] * tokenBytes[level[h]];
    }
    while (held > budget) {
      int best = -1;
      boolean bestTokens = false;
      int bestLevel = -1;
      double bestRate = Double.POSITIVE_INFINITY;
      long bestSaved = 0;
      for (int h = 0; h < heads.length; h++) {
        int t = tokens[h];
        int next = tokenStep(t, floor[h]);
        if (next < t) {
          long saved = (t - next) * tokenBytes[level[h]];
          double rate = rate(evict(heads[h], next, seen) - evict(heads[h], t, seen), saved);
          if (saved > 0 && rate < bestRate) {
            best = h;
            bestTokens = true;
            bestRate = rate;
            bestSaved = saved;
          }
        }
        int b = level[h];
        for (int to = b + 1; to < tokenBytes.length && to < heads[h].quant().length; to++) {
          long saved = t * (tokenBytes[b] - tokenBytes[to]);
          double rate = rate(heads[h].quant()[to] - heads[h].quant()[b], saved);
          if (saved > 0 && rate < bestRate) {
            best = h;
            bestTokens = false;
            bestLevel = to;
            bestRate = rate;
            bestSaved = saved;
          }
        }
      }
      if (best < 0) {
        return false;
      }
      if (bestTokens) {
        tokens[best] = tokenStep(tokens[best], floor[best]);
      } else {
        level[best] = bestLevel;
      }
      held -= bestSaved;
    }
    return true;
  }

  /** The tokens a head keeps after one eviction step: a sixteenth, at least 8, not below floor. */
  static int tokenStep(int tokens, int floor) {
    return Math.max(floor, tokens - Math.max(8, tokens / 16));
  }

  private static double rate(double added, long saved) {
    return Math.max(0, added) / saved;
  }

  /** E of a head keeping {@code tokens} of {@code seen} tokens. */
  static double evict(Head head, int tokens, int seen) {
    double r = seen <= 0 ? 1 : Math.min(1, (double) tokens / seen);
    double[] e = monotone(head.evict());
    for (int i = 1; i < KEEP.length; i++) {
      if (r >= KEEP[i]) {
        double f = (r - KEEP[i]) / (KEEP[i - 1] - KEEP[i]);
        return e[i] + f * (e[i - 1] - e[i]);
      }
    }
    int last = KEEP.length - 1;
    double slope = (e[last] - e[last - 1]) / (KEEP[last - 1] - KEEP[last]);
    return e[last] + slope * (KEEP[last] - r);
  }

  /** E with E[0] = 0, non-decreasing as the ratio falls. */
  private static double[] monotone(double[] e) {
    double[] out = new double[KEEP.length];
    for (int i = 1; i < KEEP.length; i++) {
      out[i] = Math.max(out[i - 1], i < e.length ? e[i] : out[i - 1]);
    }
    return out;
  }
}
