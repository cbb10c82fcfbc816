package io.kvslim.ggml;

import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;

/**
 * ggml {@code block_q5_1}: 32 values in 24 bytes, fp16 scale {@code d}, fp16 minimum {@code m}, the
 * 32-bit word {@code qh} of fifth bits (as q5_0), then 16 bytes of low nibbles; value {@code j} is
 * {@code q_j·d + m}. Quantized as ggml's {@code quantize_row_q5_1_ref} (ggml/src/ggml-quants.c):
 * {@code d = (max − min)/31}, {@code m = min}, {@code q_j = (uint8) ((x_j − min)/d + 0.5)} (ggml
 * does not clamp here). Error per value: {@code d/2} plus the fp16 roundings of {@code d} (times
 * 31) and {@code m}.
 */
public final class Q5_1Codec extends BlockCodec {
  public static final int BLOCK = 32;
  public static final int BYTES = 24;

  /** Offset of the minimum {@code m} (the scale {@code d} is at 0). */
  public static final int M = 2;

  /** Offset of the fifth-bit word {@code qh}. */
  public static final int QH = 4;

  /** Offset of the low nibbles {@code qs}. */
  public static final int QS = 8;

  public static final Q5_1Codec INSTANCE = new Q5_1Codec();

  private Q5_1Codec() {
    super(GgmlType.Q5_1, 0, false, M);
  }

  @Override
  public void quantize(float[] x, int xOff, MemorySegment dst, long block) {
    float min = min(x, xOff, BLOCK);
    float id = putScaleAndMin(x, xOff, min, 31f, dst, block, block + M);
    int qh = 0;
    for (int j = 0; j < 16; j++) {
      int lo = ((int) ((x[xOff + j] - min) * id + 0.5f)) & 0xFF;
      int hi = ((int) ((x[xOff + 16 + j] - min) * id + 0.5f)) & 0xFF;
      qh |= putFiveBits(dst, block + QS, j, lo, hi);
    }
    dst.set(LittleEndian.INT, block + QH, qh);
  }

  /** The codes {@code q_j} (0..31). */
  @Override
  public void codes(MemorySegment src, long block, float[] dst, int dstOff) {
    fiveBits(src, block + QH, block + QS, 0, 1f, -0f, dst, dstOff);
  }

  @Override
  public void dequantize(MemorySegment src, long block, float[] dst, int dstOff) {
    fiveBits(src, block + QH, block + QS, 0, d(src, block), m(src, block), dst, dstOff);
  }

  /** {@code Σ (d·q_j + m)·x_j}, in index order. */
  @Override
  public float dot(MemorySegment src, long offset, int n, float[] x, int xOff) {
    float sum = 0f;
    int blocks = blocks(n);
    for (int b = 0; b < blocks; b++) {
      long block = offset + (long) b * BYTES;
      int xo = xOff + b * BLOCK;
      int qh = src.get(LittleEndian.INT, block + QH);
      float d = d(src, block);
      float m = m(src, block);
      for (int j = 0; j < BLOCK; j++) {
        sum += (d * fiveBit(src, qh, block + QS, j) + m) * x[xo + j];
      }
    }
    return sum;
  }
}
