package io.kvslim.ggml;

import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;

/**
 * ggml {@code block_q4_0}: 32 values in 18 bytes, an fp16 scale {@code d} then 16 bytes {@code qs}
 * whose low nibble is value {@code j} and high nibble value {@code j + 16}; value {@code j} is
 * {@code (q_j − 8)·d}. Quantized as ggml's {@code quantize_row_q4_0_ref} (ggml/src/ggml-quants.c):
 * {@code max} the value of largest magnitude with its sign, {@code d = max/−8}, {@code q_j =
 * min(15, (int8) (x_j/d + 8.5))}. Error per value: {@code |d|/2} plus {@code 8·|d − fp16(d)|},
 * except values opposite the extreme beyond {@code 7.5·|d|}, which clamp to code 15: up to {@code
 * |d|} (the extreme itself maps to code 0 exactly).
 */
public final class Q4_0Codec extends BlockCodec {
  public static final int BLOCK = 32;
  public static final int BYTES = 18;

  /** Offset of the nibbles {@code qs} (the scale {@code d} is at 0). */
  public static final int QS = 2;

  public static final Q4_0Codec INSTANCE = new Q4_0Codec();

  private Q4_0Codec() {
    super(GgmlType.Q4_0, 0, false, -1);
  }

  @Override
  public void quantize(float[] x, int xOff, MemorySegment dst, long block) {
    float id = putSignedScale(x, xOff, -8f, dst, block);
    for (int j = 0; j < 16; j++) {
      int lo = Math.min(15, (byte) (int) (x[xOff + j] * id + 8.5f));
      int hi = Math.min(15, (byte) (int) (x[xOff + 16 + j] * id + 8.5f));
      LittleEndian.putByte(dst, block + QS + j, lo | hi << 4);
    }
  }

  /** The centred codes {@code q_j − 8}. */
  @Override
  public void codes(MemorySegment src, long block, float[] dst, int dstOff) {
    nibbles(src, block + QS, 8, 1f, -0f, dst, dstOff);
  }

  @Override
  public void dequantize(MemorySegment src, long block, float[] dst, int dstOff) {
    nibbles(src, block + QS, 8, d(src, block), -0f, dst, dstOff);
  }

  /** {@code Σ_blocks d·Σ (q_j − 8)·x_j}, each block's sum in pairs {@code (j, j + 16)}. */
  @Override
  public float dot(MemorySegment src, long offset, int n, float[] x, int xOff) {
    float sum = 0f;
    int blocks = blocks(n);
    for (int b = 0; b < blocks; b++) {
      long block = offset + (long) b * BYTES;
      int xo = xOff + b * BLOCK;
      float blockSum = 0f;
      for (int j = 0; j < 16; j++) {
        int q = LittleEndian.u8(src, block + QS + j);
        blockSum += ((q & 0x0F) - 8) * x[xo + j] + ((q >>> 4) - 8) * x[xo + 16 + j];
      }
      sum += d(src, block) * blockSum;
    }
    return sum;
  }
}
