package io.kvslim.ggml;

import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;

/**
 * ggml {@code block_q5_0}: 32 values in 22 bytes, an fp16 scale {@code d}, a little-endian 32-bit
 * word {@code qh} holding bit 4 of every code (bit {@code j} for value {@code j}), then 16 bytes of
 * low nibbles (low = value {@code j}, high = value {@code j + 16}); value {@code j} is {@code (q_j
 * − 16)·d}. Quantized as ggml's {@code quantize_row_q5_0_ref} (ggml/src/ggml-quants.c): {@code d =
 * max/−16} for the value of largest magnitude, {@code q_j = min(31, (int8) (x_j/d + 16.5))}. Error
 * per value: {@code |d|/2} plus {@code 16·|d − fp16(d)|}, up to {@code |d|} for values opposite the
 * extreme beyond {@code 15.5·|d|} (clamped to code 31).
 */
public final class Q5_0Codec extends BlockCodec {
  public static final int BLOCK = 32;
  public static final int BYTES = 22;

  /** Offset of the fifth-bit word {@code qh} (the scale {@code d} is at 0). */
  public static final int QH = 2;

  /** Offset of the low nibbles {@code qs}. */
  public static final int QS = 6;

  public static final Q5_0Codec INSTANCE = new Q5_0Codec();

  private Q5_0Codec() {
    super(GgmlType.Q5_0, 0, false, -1);
  }

  @Override
  public void quantize(float[] x, int xOff, MemorySegment dst, long block) {
    float id = putSignedScale(x, xOff, -16f, dst, block);
    int qh = 0;
    for (int j = 0; j < 16; j++) {
      int lo = Math.min(31, (byte) (int) (x[xOff + j] * id + 16.5f));
      int hi = Math.min(31, (byte) (int) (x[xOff + 16 + j] * id + 16.5f));
      qh |= putFiveBits(dst, block + QS, j, lo, hi);
    }
    dst.set(LittleEndian.INT, block + QH, qh);
  }

  /** The centred codes {@code q_j − 16}. */
  @Override
  public void codes(MemorySegment src, long block, float[] dst, int dstOff) {
    fiveBits(src, block + QH, block + QS, 16, 1f, -0f, dst, dstOff);
  }

  @Override
  public void dequantize(MemorySegment src, long block, float[] dst, int dstOff) {
    fiveBits(src, block + QH, block + QS, 16, d(src, block), -0f, dst, dstOff);
  }

  /** {@code Σ_blocks d·Σ (q_j − 16)·x_j}, each block's sum in index order. */
  @Override
  public float dot(MemorySegment src, long offset, int n, float[] x, int xOff) {
    float sum = 0f;
    int blocks = blocks(n);
    for (int b = 0; b < blocks; b++) {
      long block = offset + (long) b * BYTES;
      int xo = xOff + b * BLOCK;
      int qh = src.get(LittleEndian.INT, block + QH);
      float blockSum = 0f;
      for (int j = 0; j < BLOCK; j++) {
        blockSum += (fiveBit(src, qh, block + QS, j) - 16) * x[xo + j];
      }
      sum += d(src, block) * blockSum;
    }
    return sum;
  }
}
