package io.kvslim.kv.format;

import io.kvslim.kv.attention.VectorKernels;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The parts KVQuant's key and value rows share ({@link KvQuantKeyFormat}, {@link
 * KvQuantValueFormat}): nearest-centroid coding against a sorted non-uniform codebook on [−1, 1],
 * and the sparse outliers of a row, each an 8-bit channel index and its fp16 value (index 255 marks
 * an unused entry).
 */
final class KvQuantRows {
  private KvQuantRows() {}

  static final int UNUSED = 0xff;

  /** Bytes of one sparse outlier entry: u8 index, fp16 value. */
  static final int OUTLIER_BYTES = 3;

  /**
   * Checks a codebook: 2^bits finite centroids in [−1, 1], strictly increasing.
   *
   * @throws IllegalArgumentException naming what is wrong
   */
  static float[] checkCodebook(String what, float[] centroids, int bits) {
    if (centroids.length != 1 << bits) {
      throw new IllegalArgumentException(
          what
              + " codebook has "
              + centroids.length
              + " centroids, "
              + bits
              + " bits need "
              + (1 << bits));
    }
    for (int i = 0; i < centroids.length; i++) {
      float c = centroids[i];
      if (!(c >= -1f && c <= 1f) || (i > 0 && !(c > centroids[i - 1]))) {
        throw new IllegalArgumentException(
            what
                + " codebook must be strictly increasing values in [-1, 1], got centroid "
                + i
                + " = "
                + c);
      }
    }
    return centroids.clone();
  }

  /** Midpoints between consecutive centroids (the decision thresholds). */
  static float[] midpoints(float[] centroids) {
    float[] mid = new float[centroids.length - 1];
    for (int i = 0; i < mid.length; i++) {
      mid[i] = (centroids[i] + centroids[i + 1]) / 2f;
    }
    return mid;
  }

  /** The index of the nearest centroid to {@code u}: the number of midpoints below {@code u}. */
  static int nearest(float[] midpoints, float u) {
    int lo = 0;
    int hi = midpoints.length;
    while (lo < hi) {
      int m = (lo + hi) >>> 1;
      if (midpoints[m] < u) {
        lo = m + 1;
      } else {
        hi = m;
      }
    }
    return lo;
  }

  /**
   * The largest distance from a point of [−1, 1] to its nearest centroid: the per-element error
   * bound of a normalized inlier, before scaling by its range.
   */
  static float maxError(float[] centroids) {
    float worst = Math.max(centroids[0] + 1f, 1f - centroids[centroids.length - 1]);
    for (int i = 1; i < centroids.length; i++) {
      worst = Math.max(worst, (centroids[i] - centroids[i - 1]) / 2f);
    }
    return worst;
  }

  /**
   * Writes {@code count} outlier entries from {@code index/value}, the rest of {@code slots}
   * unused.
   */
  static void writeOutliers(
      int[] index, float[] value, int count, int slots, MemorySegment block, long at) {
    for (int i = 0; i < slots; i++) {
      long o = at + (long) i * OUTLIER_BYTES;
      boolean used = i < count;
      block.set(ValueLayout.JAVA_BYTE, o, (byte) (used ? index[i] : UNUSED));
      block.set(F16Format.SHORT_LE, o + 1, used ? HalfFloats.toF16(value[i]) : 0);
    }
  }

  static int outlierIndex(MemorySegment block, byte[] array, long at, int i) {
    long o = at + (long) i * OUTLIER_BYTES;
    return (array != null ? array[(int) o] : block.get(ValueLayout.JAVA_BYTE, o)) & 0xff;
  }

  static float outlierValue(MemorySegment block, byte[] array, long at, int i) {
    return HalfFloats.fromF16(
        AsymmetricCodes.shortAt(block, array, at + (long) i * OUTLIER_BYTES + 1));
  }

  /**
   * The {@code bits}-bit code of element {@code idx} of the codes at {@code offset} (packed least
   * significant bit first; a code spans at most two bytes; the second is not read past the array,
   * where the last code of the last row ends in its byte).
   */
  static int codeAt(byte[] array, int offset, int idx, int bits) {
    int p = idx * bits;
    int at = offset + (p >>> 3);
    int hi = at + 1 < array.length ? array[at + 1] & 0xff : 0;
    return (((array[at] & 0xff) | hi << 8) >>> (p & 7)) & ((1 << bits) - 1);
  }

  /** {@link #codeAt(byte[], int, int, int)} from a segment on or off the heap. */
  static int codeAt(MemorySegment block, long offset, int idx, int bits) {
    byte[] array = VectorKernels.array(block);
    if (array != null) {
      return codeAt(array, (int) offset, idx, bits);
    }
    int p = idx * bits;
    long at = offset + (p >>> 3);
    int lo = block.get(ValueLayout.JAVA_BYTE, at) & 0xff;
    int hi = at + 1 < block.byteSize() ? block.get(ValueLayout.JAVA_BYTE, at + 1) & 0xff : 0;
    return ((lo | hi << 8) >>> (p & 7)) & ((1 << bits) - 1);
  }

  /**
   * The codebook's first 8 centroids padded into one vector ({@link CodeWords#book}), for kernels
   * that look codes up in registers as {@code (code & 7)} in this vector or, for codes above 7, in
   * {@link #highBook}; null without 8 or 16 float lanes.
   */
  static jdk.incubator.vector.IntVector lowBook(float[] centroids) {
    if (CodeWords.LANES != 8 && CodeWords.LANES != 16) {
      return null;
    }
    return CodeWords.book(java.util.Arrays.copyOf(centroids, Math.min(centroids.length, 8)));
  }

  /** Centroids 8..15 padded into one vector (the first 8 again for smaller codebooks). */
  static jdk.incubator.vector.IntVector highBook(float[] centroids) {
    if (CodeWords.LANES != 8 && CodeWords.LANES != 16) {
      return null;
    }
    return CodeWords.book(
        centroids.length > 8
            ? java.util.Arrays.copyOfRange(centroids, 8, centroids.length)
            : java.util.Arrays.copyOf(centroids, Math.min(centroids.length, 8)));
  }

  /** Overwrites {@code dst[dstOff + index]} with each used outlier's value. */
  static void applyOutliers(MemorySegment block, long at, int slots, float[] dst, int dstOff) {
    byte[] array = VectorKernels.array(block);
    for (int i = 0; i < slots; i++) {
      int idx = outlierIndex(block, array, at, i);
      if (idx != UNUSED) {
        dst[dstOff + idx] = outlierValue(block, array, at, i);
      }
    }
  }

  /**
   * Picks up to {@code slots} outliers: the entries with {@code score[j] > limit}, largest first
   * (ties to the lower index). Returns how many, their indices in {@code chosen[0..n)}.
   */
  static int pickLargest(float[] score, int n, float limit, int slots, int[] chosen) {
    int count = 0;
    for (int j = 0; j < n; j++) {
      float s = score[j];
      if (!(s > limit)) {
        continue;
      }
      // insertion into the top list, kept sorted by score descending
      int at = count;
      while (at > 0 && score[chosen[at - 1]] < s) {
        at--;
      }
      if (at >= slots) {
        continue;
      }
      int end = Math.min(count, slots - 1);
      System.arraycopy(chosen, at, chosen, at + 1, end - at);
      chosen[at] = j;
      count = Math.min(count + 1, slots);
    }
    return count;
  }
}
