package io.kvslim.kv.attention;

import io.kvslim.kv.format.F16Format;
import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/** The float Vector API loops the fused format kernels share. */
public final class VectorKernels {
  private VectorKernels() {}

  public static final VectorSpecies<Float> FLOATS = FloatVector.SPECIES_PREFERRED;
  public static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;

  /**
   * The byte array behind a block's heap segment (blocks are {@code MemorySegment.ofArray(byte[])},
   * starting at index 0), or null when the segment is not such a view or the platform is not
   * little-endian. Vector loads from an array compile to plain vector moves; loads through a heap
   * segment were measured an order of magnitude slower (JDK 25, x86), so the hot kernels read the
   * array when they can.
   */
  public static byte[] array(MemorySegment block) {
    if (ByteOrder.nativeOrder() != LE || block.isNative()) {
      return null;
    }
    Object base = block.heapBase().orElse(null);
    return base instanceof byte[] bytes && bytes.length == block.byteSize() ? bytes : null;
  }

  /**
   * {@code a[aOff..+n) · b[bOff..+n)}, lane-parallel (order differs from a sequential sum, but is
   * fixed: see {@link AttentionKernels#dot(float[], int, float[], int, int)}).
   */
  public static float dot(float[] a, int aOff, float[] b, int bOff, int n) {
    return AttentionKernels.dot(a, aOff, b, bOff, n);
  }

  /** 16 bytes of a block at {@code offset}, loaded from its array when it has one. */
  public static ByteVector bytes16(MemorySegment block, long offset) {
    byte[] array = array(block);
    return array != null
        ? ByteVector.fromArray(ByteVector.SPECIES_128, array, (int) offset)
        : ByteVector.fromMemorySegment(ByteVector.SPECIES_128, block, offset, LE);
  }

  /** Bytes of one vector of halves: as many halves as {@link #FLOATS} has lanes. */
  public static final VectorSpecies<Byte> HALF_BYTES =
      VectorSpecies.of(byte.class, VectorShape.forBitSize(FLOATS.length() * 16));

  public static final VectorSpecies<Integer> INTS =
      VectorSpecies.of(int.class, VectorShape.forBitSize(FLOATS.vectorBitSize()));

  /**
   * Widens {@code count} little-endian fp16 values at byte {@code offset} of a block to floats in
   * {@code dst[dstOff..)}, each exactly {@link Float#float16ToFloat} (tested on all 65,536 bit
   * patterns). The Vector API has no fp16 conversion, so a vector of halves is widened to ints and
   * rebuilt in float bits: magnitude bits shifted into place and scaled by 2^112 (exact for normal
   * and subnormal halves), the sign OR-ed back, infinities and NaNs (exponent 31) given the float
   * exponent 255 with their payload shifted and NaNs made quiet, as {@code float16ToFloat} does.
   */
  public static void halves(MemorySegment block, long offset, int count, float[] dst, int dstOff) {
    byte[] array = array(block);
    int lanes = FLOATS.length();
    int j = 0;
    if (array != null) {
      int at = (int) offset;
      for (; j + lanes <= count; j += lanes) {
        half(array, at + 2 * j).intoArray(dst, dstOff + j);
      }
    }
    for (; j < count; j++) {
      dst[dstOff + j] = Float.float16ToFloat(block.get(F16Format.SHORT_LE, offset + 2L * j));
    }
  }

  /**
   * One float vector of the fp16 values at byte {@code at} of {@code array} (see {@link #halves}).
   */
  public static FloatVector half(byte[] array, int at) {
    return widen(halfBits(array, at));
  }

  /** The fp16 bit patterns at byte {@code at} of {@code array}, sign-extended into int lanes. */
  private static IntVector halfBits(byte[] array, int at) {
    return (IntVector)
        ByteVector.fromArray(HALF_BYTES, array, at)
            .reinterpretAsShorts()
            .convertShape(VectorOperators.S2I, INTS, 0);
  }

  /** Floats from fp16 bit patterns held sign-extended in int lanes (see {@link #halves}). */
  private static FloatVector widen(IntVector h) {
    if (hasInfinityOrNaN(h.and(0x7fff))) {
      return widenSpecials(h);
    }
    return widenFinite(h);
  }

  /**
   * {@link #widen} for lanes without infinities or NaNs (exponent below 31), exact there: shifting
   * the sign-extended pattern left by 13 puts the sign at bit 31 (copies of it at bits 28–30 are
   * masked off) and the exponent and mantissa at bits 13–27, a float that times 2^112 is the half's
   * value, normal or subnormal, with its sign. {@link F16Format}'s block kernels write these steps
   * out in their loops after checking the block once with {@link #anyInfinityOrNaN}, which keeps
   * them free of branches and calls.
   */
  private static FloatVector widenFinite(IntVector h) {
    return h.lanewise(VectorOperators.LSHL, 13).and(0x8fffe000).reinterpretAsFloats().mul(0x1p112f);
  }

  /** Whether magnitudes {@code h & 0x7fff} include an infinity or NaN (exponent 31). */
  private static boolean hasInfinityOrNaN(IntVector magnitudes) {
    return magnitudes.compare(VectorOperators.GE, 0x7c00).anyTrue();
  }

  private static final VectorSpecies<Byte> INT_BYTES =
      VectorSpecies.of(byte.class, VectorShape.forBitSize(INTS.vectorBitSize()));

  /**
   * Whether the little-endian fp16 values in {@code bytes} bytes at {@code offset} of {@code array}
   * include an infinity or NaN: three integer operations per vector of pairs, so that kernels can
   * widen a block with {@link #widenFinite}'s steps after one check.
   */
  public static boolean anyInfinityOrNaN(byte[] array, int offset, int bytes) {
    // per 16-bit half, exponent + 1 carries into the half's top bit exactly when the exponent is 31
    IntVector carries = IntVector.zero(INTS);
    int step = INT_BYTES.length();
    int i = 0;
    for (; i + step <= bytes; i += step) {
      IntVector pairs = ByteVector.fromArray(INT_BYTES, array, offset + i).reinterpretAsInts();
      carries = carries.or(pairs.and(0x7c007c00).add(0x04000400));
    }
    boolean found = carries.and(0x80008000).compare(VectorOperators.NE, 0).anyTrue();
    for (; i + 1 < bytes; i += 2) {
      found |= (array[offset + i + 1] & 0x7c) == 0x7c;
    }
    return found;
  }

  /**
   * {@link #widen} for a vector holding an infinity or NaN: the exponent-31 lanes get the float
   * exponent 255 with their payload shifted and NaNs made quiet, as {@code float16ToFloat} does. A
   * separate method keeps {@link #widen} small; KV caches hold no infinities or NaNs.
   */
  private static FloatVector widenSpecials(IntVector h) {
    IntVector magnitude = h.and(0x7fff).lanewise(VectorOperators.LSHL, 13);
    IntVector scaled = magnitude.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts();
    VectorMask<Integer> special = magnitude.compare(VectorOperators.GE, 0x7c00 << 13);
    VectorMask<Integer> nan = magnitude.compare(VectorOperators.GT, 0x7c00 << 13);
    scaled = scaled.blend(magnitude.or(0x7f800000), special);
    scaled = scaled.blend(magnitude.or(0x7fc00000), nan);
    return scaled.or(h.and(0x80000000)).reinterpretAsFloats();
  }

  private static final VectorSpecies<Byte> PAIR_BYTES =
      VectorSpecies.of(byte.class, VectorShape.forBitSize(FLOATS.vectorBitSize()));

  /**
   * For {@code count} (a multiple of the lane count) pairs of little-endian fp16 values at byte
   * {@code offset} of {@code array}, 4 bytes per pair: the widened first values to {@code
   * firsts[firstsOff..)}, the second values to {@code seconds[secondsOff..)}, each exactly {@link
   * Float#float16ToFloat}.
   */
  public static void halfPairs(
      byte[] array,
      int offset,
      int count,
      float[] firsts,
      int firstsOff,
      float[] seconds,
      int secondsOff) {
    // widen's steps written out here, once for both halves of each pair: no vector crosses a call
    // that C2 might not inline (where it would be boxed)
    int lanes = FLOATS.length();
    if (!anyInfinityOrNaN(array, offset, 4 * count)) {
      // widenFinite's steps (one check of the whole range instead of two blends per vector)
      for (int j = 0; j < count; j += lanes) {
        IntVector pair =
            ByteVector.fromArray(PAIR_BYTES, array, offset + 4 * j).reinterpretAsInts();
        pair.lanewise(VectorOperators.LSHL, 16)
            .lanewise(VectorOperators.ASHR, 3)
            .and(0x8fffe000)
            .reinterpretAsFloats()
            .mul(0x1p112f)
            .intoArray(firsts, firstsOff + j);
        pair.lanewise(VectorOperators.ASHR, 3)
            .and(0x8fffe000)
            .reinterpretAsFloats()
            .mul(0x1p112f)
            .intoArray(seconds, secondsOff + j);
      }
      return;
    }
    for (int j = 0; j < count; j += lanes) {
      IntVector pair = ByteVector.fromArray(PAIR_BYTES, array, offset + 4 * j).reinterpretAsInts();
      for (int second = 0; second < 2; second++) {
        IntVector h =
            second == 0
                ? pair.lanewise(VectorOperators.LSHL, 16).lanewise(VectorOperators.ASHR, 16)
                : pair.lanewise(VectorOperators.ASHR, 16);
        IntVector magnitude = h.and(0x7fff).lanewise(VectorOperators.LSHL, 13);
        IntVector bits = magnitude.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts();
        bits =
            bits.blend(
                magnitude.or(0x7f800000), magnitude.compare(VectorOperators.GE, 0x7c00 << 13));
        bits =
            bits.blend(
                magnitude.or(0x7fc00000), magnitude.compare(VectorOperators.GT, 0x7c00 << 13));
        FloatVector widened = bits.or(h.and(0x80000000)).reinterpretAsFloats();
        if (second == 0) {
          widened.intoArray(firsts, firstsOff + j);
        } else {
          widened.intoArray(seconds, secondsOff + j);
        }
      }
    }
  }

  /**
   * {@code q[qOff..+n) · halves(block, offset, n)}, bit for bit {@link #halves} followed by {@link
   * #dot}, without the intermediate row.
   */
  public static float dotHalves(
      float[] q, int qOff, MemorySegment block, long offset, int n, float[] work) {
    byte[] array = array(block);
    int lanes = FLOATS.length();
    if (array == null || n % lanes != 0) {
      halves(block, offset, n, work, 0);
      return dot(q, qOff, work, 0, n);
    }
    int at = (int) offset;
    FloatVector sum = FloatVector.zero(FLOATS);
    for (int j = 0; j < n; j += lanes) {
      sum = FloatVector.fromArray(FLOATS, q, qOff + j).fma(half(array, at + 2 * j), sum);
    }
    return AttentionKernels.sumLanes(sum);
  }

  /**
   * {@code acc[accOff..+n) += weight · halves(block, offset, n)}, bit for bit {@link #halves}
   * followed by {@link AttentionKernels#addWeighted(float, float[], int, float[], int, int)}.
   */
  public static void addWeightedHalves(
      float weight,
      MemorySegment block,
      long offset,
      float[] acc,
      int accOff,
      int n,
      float[] work) {
    byte[] array = array(block);
    int lanes = FLOATS.length();
    if (array == null || n % lanes != 0) {
      halves(block, offset, n, work, 0);
      AttentionKernels.addWeighted(weight, work, 0, acc, accOff, n);
      return;
    }
    int at = (int) offset;
    FloatVector w = FloatVector.broadcast(FLOATS, weight);
    for (int j = 0; j < n; j += lanes) {
      half(array, at + 2 * j)
          .fma(w, FloatVector.fromArray(FLOATS, acc, accOff + j))
          .intoArray(acc, accOff + j);
    }
  }
}
