package io.kvslim.kv.format;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * llama.cpp {@code q5_0}: 22 bytes per 32 values, fp16 scale {@code d = max/−16}, a little-endian
 * 32-bit word {@code qh} holding bit 4 of every code (bit {@code j} for element {@code j}), then 16
 * bytes of low nibbles (low = element {@code j}, high = {@code j+16}); {@code q_j = min(31,
 * trunc(x_j/d + 16.5))}, {@code x̂_j = (q_j − 16)·d}. Follows ggml's {@code quantize_row_q5_0_ref}.
 * Error bound: {@code |d|/2} plus {@code 16·|d − fp16(d)|}, up to {@code |d|} for values opposite
 * the extreme beyond {@code 15.5·|d|} (clamped to code 31).
 */
public final class Q5_0Format extends GgmlBlockFormat {
  static final ValueLayout.OfInt INT_LE =
      ValueLayout.JAVA_INT_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN);

  Q5_0Format() {}

  @Override
  public String name() {
    return "q5_0";
  }

  @Override
  public int typeBytes() {
    return 22;
  }

  @Override
  protected int typeScaleBytes() {
    return 2;
  }

  @Override
  protected void encodeBlock(float[] x, int xOff, MemorySegment block, long offset) {
    float amax = 0f;
    float max = 0f;
    for (int j = 0; j < BLOCK_VALUES; j++) {
      float v = x[xOff + j];
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    float d = max / -16;
    float id = d != 0f ? 1.0f / d : 0f;
    putScale(block, offset, d);
    int highBits = 0;
    for (int j = 0; j < 16; j++) {
      int low = Math.min(31, (byte) (int) (x[xOff + j] * id + 16.5f));
      int high = Math.min(31, (byte) (int) (x[xOff + 16 + j] * id + 16.5f));
      block.set(
          ValueLayout.JAVA_BYTE, offset + 6 + j, (byte) ((low & 0x0f) | ((high & 0x0f) << 4)));
      highBits |= ((low >>> 4) & 1) << j;
      highBits |= ((high >>> 4) & 1) << (j + 16);
    }
    block.set(INT_LE, offset + 2, highBits);
  }

  @Override
  protected void decodeBlock(MemorySegment block, long offset, float[] dst, int dstOff) {
    float d = scale(block, offset);
    int highBits = block.get(INT_LE, offset + 2);
    for (int j = 0; j < 16; j++) {
      int packed = block.get(ValueLayout.JAVA_BYTE, offset + 6 + j) & 0xff;
      int low = (packed & 0x0f) | (((highBits >>> j) & 1) << 4);
      int high = (packed >>> 4) | (((highBits >>> (j + 16)) & 1) << 4);
      dst[dstOff + j] = (low - 16) * d;
      dst[dstOff + 16 + j] = (high - 16) * d;
    }
  }

  @Override
  protected void decodeCodes(MemorySegment block, long offset, float[] dst, int dstOff) {
    int highBits = block.get(INT_LE, offset + 2);
    for (int j = 0; j < 16; j++) {
      int packed = block.get(ValueLayout.JAVA_BYTE, offset + 6 + j) & 0xff;
      dst[dstOff + j] = ((packed & 0x0f) | (((highBits >>> j) & 1) << 4)) - 16;
      dst[dstOff + 16 + j] = ((packed >>> 4) | (((highBits >>> (j + 16)) & 1) << 4)) - 16;
    }
  }
}
