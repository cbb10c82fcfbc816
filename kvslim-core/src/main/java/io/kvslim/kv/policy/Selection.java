package io.kvslim.kv.policy;

import java.util.BitSet;

/** Picking the k lowest or highest scores in a range, ties broken by the earlier index. */
public final class Selection {
  private Selection() {}

  /** Sets in {@code out} the indices of the {@code k} lowest scores in {@code [from, to)}. */
  public static void lowest(float[] scores, int from, int to, int k, BitSet out) {
    select(scores, from, to, k, out, false);
  }

  /** Sets in {@code out} the indices of the {@code k} highest scores in {@code [from, to)}. */
  public static void highest(float[] scores, int from, int to, int k, BitSet out) {
    select(scores, from, to, k, out, true);
  }

  private static void select(float[] s, int from, int to, int k, BitSet out, boolean high) {
    int n = to - from;
    k = Math.min(k, n);
    if (k <= 0) {
      return;
    }
    if (k == n) {
      out.set(from, to);
      return;
    }
    // sort the range's indices by score (stable by index), take the first k
    long[] keyed = new long[n];
    for (int i = 0; i < n; i++) {
      float v = high ? -s[from + i] : s[from + i];
      keyed[i] = ((long) sortableBits(v) << 32) | i;
    }
    java.util.Arrays.sort(keyed);
    for (int i = 0; i < k; i++) {
      out.set(from + (int) (keyed[i] & 0xffffffffL));
    }
  }

  /** Maps a float to an int whose signed order equals the float order. */
  private static int sortableBits(float v) {
    if (v == 0f) {
      v = 0f; // -0 and 0 sort together
    }
    int bits = Float.floatToIntBits(v);
    return bits >= 0 ? bits : bits ^ 0x7fffffff;
  }
}
