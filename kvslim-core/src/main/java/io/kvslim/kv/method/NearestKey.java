package io.kvslim.kv.method;

import java.util.Arrays;
import java.util.BitSet;

/**
 * METHODS.md M7's first step, shared by the merging methods (EMS, LOOK-M): which kept entry each
 * dropped entry joins — the kept key of highest cosine with its own.
 */
public final class NearestKey {
  private NearestKey() {}

  /**
   * For every token e in {@code candidates}: {@code target[e]} = the token of {@code kept} whose
   * key (rows of {@code d} floats in {@code keys}) has the highest cosine with e's (ties: the
   * earlier), and {@code cos[e]} that cosine, clamped to [−1, 1]; {@code target[e] = -1} for every
   * other token, and when e's key or every kept key is zero. Tokens are {@code [0, target.length)}.
   */
  public static void assign(
      float[] keys, int d, BitSet kept, BitSet candidates, int[] target, float[] cos) {
    int n = target.length;
    Arrays.fill(target, -1);
    double[] norm = new double[n];
    for (int i = 0; i < n; i++) {
      double s = 0;
      for (int j = 0; j < d; j++) {
        s += (double) keys[i * d + j] * keys[i * d + j];
      }
      norm[i] = Math.sqrt(s);
    }
    for (int e = candidates.nextSetBit(0); e >= 0 && e < n; e = candidates.nextSetBit(e + 1)) {
      if (norm[e] == 0) {
        continue;
      }
      double best = Double.NEGATIVE_INFINITY;
      for (int c = kept.nextSetBit(0); c >= 0 && c < n; c = kept.nextSetBit(c + 1)) {
        if (norm[c] == 0) {
          continue;
        }
        double dot = 0;
        for (int j = 0; j < d; j++) {
          dot += (double) keys[e * d + j] * keys[c * d + j];
        }
        double cs = dot / (norm[e] * norm[c]);
        if (cs > best) {
          best = cs;
          target[e] = c;
          cos[e] = (float) Math.max(-1, Math.min(1, cs));
        }
      }
    }
  }
}
