package io.kvslim.ggml;

import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;

/**
 * ggml {@code block_q8_0}: 32 values in 34 bytes, an fp16 scale {@code d} then 32 signed bytes
 * {@code qs}; value {@code j} is {@code qs[j]·d}. Quantized as ggml's {@code quantize_row_q8_0_ref}
 * (ggml/src/ggml-quants.c): {@code d = amax/127}, {@code qs[j] = roundf(x_j/d)}. Error per value:
 * at most {@code d/2} plus {@code 127·|d − fp16(d)|}. {@link #quantizeX86} is the x86 quantizer of
 * llama.cpp's CPU backend, which its q8_0 KV cache and query conversion run.
 */
public final class Q8_0Codec extends BlockCodec {
  public static final int BLOCK = 32;
  public static final int BYTES = 34;

  /** Offset of the codes {@code qs} (the scale {@code d} is at 0). */
  public static final int QS = 2;

  public static final Q8_0Codec INSTANCE = new Q8_0Codec();

  private Q8_0Codec() {
    super(GgmlType.Q8_0, 0, false, -1);
  }

  @Override
  public void quantize(float[] x, int xOff, MemorySegment dst, long block) {
    LittleEndian.putHalf(dst, block, quantizeCodes(x, xOff, dst, block + QS));
  }

  /**
   * The 32 codes of {@code quantize_row_q8_0_ref} (also those of {@code quantize_row_q8_1_ref}) for
   * {@code x[xOff..+32)}, written as signed bytes at {@code dst[at..+32)}; returns {@code d =
   * amax/127} before its fp16 rounding.
   */
  static float quantizeCodes(float[] x, int xOff, MemorySegment dst, long at) {
    float amax = 0f;
    for (int j = 0; j < BLOCK; j++) {
      amax = Math.max(amax, Math.abs(x[xOff + j]));
    }
    float d = amax / 127f;
    float id = d != 0f ? 1f / d : 0f;
    for (int j = 0; j < BLOCK; j++) {
      LittleEndian.putByte(dst, at + j, roundf(x[xOff + j] * id));
    }
    return d;
  }

  /**
   * llama.cpp's x86 {@code quantize_row_q8_0} (ggml/src/ggml-cpu/arch/x86/quants.c, AVX path):
   * {@code d = amax/127}, codes {@code round(x_j·(127/amax))} with ties to even.
   */
  @Override
  public void quantizeX86(float[] x, int xOff, MemorySegment dst, long block) {
    LittleEndian.putHalf(dst, block, quantizeCodesX86(x, xOff, dst, block + QS));
  }

  /**
   * The 32 codes of the x86 {@code quantize_row_q8_0} and {@code quantize_row_q8_1} for {@code
   * x[xOff..+32)}, written as signed bytes at {@code dst[at..+32)}; returns {@code d = amax/127}
   * before its fp16 rounding. It differs from {@link #quantizeCodes} in the reciprocal ({@code
   * 127/amax}, not {@code 1/(amax/127)}) and in the ties (to even, not away from zero).
   */
  static float quantizeCodesX86(float[] x, int xOff, MemorySegment dst, long at) {
    float amax = 0f;
    for (int j = 0; j < BLOCK; j++) {
      amax = Math.max(amax, Math.abs(x[xOff + j]));
    }
    float id = amax != 0f ? 127f / amax : 0f;
    for (int j = 0; j < BLOCK; j++) {
      LittleEndian.putByte(dst, at + j, nearestInt(x[xOff + j] * id));
    }
    return amax / 127f;
  }

  @Override
  public void codes(MemorySegment src, long block, float[] dst, int dstOff) {
    signedBytes(src, block + QS, BLOCK, 1f, dst, dstOff);
  }

  @Override
  public void dequantize(MemorySegment src, long block, float[] dst, int dstOff) {
    signedBytes(src, block + QS, BLOCK, d(src, block), dst, dstOff);
  }

  /** {@code Σ_blocks d·Σ q_j·x_j}, each block's sum in index order. */
  @Override
  public float dot(MemorySegment src, long offset, int n, float[] x, int xOff) {
    float sum = 0f;
    int blocks = blocks(n);
    for (int b = 0; b < blocks; b++) {
      long block = offset + (long) b * BYTES;
      int xo = xOff + b * BLOCK;
      float blockSum = 0f;
      for (int j = 0; j < BLOCK; j++) {
        blockSum += LittleEndian.s8(src, block + QS + j) * x[xo + j];
      }
      sum += d(src, block) * blockSum;
    }
    return sum;
  }
}
