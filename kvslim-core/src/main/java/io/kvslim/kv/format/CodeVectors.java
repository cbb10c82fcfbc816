package io.kvslim.kv.format;

import io.kvslim.kv.attention.VectorKernels;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorShuffle;
import jdk.incubator.vector.VectorSpecies;

/**
 * {@link PackedCodes#lookup} a float vector of channels at a time (Vector API): the codes of {@code
 * lanes} channels are cut from the packed bytes (each lane takes the 16 bits from the byte its code
 * starts in, shifts and masks), then looked up in a codebook held in one vector (a permute), or
 * converted to float. Exact: the same floats as the scalar loop.
 */
final class CodeVectors {
  private CodeVectors() {}

  private static final VectorSpecies<Float> FLOATS = VectorKernels.FLOATS;
  private static final int LANES = FLOATS.length();
  private static final VectorSpecies<Integer> INTS =
      VectorSpecies.of(int.class, VectorShape.forBitSize(FLOATS.vectorBitSize()));
  private static final VectorSpecies<Byte> BYTES =
      LANES == 8 || LANES == 16
          ? VectorSpecies.of(byte.class, VectorShape.forBitSize(LANES * 8))
          : null;
  // one constant per width: a shuffle read from an array is not a constant, and its rearrange runs
  // on the Vector API's Java fallback (see AttentionKernels.sumLanes)
  private static final VectorShuffle<Byte> LOW2 = shuffle(2, 0);
  private static final VectorShuffle<Byte> HIGH2 = shuffle(2, 1);
  private static final VectorShuffle<Byte> LOW3 = shuffle(3, 0);
  private static final VectorShuffle<Byte> HIGH3 = shuffle(3, 1);
  private static final VectorShuffle<Byte> LOW4 = shuffle(4, 0);
  private static final VectorShuffle<Byte> HIGH4 = shuffle(4, 1);
  private static final IntVector SHIFT2 = shifts(2);
  private static final IntVector SHIFT3 = shifts(3);
  private static final IntVector SHIFT4 = shifts(4);

  /** Lane i takes byte {@code (i·bits)/8 + plus} of the vector's run. */
  private static VectorShuffle<Byte> shuffle(int bits, int plus) {
    if (BYTES == null) {
      return null;
    }
    int[] at = new int[LANES];
    for (int i = 0; i < LANES; i++) {
      at[i] = Math.min(LANES - 1, (i * bits >>> 3) + plus);
    }
    return VectorShuffle.fromValues(BYTES, at);
  }

  private static IntVector shifts(int bits) {
    if (BYTES == null) {
      return null;
    }
    int[] s = new int[LANES];
    for (int i = 0; i < LANES; i++) {
      s[i] = i * bits & 7;
    }
    return IntVector.fromArray(INTS, s, 0);
  }

  /**
   * Whether the vector path applies: 8 or 16 lanes, whole vectors of channels, and a codebook that
   * fits one vector (or none).
   */
  static boolean applies(int bits, int count, float[] table) {
    return BYTES != null
        && bits >= 2
        && bits <= 4
        && count % LANES == 0
        && (table == null || (1 << bits) <= LANES && table.length <= LANES);
  }

  static void lookup(
      byte[] array, int base, int count, int bits, float[] table, float[] dst, int dstOff) {
    FloatVector book = null;
    if (table != null) {
      float[] padded = new float[LANES];
      System.arraycopy(table, 0, padded, 0, table.length);
      book = FloatVector.fromArray(FLOATS, padded, 0);
    }
    switch (bits) {
      case 2 -> lookup2(array, base, count, book, dst, dstOff);
      case 3 -> lookup3(array, base, count, book, dst, dstOff);
      default -> lookup4(array, base, count, book, dst, dstOff);
    }
  }

  // One loop per width, so that each is compiled with its own constants and profile (one shared
  // loop switching on the width ran several times slower once two widths had used it).

  private static void lookup2(
      byte[] array, int base, int count, FloatVector book, float[] dst, int dstOff) {
    for (int c = 0, at = base; c < count; c += LANES, at += LANES / 4) {
      IntVector codes = codes(load(array, at), LOW2, HIGH2, SHIFT2, 3);
      store(codes, book, dst, dstOff + c);
    }
  }

  private static void lookup3(
      byte[] array, int base, int count, FloatVector book, float[] dst, int dstOff) {
    for (int c = 0, at = base; c < count; c += LANES, at += LANES * 3 / 8) {
      IntVector codes = codes(load(array, at), LOW3, HIGH3, SHIFT3, 7);
      store(codes, book, dst, dstOff + c);
    }
  }

  private static void lookup4(
      byte[] array, int base, int count, FloatVector book, float[] dst, int dstOff) {
    for (int c = 0, at = base; c < count; c += LANES, at += LANES / 2) {
      IntVector codes = codes(load(array, at), LOW4, HIGH4, SHIFT4, 15);
      store(codes, book, dst, dstOff + c);
    }
  }

  private static ByteVector load(byte[] array, int at) {
    return at + LANES <= array.length
        ? ByteVector.fromArray(BYTES, array, at)
        : ByteVector.fromArray(BYTES, array, at, BYTES.indexInRange(at, array.length));
  }

  private static void store(IntVector codes, FloatVector book, float[] dst, int at) {
    FloatVector values = (FloatVector) codes.convert(VectorOperators.I2F, 0);
    if (book != null) {
      values = values.selectFrom(book);
    }
    values.intoArray(dst, at);
  }

  /** Each lane's code: the 16 bits from the byte it starts in, shifted and masked. */
  private static IntVector codes(
      ByteVector bytes,
      VectorShuffle<Byte> low,
      VectorShuffle<Byte> high,
      IntVector shifts,
      int mask) {
    IntVector lo =
        (IntVector) bytes.rearrange(low).convertShape(VectorOperators.ZERO_EXTEND_B2I, INTS, 0);
    IntVector hi =
        (IntVector) bytes.rearrange(high).convertShape(VectorOperators.ZERO_EXTEND_B2I, INTS, 0);
    return lo.or(hi.lanewise(VectorOperators.LSHL, 8))
        .lanewise(VectorOperators.LSHR, shifts)
        .and(mask);
  }
}
