package io.kvslim.kv.format;

import io.kvslim.kv.attention.VectorKernels;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * The constants of {@link PackedCodes}' codes cut a float vector of channels at a time in
 * registers, for the fused kernels that use them at once (no store and reload, unlike {@link
 * CodeVectors}): the {@code L·b} bits of a vector's {@code L} codes (b = 2, 3 or 4; L = 8 or 16)
 * are read as two little-endian 32-bit words, the first at the run's first byte for the lanes whose
 * code lies in its 32 bits, the second at byte {@link #highByte} for the others; each lane takes
 * its word ({@link #high} lanes the second), shifts it right by {@link #shifts} and masks {@code
 * 2^b − 1}. The kernels write the steps out in their loops (so C2 keeps the vectors in registers):
 *
 * <pre>
 * IntVector.broadcast(INTS, word(a, at)).blend(IntVector.broadcast(INTS, word(a, at + highByte)), high)
 *     .lanewise(LSHR, shifts).and(mask)
 * </pre>
 *
 * The second word may read up to {@link #overrun} bytes past the vector's codes (callers check that
 * they stay inside the row).
 */
final class CodeWords {
  static final VectorSpecies<Float> FLOATS = VectorKernels.FLOATS;
  static final int LANES = FLOATS.length();
  static final VectorSpecies<Integer> INTS =
      VectorSpecies.of(int.class, VectorShape.forBitSize(FLOATS.vectorBitSize()));

  private static final VarHandle INTS_LE =
      MethodHandles.byteArrayViewVarHandle(int[].class, ByteOrder.LITTLE_ENDIAN);

  final int bits;
  final int mask;

  /** Bytes of one vector's codes: L·b/8. */
  final int vectorBytes;

  /** Byte of the second word (0: every lane reads the first). */
  final int highByte;

  /** Right shift of each lane's code within its word. */
  final IntVector shifts;

  /** The lanes that read the second word. */
  final VectorMask<Integer> high;

  /** Bytes the second word reads past the vector's codes (0 when none). */
  final int overrun;

  private CodeWords(int bits) {
    this.bits = bits;
    this.mask = (1 << bits) - 1;
    this.vectorBytes = LANES * bits / 8;
    int split = Math.min(LANES, 32 / bits); // lanes whose code ends within the first word
    this.highByte = split == LANES ? 0 : split * bits / 8;
    int[] s = new int[LANES];
    boolean[] h = new boolean[LANES];
    for (int i = 0; i < LANES; i++) {
      h[i] = i >= split;
      s[i] = i * bits - (h[i] ? 8 * highByte : 0);
    }
    this.shifts = IntVector.fromArray(INTS, s, 0);
    this.high = VectorMask.fromArray(INTS, h, 0);
    this.overrun = highByte == 0 ? Math.max(0, 4 - vectorBytes) : highByte + 4 - vectorBytes;
  }

  private static final CodeWords[] BY_BITS = {
    null, null, new CodeWords(2), new CodeWords(3), new CodeWords(4)
  };

  /** True when the register path applies: 8 or 16 float lanes, 2..4 bits, whole vectors. */
  static boolean applies(int bits, int channels) {
    return (LANES == 8 || LANES == 16) && bits >= 2 && bits <= 4 && channels % LANES == 0;
  }

  static CodeWords of(int bits) {
    return BY_BITS[bits];
  }

  /** The little-endian 32-bit word at byte {@code at}. */
  static int word(byte[] array, int at) {
    return (int) INTS_LE.get(array, at);
  }

  /**
   * A codebook of at most {@link #LANES} floats padded into one vector (for {@code selectFrom}).
   */
  static IntVector book(float[] table) {
    float[] padded = new float[LANES];
    System.arraycopy(table, 0, padded, 0, table.length);
    return FloatVector.fromArray(FLOATS, padded, 0).reinterpretAsInts();
  }
}
