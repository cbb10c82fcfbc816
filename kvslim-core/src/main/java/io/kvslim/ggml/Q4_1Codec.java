package io.kvslim.ggml;

import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;

/**
 * ggml {@code block_q4_1}: 32 values in 20 bytes, fp16 scale {@code d}, fp16 minimum {@code m},
 * then 16 bytes of nibbles (low = value {@code j}, high = value {@code j + 16}); value {@code j} is
 * {@code q_j·d + m}. Quantized as ggml's {@code quantize_row_q4_1_ref} (ggml/src/ggml-quants.c):
 * {@code d = (max − min)/15}, {@code m = min}, {@code q_j = min(15, (int8) ((x_j − min)/d + 0.5))}.
 * Error per value: {@code d/2} plus the fp16 roundings of {@code d} (times 15) and {@code m}.
 */
public final class Q4_1Codec extends BlockCodec {
  public static final int BLOCK = 32;
  public static final int BYTES = 20;

  /** Offset of the minimum {@code m} (the scale {@code d} is at 0). */
  public static final int M = 2;

  /** Offset of the nibbles {@code qs}. */
  public static final int QS = 4;

  public static final Q4_1Codec INSTANCE = new Q4_1Codec();

  private Q4_1Codec() {
    super(GgmlType.Q4_1, 0, false, M);
  }

  @Override
  public void quantize(float[] x, int xOff, MemorySegment dst, long block) {
    float min = min(x, xOff, BLOCK);
    float id = putScaleAndMin(x, xOff, min, 15f, dst, block, block + M);
    for (int j = 0; j < 16; j++) {
      int lo = Math.min(15, (byte) (int) ((x[xOff + j] - min) * id + 0.5f));
      int hi = Math.min(15, (byte) (int) ((x[xOff + 16 + j] - min) * id + 0.5f));
      LittleEndian.putByte(dst, block + QS + j, lo | hi << 4);
    }
  }

  /** The nibbles {@code q_j} (0..15). */
  @Override
  public void codes(MemorySegment src, long block, float[] dst, int dstOff) {
    nibbles(src, block + QS, 0, 1f, -0f, dst, dstOff);
  }

  @Override
  public void dequantize(MemorySegment src, long block, float[] dst, int dstOff) {
    nibbles(src, block + QS, 0, d(src, block), m(src, block), dst, dstOff);
  }

  /** {@code Σ (d·q_j + m)·x_j}, in pairs {@code (j, j + 16)}. */
  @Override
  public float dot(MemorySegment src, long offset, int n, float[] x, int xOff) {
    float sum = 0f;
    int blocks = blocks(n);
    for (int b = 0; b < blocks; b++) {
      long block = offset + (long) b * BYTES;
      int xo = xOff + b * BLOCK;
      float d = d(src, block);
      float m = m(src, block);
      for (int j = 0; j < 16; j++) {
        int q = LittleEndian.u8(src, block + QS + j);
        sum += (d * (q & 0x0F) + m) * x[xo + j] + (d * (q >>> 4) + m) * x[xo + 16 + j];
      }
    }
    return sum;
  }
}
