package io.kvslim.kv.format;

import io.kvslim.kv.attention.AttentionKernels;
import io.kvslim.kv.attention.VectorKernels;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * FP8 E4M3 ("e4m3fn": 1 sign, 4 exponent bits with bias 7, 3 mantissa bits, no infinities, 0x7F and
 * 0xFF NaN, largest finite ±448), one byte per value and nothing else: the keys of vLLM's
 * TurboQuant preset {@code k8v4} (vllm-project/vllm, {@code
 * vllm/v1/attention/ops/triton_turboquant_store.py}, {@code _tq_fused_store_fp8}: {@code
 * k_vals.to(tl.float8e4nv)}, the Hopper format; Ampere's e4b15 is not modelled). Conversion rounds
 * to nearest, ties to even, and saturates at ±448 (PTX {@code cvt.rn.satfinite.e4m3x2.f32}); NaN
 * stays NaN. Bound: half a unit in the last place, {@code |x|/16} for normal values, 2⁻¹⁰ for
 * subnormal ones (below 2⁻⁶).
 */
public final class Fp8E4m3Format extends RowFormat {
  /** The value of each byte. */
  private static final float[] VALUES = new float[256];

  static {
    for (int b = 0; b < 256; b++) {
      int e = (b >>> 3) & 15;
      int m = b & 7;
      float v;
      if ((b & 0x7f) == 0x7f) {
        v = Float.NaN;
      } else if (e == 0) {
        v = m * 0x1p-9f;
      } else {
        v = (1 + m / 8f) * (float) Math.scalb(1.0, e - 7);
      }
      VALUES[b] = (b & 0x80) != 0 ? -v : v;
    }
  }

  /** The value a byte stands for. */
  public static float toFloat(byte b) {
    return VALUES[b & 0xff];
  }

  /** {@code x} as e4m3fn: round to nearest even, saturated at ±448. */
  public static byte fromFloat(float x) {
    if (Float.isNaN(x)) {
      return 0x7f;
    }
    int sign = x < 0 || (x == 0 && 1 / x < 0) ? 0x80 : 0;
    double a = Math.abs((double) x);
    if (a >= 448) {
      return (byte) (sign | 0x7e);
    }
    // codes 0..0x7e are increasing in value: find the nearest, ties to the even code
    int lo = 0;
    int hi = 0x7e;
    while (hi - lo > 1) {
      int mid = (lo + hi) >>> 1;
      if (VALUES[mid] <= a) {
        lo = mid;
      } else {
        hi = mid;
      }
    }
    double below = VALUES[lo];
    double above = VALUES[hi];
    int code;
    if (a - below < above - a) {
      code = lo;
    } else if (a - below > above - a) {
      code = hi;
    } else {
      code = (lo & 1) == 0 ? lo : hi;
    }
    return (byte) (sign | code);
  }

  @Override
  public String name() {
    return "fp8_e4m3";
  }

  @Override
  public int rowBytes(int headDim) {
    return headDim;
  }

  @Override
  protected int rowScaleBytes(int headDim) {
    return 0;
  }

  @Override
  protected void encodeRow(float[] src, int srcOff, MemorySegment block, long offset, int headDim) {
    for (int j = 0; j < headDim; j++) {
      block.set(ValueLayout.JAVA_BYTE, offset + j, fromFloat(src[srcOff + j]));
    }
  }

  @Override
  protected void decodeRow(MemorySegment block, long offset, int headDim, float[] dst, int dstOff) {
    byte[] array = VectorKernels.array(block);
    for (int j = 0; j < headDim; j++) {
      byte b =
          array != null ? array[(int) offset + j] : block.get(ValueLayout.JAVA_BYTE, offset + j);
      dst[dstOff + j] = VALUES[b & 0xff];
    }
  }

  /** The row decoded into {@code work}, then a lane-parallel dot product. */
  @Override
  protected float dotRow(
      MemorySegment block, long offset, int headDim, float[] q, int qOff, float[] work) {
    decodeRow(block, offset, headDim, work, 0);
    return VectorKernels.dot(q, qOff, work, 0, headDim);
  }

  private static final VectorSpecies<Float> FLOATS = VectorKernels.FLOATS;
  private static final VectorSpecies<Integer> INTS = VectorKernels.INTS;
  private static final VectorSpecies<Byte> BYTES = ByteVector.SPECIES_64;
  private static final VectorSpecies<Byte> WIDE_BYTES = ByteVector.SPECIES_256;

  /**
   * {@link #dotRow} of every slot, the same bits: on the heap with 8 float lanes and whole vectors
   * of channels, each vector of bytes is widened in registers (sign to bit 31, exponent and
   * mantissa to bits 20–26, times 2^120: exact, subnormals included) instead of through the table,
   * then the same fused multiply-adds and lane tree as {@link VectorKernels#dot}; four rows at a
   * time, written out without helpers. A block holding a NaN code takes the general path.
   */
  @Override
  public void scores(
      MemorySegment block,
      int count,
      int capacity,
      int headDim,
      float[] prepared,
      int pOff,
      float[] scores,
      float[] work) {
    byte[] array = VectorKernels.array(block);
    if (array == null
        || FLOATS.length() != 8
        || headDim % 8 != 0
        || anyNaN(array, count * headDim)) {
      super.scores(block, count, capacity, headDim, prepared, pOff, scores, work);
      return;
    }
    int s = 0;
    for (; s + 4 <= count; s += 4) {
      int r0 = s * headDim;
      int r1 = r0 + headDim;
      int r2 = r1 + headDim;
      int r3 = r2 + headDim;
      FloatVector a0 = FloatVector.zero(FLOATS);
      FloatVector a1 = a0;
      FloatVector a2 = a0;
      FloatVector a3 = a0;
      for (int j = 0; j < headDim; j += 8) {
        a0 =
            FloatVector.fromArray(FLOATS, prepared, pOff + j)
                .fma(
                    ((IntVector)
                            ByteVector.fromArray(BYTES, array, r0 + j)
                                .convertShape(VectorOperators.ZERO_EXTEND_B2I, INTS, 0))
                        .lanewise(VectorOperators.LSHL, 24)
                        .lanewise(VectorOperators.ASHR, 4)
                        .and(0x87f00000)
                        .reinterpretAsFloats()
                        .mul(0x1p120f),
                    a0);
        a1 =
            FloatVector.fromArray(FLOATS, prepared, pOff + j)
                .fma(
                    ((IntVector)
                            ByteVector.fromArray(BYTES, array, r1 + j)
                                .convertShape(VectorOperators.ZERO_EXTEND_B2I, INTS, 0))
                        .lanewise(VectorOperators.LSHL, 24)
                        .lanewise(VectorOperators.ASHR, 4)
                        .and(0x87f00000)
                        .reinterpretAsFloats()
                        .mul(0x1p120f),
                    a1);
        a2 =
            FloatVector.fromArray(FLOATS, prepared, pOff + j)
                .fma(
                    ((IntVector)
                            ByteVector.fromArray(BYTES, array, r2 + j)
                                .convertShape(VectorOperators.ZERO_EXTEND_B2I, INTS, 0))
                        .lanewise(VectorOperators.LSHL, 24)
                        .lanewise(VectorOperators.ASHR, 4)
                        .and(0x87f00000)
                        .reinterpretAsFloats()
                        .mul(0x1p120f),
                    a2);
        a3 =
            FloatVector.fromArray(FLOATS, prepared, pOff + j)
                .fma(
                    ((IntVector)
                            ByteVector.fromArray(BYTES, array, r3 + j)
                                .convertShape(VectorOperators.ZERO_EXTEND_B2I, INTS, 0))
                        .lanewise(VectorOperators.LSHL, 24)
                        .lanewise(VectorOperators.ASHR, 4)
                        .and(0x87f00000)
                        .reinterpretAsFloats()
                        .mul(0x1p120f),
                    a3);
      }
      // AttentionKernels.sumLanes' tree written out: the same additions
      a0 = a0.add(a0.rearrange(AttentionKernels.ROTATE4));
      a0 = a0.add(a0.rearrange(AttentionKernels.ROTATE2));
      scores[s] = a0.add(a0.rearrange(AttentionKernels.ROTATE1)).lane(0);
      a1 = a1.add(a1.rearrange(AttentionKernels.ROTATE4));
      a1 = a1.add(a1.rearrange(AttentionKernels.ROTATE2));
      scores[s + 1] = a1.add(a1.rearrange(AttentionKernels.ROTATE1)).lane(0);
      a2 = a2.add(a2.rearrange(AttentionKernels.ROTATE4));
      a2 = a2.add(a2.rearrange(AttentionKernels.ROTATE2));
      scores[s + 2] = a2.add(a2.rearrange(AttentionKernels.ROTATE1)).lane(0);
      a3 = a3.add(a3.rearrange(AttentionKernels.ROTATE4));
      a3 = a3.add(a3.rearrange(AttentionKernels.ROTATE2));
      scores[s + 3] = a3.add(a3.rearrange(AttentionKernels.ROTATE1)).lane(0);
    }
    for (; s < count; s++) {
      int r0 = s * headDim;
      FloatVector a0 = FloatVector.zero(FLOATS);
      for (int j = 0; j < headDim; j += 8) {
        a0 =
            FloatVector.fromArray(FLOATS, prepared, pOff + j)
                .fma(
                    ((IntVector)
                            ByteVector.fromArray(BYTES, array, r0 + j)
                                .convertShape(VectorOperators.ZERO_EXTEND_B2I, INTS, 0))
                        .lanewise(VectorOperators.LSHL, 24)
                        .lanewise(VectorOperators.ASHR, 4)
                        .and(0x87f00000)
                        .reinterpretAsFloats()
                        .mul(0x1p120f),
                    a0);
      }
      a0 = a0.add(a0.rearrange(AttentionKernels.ROTATE4));
      a0 = a0.add(a0.rearrange(AttentionKernels.ROTATE2));
      scores[s] = a0.add(a0.rearrange(AttentionKernels.ROTATE1)).lane(0);
    }
  }

  /** Whether bytes {@code [0, n)} hold a NaN code (0x7F or 0xFF). */
  private static boolean anyNaN(byte[] array, int n) {
    int i = 0;
    for (int upper = WIDE_BYTES.loopBound(n); i < upper; i += WIDE_BYTES.length()) {
      if (ByteVector.fromArray(WIDE_BYTES, array, i)
          .and((byte) 0x7f)
          .compare(VectorOperators.EQ, (byte) 0x7f)
          .anyTrue()) {
        return true;
      }
    }
    for (; i < n; i++) {
      if ((array[i] & 0x7f) == 0x7f) {
        return true;
      }
    }
    return false;
  }

  @Override
  protected boolean dotDecodesRow() {
    return true;
  }

  @Override
  protected void accumulateRow(
      MemorySegment block,
      long offset,
      int headDim,
      float weight,
      float[] acc,
      int accOff,
      float[] work) {
    decodeRow(block, offset, headDim, work, 0);
    for (int j = 0; j < headDim; j++) {
      acc[accOff + j] += weight * work[j];
    }
  }

  @Override
  public boolean equals(Object other) {
    return other instanceof Fp8E4m3Format;
  }

  @Override
  public int hashCode() {
    return 8;
  }
}
