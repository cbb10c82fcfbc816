package io.kvslim.eval;

import java.util.Arrays;

/** Quality metrics over next-token distributions given as logits. */
public final class Metrics {
  private Metrics() {}

  /**
   * KL(p ‖ q) for p = softmax(logitsP), q = softmax(logitsQ) over {@code vocab} entries at {@code
   * off}, given each row's log-sum-exp: Σ p_i (log p_i − log q_i), in double.
   */
  public static double klDivergence(
      float[] logitsP, float[] logitsQ, int off, int vocab, double lseP, double lseQ) {
    double kl = 0;
    for (int i = 0; i < vocab; i++) {
      double logP = logitsP[off + i] - lseP;
      double p = Math.exp(logP);
      if (p > 0) {
        kl += p * (logP - (logitsQ[off + i] - lseQ));
      }
    }
    return Math.max(0, kl);
  }

  public static double mean(double[] v) {
    if (v == null || v.length == 0) {
      return Double.NaN;
    }
    double s = 0;
    for (double x : v) {
      s += x;
    }
    return s / v.length;
  }

  public static double max(double[] v) {
    if (v == null || v.length == 0) {
      return Double.NaN;
    }
    double m = Double.NEGATIVE_INFINITY;
    for (double x : v) {
      m = Math.max(m, x);
    }
    return m;
  }

  /** The q-quantile (nearest rank) of the values. */
  public static double percentile(double[] v, double q) {
    if (v == null || v.length == 0) {
      return Double.NaN;
    }
    double[] s = v.clone();
    Arrays.sort(s);
    int idx = (int) Math.ceil(q * s.length) - 1;
    return s[Math.max(0, Math.min(s.length - 1, idx))];
  }
}
