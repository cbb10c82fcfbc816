package io.kvslim.kv.format;

import io.kvslim.ggml.LittleEndian;
import io.kvslim.kv.attention.VectorKernels;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * Asymmetric uniform quantization of a group (METHODS.md M8), shared by the KIVI formats: zero
 * point {@code z = min}, scale {@code s = (max − min)/(2^b − 1)}, {@code q = clamp(round((x −
 * z)/s), 0, 2^b − 1)}, {@code x̂ = q·s + z}. Scale and zero point are stored as fp16; {@code z} is
 * rounded down and {@code s} up so that {@code [z, z + s·(2^b−1)]} still covers the group and the
 * bound {@code |x − x̂| ≤ s/2} holds with the stored {@code s} (up to float rounding). Codes are
 * packed least significant bit first, which is little-endian inside 32-bit words.
 */
final class AsymmetricCodes {
  private AsymmetricCodes() {}

  static void checkBits(String format, int bits) {
    if (bits != 1 && bits != 2 && bits != 4 && bits != 8) {
      throw new IllegalArgumentException(
          "format " + format + " needs 1, 2, 4 or 8 bits, got " + bits);
    }
  }

  static short zeroPoint(float min) {
    return HalfFloats.toF16RoundedDown(min);
  }

  static short scale(float zeroPoint, float max, int bits) {
    int levels = (1 << bits) - 1;
    short s = HalfFloats.toF16RoundedUp(Math.max(0f, (max - zeroPoint) / levels));
    while (zeroPoint + HalfFloats.fromF16(s) * levels < max) {
      s = HalfFloats.nextF16Up(s);
    }
    return s;
  }

  static int code(float x, float zeroPoint, float scale, int bits) {
    if (scale == 0f) {
      return 0;
    }
    int q = Math.round((x - zeroPoint) / scale);
    return Math.max(0, Math.min((1 << bits) - 1, q));
  }

  /** Stores code number {@code index} of a run that starts at {@code base}. */
  static void put(MemorySegment block, long base, int index, int bits, int code) {
    long bit = (long) index * bits;
    long at = base + (bit >>> 3);
    int shift = (int) (bit & 7);
    int mask = ((1 << bits) - 1) << shift;
    int old = block.get(ValueLayout.JAVA_BYTE, at) & 0xff;
    block.set(ValueLayout.JAVA_BYTE, at, (byte) ((old & ~mask) | (code << shift)));
  }

  static int get(MemorySegment block, long base, int index, int bits) {
    long bit = (long) index * bits;
    int packed = block.get(ValueLayout.JAVA_BYTE, base + (bit >>> 3)) & 0xff;
    return (packed >>> (int) (bit & 7)) & ((1 << bits) - 1);
  }

  /** {@link #get(MemorySegment, long, int, int)} from a block's heap array. */
  static int get(byte[] array, int base, int index, int bits) {
    int bit = index * bits;
    return ((array[base + (bit >>> 3)] & 0xff) >>> (bit & 7)) & ((1 << bits) - 1);
  }

  /**
   * Unpacks {@code count} codes starting at byte {@code base} (byte-aligned) into {@code
   * codes[0..count)} as floats.
   */
  static void unpack(MemorySegment block, long base, int count, int bits, float[] codes, int off) {
    int perByte = 8 / bits;
    int mask = (1 << bits) - 1;
    byte[] array = VectorKernels.array(block);
    int lanes = FLOATS.length();
    if (array != null && vectorizable(bits) && count % lanes == 0) {
      // one word of codes per vector (exact small integers, so the same floats as below)
      int wordBits = lanes * bits;
      int step = wordBits / 8;
      long at = base;
      for (int i = 0; i < count; i += lanes, at += step) {
        codes(block, array, at, wordBits, bits).intoArray(codes, off + i);
      }
      return;
    }
    if (array != null) {
      // the block's own array: no bounds and liveness checks per byte, as a segment access has
      int at = (int) base;
      for (int i = 0; i < count; at++) {
        int packed = array[at] & 0xff;
        for (int k = 0; k < perByte && i < count; k++, i++) {
          codes[off + i] = (packed >>> (k * bits)) & mask;
        }
      }
      return;
    }
    for (int i = 0, b = 0; i < count; b++) {
      int packed = block.get(ValueLayout.JAVA_BYTE, base + b) & 0xff;
      for (int k = 0; k < perByte && i < count; k++, i++) {
        codes[off + i] = (packed >>> (k * bits)) & mask;
      }
    }
  }

  private static final VarHandle INTS_LE =
      MethodHandles.byteArrayViewVarHandle(int[].class, ByteOrder.LITTLE_ENDIAN);

  /** The little-endian 16-bit word at byte {@code at} of a block ({@code array} when not null). */
  static short shortAt(MemorySegment block, byte[] array, long at) {
    if (array != null) {
      int i = (int) at;
      return (short) ((array[i] & 0xff) | array[i + 1] << 8);
    }
    return block.get(F16Format.SHORT_LE, at);
  }

  private static final VarHandle LONGS_LE =
      MethodHandles.byteArrayViewVarHandle(long[].class, ByteOrder.LITTLE_ENDIAN);

  /** The little-endian 64-bit word at byte {@code at} of {@code array}. */
  static long longAt(byte[] array, int at) {
    return (long) LONGS_LE.get(array, at);
  }

  private static final VectorSpecies<Float> FLOATS = VectorKernels.FLOATS;
  private static final VectorSpecies<Integer> INTS =
      VectorSpecies.of(int.class, VectorShape.forBitSize(FLOATS.vectorBitSize()));
  private static final IntVector[] LANE_SHIFTS = new IntVector[9];

  /** Per code width, the lanes whose codes lie in the second 32-bit word of a 64-bit word. */
  @SuppressWarnings("unchecked")
  private static final jdk.incubator.vector.VectorMask<Integer>[] HIGH_WORD =
      new jdk.incubator.vector.VectorMask[9];

  static {
    for (int bits : new int[] {1, 2, 4, 8}) {
      int b = bits;
      LANE_SHIFTS[bits] = IntVector.fromArray(INTS, laneShifts(b), 0);
      boolean[] high = new boolean[INTS.length()];
      for (int i = 0; i < high.length; i++) {
        high[i] = i * b >= 32;
      }
      HIGH_WORD[bits] = jdk.incubator.vector.VectorMask.fromArray(INTS, high, 0);
    }
  }

  private static int[] laneShifts(int bits) {
    int[] shifts = new int[INTS.length()];
    for (int i = 0; i < shifts.length; i++) {
      shifts[i] = (i * bits) & 31;
    }
    return shifts;
  }

  /** Each lane's shift of 2-bit codes in its word: lane {@code i} at bit {@code 2i}. */
  static final IntVector SHIFTS2 = LANE_SHIFTS[2];

  private static final IntVector SHIFTS1 = LANE_SHIFTS[1];

  /** Each lane's shift of 4-bit codes in its word: lane {@code i} at bit {@code 4i}. */
  static final IntVector SHIFTS4 = LANE_SHIFTS[4];

  private static final IntVector SHIFTS8 = LANE_SHIFTS[8];
  private static final jdk.incubator.vector.VectorMask<Integer> HIGH_WORD4 = HIGH_WORD[4];
  private static final jdk.incubator.vector.VectorMask<Integer> HIGH_WORD8 = HIGH_WORD[8];

  /**
   * {@link #codes} for 2-bit codes and 16 lanes (one little-endian 32-bit word at byte {@code at}
   * of {@code array}), with every constant folded.
   */
  static FloatVector codes2(byte[] array, int at) {
    return (FloatVector)
        IntVector.broadcast(INTS, (int) INTS_LE.get(array, at))
            .lanewise(VectorOperators.LSHR, SHIFTS2)
            .and(3)
            .convert(VectorOperators.I2F, 0);
  }

  /**
   * {@link #codes} for 2-bit codes and 8 lanes (AVX2: one little-endian 16-bit word at byte {@code
   * at} of {@code array}), with every constant folded. The word is read as two bytes: a short
   * VarHandle read was left as a call in the decode step's inlining tree (JFR: 12% of a KIVI-2
   * decode in {@code VarHandleByteArrayAsShorts.index}, KIVI-2 slower than KIVI-4).
   */
  static FloatVector codes2x8(byte[] array, int at) {
    return (FloatVector)
        IntVector.broadcast(INTS, (array[at] & 0xff) | (array[at + 1] & 0xff) << 8)
            .lanewise(VectorOperators.LSHR, SHIFTS2)
            .and(3)
            .convert(VectorOperators.I2F, 0);
  }

  /**
   * The little-endian 32-bit word at byte {@code at} of {@code array}, (a scalar helper: safe to
   * leave out of line, unlike one that returns a vector).
   */
  static int word32(byte[] array, int at) {
    return (int) INTS_LE.get(array, at);
  }

  /** Whether {@link #pack2} and {@link #pack1} apply: 16-lane vectors. */
  static boolean packs2() {
    return INTS.length() == 16 && FLOATS.length() == 16;
  }

  /**
   * The 2-bit codes of {@code src[off..off+16)} packed into one 32-bit word (channel {@code i} at
   * bits {@code 2i}), each exactly {@link #code}{@code (x, zeros[z + i], scales[z + i], 2)}: the
   * same quotient, first limited to [−1, 4] (rounding is monotonic, so the clamped code does not
   * change, and infinities stay in integer range), rounded as {@code Math.round} (the truncation of
   * {@code q + 0.5}, one less where that sum rounded up past {@code q + 0.5}), clamped to 0..3, 0
   * where the scale is 0 (NaN quotients give 0, as {@code Math.round(NaN)}).
   */
  static int pack2(float[] src, int off, float[] zeros, float[] scales, int z) {
    FloatVector scale = FloatVector.fromArray(FLOATS, scales, z);
    FloatVector q =
        FloatVector.fromArray(FLOATS, src, off)
            .sub(FloatVector.fromArray(FLOATS, zeros, z))
            .div(scale)
            .max(-1f)
            .min(4f);
    IntVector t = (IntVector) q.add(0.5f).convert(VectorOperators.F2I, 0);
    FloatVector below = ((FloatVector) t.convert(VectorOperators.I2F, 0)).sub(0.5f);
    t = t.sub(1, q.compare(VectorOperators.LT, below).cast(INTS));
    t = t.max(0).min(3).blend(0, scale.compare(VectorOperators.EQ, 0f).cast(INTS));
    return t.lanewise(VectorOperators.LSHL, SHIFTS2).reduceLanes(VectorOperators.OR);
  }

  /** {@link #pack2} with one zero point and scale for all sixteen channels. */
  static int pack2(float[] src, int off, float zero, float scale) {
    FloatVector q = FloatVector.fromArray(FLOATS, src, off).sub(zero).div(scale).max(-1f).min(4f);
    IntVector t = (IntVector) q.add(0.5f).convert(VectorOperators.F2I, 0);
    FloatVector below = ((FloatVector) t.convert(VectorOperators.I2F, 0)).sub(0.5f);
    t = t.sub(1, q.compare(VectorOperators.LT, below).cast(INTS));
    t = scale == 0f ? IntVector.zero(INTS) : t.max(0).min(3);
    return t.lanewise(VectorOperators.LSHL, SHIFTS2).reduceLanes(VectorOperators.OR);
  }

  /**
   * The 1-bit codes of {@code src[off..off+16)} packed into one 16-bit word (channel {@code i} at
   * bit {@code i}), each exactly {@link #code}{@code (x, zeros[z + i], scales[z + i], 1)}: with
   * {@code levels = 1} the scale is {@code max − min} and {@code Math.round(q)} reaches 1 exactly
   * when {@code q ≥ 1/2} (round half up), so the code is the comparison of the same quotient with
   * 1/2 — the midpoint threshold, each element becoming its group's min or max; 0 where the scale
   * is 0, and for NaN quotients (the comparison is false, as {@code Math.round(NaN)} is 0).
   */
  static int pack1(float[] src, int off, float[] zeros, float[] scales, int z) {
    FloatVector scale = FloatVector.fromArray(FLOATS, scales, z);
    FloatVector q =
        FloatVector.fromArray(FLOATS, src, off)
            .sub(FloatVector.fromArray(FLOATS, zeros, z))
            .div(scale);
    return (int)
        q.compare(VectorOperators.GE, 0.5f).andNot(scale.compare(VectorOperators.EQ, 0f)).toLong();
  }

  /** {@link #pack1} with one zero point and scale for all sixteen channels. */
  static int pack1(float[] src, int off, float zero, float scale) {
    if (scale == 0f) {
      return 0;
    }
    FloatVector q = FloatVector.fromArray(FLOATS, src, off).sub(zero).div(scale);
    return (int) q.compare(VectorOperators.GE, 0.5f).toLong();
  }

  /**
   * True when the codes of one float vector's worth of channels fill exactly one 8-, 16- or 32-bit
   * word, so {@link #codes} can read them with one load (2-bit codes with 4 to 16 lanes, 4-bit with
   * 2 to 8, 8-bit with 1 to 4).
   */
  static boolean vectorizable(int bits) {
    int wordBits = FLOATS.length() * bits;
    return wordBits == 8 || wordBits == 16 || wordBits == 32 || wordBits == 64;
  }

  /**
   * The codes of channels {@code [first, first + lanes)} of the run at {@code base} as a float
   * vector; {@code first} is a multiple of the lane count and {@link #vectorizable} holds. Codes
   * are packed least significant bit first, so the word read little-endian holds lane {@code i} at
   * bit {@code i·bits}.
   */
  static FloatVector codes(MemorySegment block, long base, int first, int bits) {
    int wordBits = FLOATS.length() * bits;
    long at = base + (long) first * bits / 8;
    return codes(block, VectorKernels.array(block), at, wordBits, bits);
  }

  /** {@link #codes} with the block's array (or null) and the word's byte offset. */
  static FloatVector codes(MemorySegment block, byte[] array, long at, int wordBits, int bits) {
    int word;
    if (array != null) {
      int i = (int) at;
      word =
          switch (wordBits) {
            case 8 -> array[i] & 0xff;
            case 16 -> (array[i] & 0xff) | (array[i + 1] & 0xff) << 8;
            default -> (int) INTS_LE.get(array, i);
          };
    } else {
      word =
          switch (wordBits) {
            case 8 -> block.get(ValueLayout.JAVA_BYTE, at) & 0xff;
            case 16 -> block.get(F16Format.SHORT_LE, at) & 0xffff;
            default -> block.get(LittleEndian.INT, at);
          };
    }
    IntVector broadcast = IntVector.broadcast(INTS, word);
    if (wordBits == 64) {
      // two 32-bit words: the lanes whose codes start at bit 32 or later read the second one
      int high =
          array != null
              ? (int) INTS_LE.get(array, (int) at + 4)
              : block.get(LittleEndian.INT, at + 4);
      // the mask from a static final field: a mask read from an array element is not a constant
      // to C2, which then ran blend out of line on boxed vectors (KIVI-4 keys 20x slower than F32)
      broadcast =
          broadcast.blend(IntVector.broadcast(INTS, high), bits == 4 ? HIGH_WORD4 : HIGH_WORD8);
    }
    IntVector shifts =
        switch (bits) {
          case 2 -> SHIFTS2;
          case 4 -> SHIFTS4;
          case 1 -> SHIFTS1;
          default -> SHIFTS8;
        };
    IntVector lanes = broadcast.lanewise(VectorOperators.LSHR, shifts).and((1 << bits) - 1);
    return (FloatVector) lanes.convert(VectorOperators.I2F, 0);
  }
}
