package io.kvslim.kv.format;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * llama.cpp {@code q4_1}: 20 bytes per 32 values, fp16 scale {@code d = (max − min)/15}, fp16
 * minimum {@code m}, then 16 bytes of nibbles (low = element {@code j}, high = {@code j+16});
 * {@code q_j = min(15, trunc((x_j − min)/d + 0.5))}, {@code x̂_j = q_j·d + m}. Follows ggml's
 * {@code quantize_row_q4_1_ref}. Error bound: {@code d/2} plus the fp16 roundings of {@code d}
 * (times 15) and {@code m}.
 */
public final class Q4_1Format extends GgmlBlockFormat {
  Q4_1Format() {}

  @Override
  public String name() {
    return "q4_1";
  }

  @Override
  public int typeBytes() {
    return 20;
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
    float d = (max - min) / 15;
    float id = d != 0f ? 1.0f / d : 0f;
    putScale(block, offset, d);
    putScale(block, offset + 2, min);
    for (int j = 0; j < 16; j++) {
      int low = Math.min(15, (byte) (int) ((x[xOff + j] - min) * id + 0.5f));
      int high = Math.min(15, (byte) (int) ((x[xOff + 16 + j] - min) * id + 0.5f));
      block.set(ValueLayout.JAVA_BYTE, offset + 4 + j, (byte) (low | (high << 4)));
    }
  }

  @Override
  protected void decodeBlock(MemorySegment block, long offset, float[] dst, int dstOff) {
    float d = scale(block, offset);
    float m = scale(block, offset + 2);
    for (int j = 0; j < 16; j++) {
      int packed = block.get(ValueLayout.JAVA_BYTE, offset + 4 + j) & 0xff;
      dst[dstOff + j] = (packed & 0x0f) * d + m;
      dst[dstOff + 16 + j] = (packed >>> 4) * d + m;
    }
  }

  @Override
  protected boolean hasMinimum() {
    return true;
  }

  @Override
  protected void decodeCodes(MemorySegment block, long offset, float[] dst, int dstOff) {
    for (int j = 0; j < 16; j++) {
      int packed = block.get(ValueLayout.JAVA_BYTE, offset + 4 + j) & 0xff;
      dst[dstOff + j] = packed & 0x0f;
      dst[dstOff + 16 + j] = packed >>> 4;
    }
  }
}
