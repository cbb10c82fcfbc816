package io.kvslim.kv.format;

import io.kvslim.kv.attention.VectorKernels;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

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
