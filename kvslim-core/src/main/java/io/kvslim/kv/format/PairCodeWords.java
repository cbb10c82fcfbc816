package io.kvslim.kv.format;

import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorMask;

/**
 * {@link CodeWords} for rotary pairs of adjacent channels (ggml's NORMAL RoPE, pair k = channels 2k
 * and 2k+1): the {@code 2L·b} bits of {@code 2L} consecutive channels' codes (L float lanes, b = 2,
 * 3 or 4 bits, {@code 2L·b ≤ 64}) are read as two little-endian 32-bit words, at the run's first
 * byte and at byte {@link #highByte}, and cut into two vectors of L codes: {@link #firstShifts} and
 * {@link #firstHigh} give lane k the code of channel 2k (the first of pair k), {@link
 * #secondShifts} and {@link #secondHigh} that of channel 2k+1. A kernel then weights the two by the
 * pair's cos and sin in lane k, with no permute of the angles. The steps, written out in the
 * kernels' loops (so C2 keeps the vectors in registers):
 *
 * <pre>
 * IntVector.broadcast(INTS, w0).blend(IntVector.broadcast(INTS, w1), firstHigh)
 *     .lanewise(LSHR, firstShifts).and(mask)
 * </pre>
 *
 * Neither word reads past the run's codes ({@link #of} returns null where that cannot be done).
 */
final class PairCodeWords {
  final int mask;

  /** Bytes of one run's codes: 2L·b/8. */
  final int runBytes;

  /** Byte of the second word. */
  final int highByte;

  final IntVector firstShifts;
  final VectorMask<Integer> firstHigh;
  final IntVector secondShifts;
  final VectorMask<Integer> secondHigh;

  private PairCodeWords(int bits, int highByte) {
    int lanes = CodeWords.LANES;
    this.mask = (1 << bits) - 1;
    this.runBytes = 2 * lanes * bits / 8;
    this.highByte = highByte;
    int[] s1 = new int[lanes];
    int[] s2 = new int[lanes];
    boolean[] h1 = new boolean[lanes];
    boolean[] h2 = new boolean[lanes];
    for (int k = 0; k < lanes; k++) {
      s1[k] = shift(2 * k, bits, highByte);
      h1[k] = inSecond(2 * k, bits);
      s2[k] = shift(2 * k + 1, bits, highByte);
      h2[k] = inSecond(2 * k + 1, bits);
    }
    this.firstShifts = IntVector.fromArray(CodeWords.INTS, s1, 0);
    this.firstHigh = VectorMask.fromArray(CodeWords.INTS, h1, 0);
    this.secondShifts = IntVector.fromArray(CodeWords.INTS, s2, 0);
    this.secondHigh = VectorMask.fromArray(CodeWords.INTS, h2, 0);
  }

  /** Whether channel {@code c}'s code lies past the first word. */
  private static boolean inSecond(int c, int bits) {
    return (c + 1) * bits > 32;
  }

  private static int shift(int c, int bits, int highByte) {
    return inSecond(c, bits) ? c * bits - 8 * highByte : c * bits;
  }

  private static final PairCodeWords[] BY_BITS = {null, null, make(2), make(3), make(4)};

  /** The constants for {@code bits}, or null where two words cannot hold a run's codes. */
  private static PairCodeWords make(int bits) {
    int lanes = CodeWords.LANES;
    if ((lanes != 8 && lanes != 16) || 2 * lanes * bits > 64) {
      return null;
    }
    int channels = 2 * lanes;
    int runBytes = channels * bits / 8;
    if (runBytes < 4) {
      return null;
    }
    int highByte = runBytes - 4; // the last word inside the run
    for (int c = 0; c < channels; c++) {
      int shift = shift(c, bits, highByte);
      if (shift < 0 || shift + bits > 32) {
        return null;
      }
    }
    return new PairCodeWords(bits, highByte);
  }

  /**
   * The constants for {@code bits}-bit codes of {@code headDim} channels, or null where the
   * register path does not apply (other lane counts, a head dimension not a whole number of runs).
   */
  static PairCodeWords of(int bits, int headDim) {
    PairCodeWords w = bits >= 2 && bits <= 4 ? BY_BITS[bits] : null;
    return w != null && headDim % (2 * CodeWords.LANES) == 0 ? w : null;
  }
}
