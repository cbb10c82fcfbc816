package io.kvslim.kv.format;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * llama.cpp {@code q5_1}: 24 bytes per 32 values, fp16 scale {@code d = (max − min)/31}, fp16
 * minimum {@code m}, the 32-bit word {@code qh} of fifth bits, then 16 bytes of low nibbles; {@code
 * q_j = trunc((x_j − min)/d + 0.5)} (ggml does not clamp here), {@code x̂_j = q_j·d + m}. Follows
 * ggml's {@code quantize_row_q5_1_ref}. Error bound: {@code d/2} plus the fp16 roundings of {@code
 * d} (times 31) and {@code m}.
 */
public final class Q5_1Format extends GgmlBlockFormat {
  Q5_1Format() {}

  @Override
  public String name() {
    return "q5_1";
  }

  @Override
  public int typeBytes() {
    return 24;
  }

  @Override
  protected int typeScaleBytes() {
    return 4;
  }

  @Override
  protected void encodeBlock(float[] x, int xOff, MemorySegment block, long offset) {
    float min = Float.MAX_VALUE;
    float max = -Float.MAX_VALUE;
    for (int j = 0; j < BLOCK_VALUES; j++) {
      float v = x[xOff + j];
      if (v < min) {
        min = v;
      }
      if (v > max) {
        max = v;
      }
    }
    float d = (max - min) / 31;
    float id = d != 0f ? 1.0f / d : 0f;
    putScale(block, offset, d);
    putScale(block, offset + 2, min);
    int highBits = 0;
    for (int j = 0; j < 16; j++) {
      int low = ((int) ((x[xOff + j] - min) * id + 0.5f)) & 0xff;
      int high = ((int) ((x[xOff + 16 + j] - min) * id + 0.5f)) & 0xff;
      block.set(
          ValueLayout.JAVA_BYTE, offset + 8 + j, (byte) ((low & 0x0f) | ((high & 0x0f) << 4)));
      highBits |= ((low >>> 4) & 1) << j;
      highBits |= ((high >>> 4) & 1) << (j + 16);
    }
    block.set(Q5_0Format.INT_LE, offset + 4, highBits);
  }

  @Override
  protected void decodeBlock(MemorySegment block, long offset, float[] dst, int dstOff) {
    float d = scale(block, offset);
    float m = scale(block, offset + 2);
    int highBits = block.get(Q5_0Format.INT_LE, offset + 4);
    for (int j = 0; j < 16; j++) {
      int packed = block.get(ValueLayout.JAVA_BYTE, offset + 8 + j) & 0xff;
      int low = (packed & 0x0f) | (((highBits >>> j) & 1) << 4);
      int high = (packed >>> 4) | (((highBits >>> (j + 16)) & 1) << 4);
      dst[dstOff + j] = low * d + m;
      dst[dstOff + 16 + j] = high * d + m;
    }
  }

  @Override
  protected boolean hasMinimum() {
    return true;
  }

  @Override
  protected void decodeCodes(MemorySegment block, long offset, float[] dst, int dstOff) {
    int highBits = block.get(Q5_0Format.INT_LE, offset + 4);
    for (int j = 0; j < 16; j++) {
      int packed = block.get(ValueLayout.JAVA_BYTE, offset + 8 + j) & 0xff;
      dst[dstOff + j] = (packed & 0x0f) | (((highBits >>> j) & 1) << 4);
      dst[dstOff + 16 + j] = (packed >>> 4) | (((highBits >>> (j + 16)) & 1) << 4);
    }
  }
}
