package io.kvslim.ggml;

import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;

/**
 * ggml {@code block_q8_K}, the form llama.cpp converts activations to before a dot product with
 * K-quant weights: 256 values in 292 bytes, a float32 scale {@code d}, 256 signed bytes {@code qs},
 * then sixteen int16 {@code bsums} (the sums of each 16 codes); value {@code j} is {@code qs[j]·d}.
 */
public final class Q8_KCodec extends BlockCodec {
  public static final int BLOCK = 256;
  public static final int BYTES = 292;

  /** Offset of the codes {@code qs} (the float32 scale {@code d} is at 0). */
  public static final int QS = 4;

  /** Offset of the sixteen int16 sums {@code bsums}. */
  public static final int BSUMS = 260;

  public static final Q8_KCodec INSTANCE = new Q8_KCodec();

  private Q8_KCodec() {
    super(GgmlType.Q8_K, 0, true, -1);
  }

  /**
   * ggml's {@code quantize_row_q8_K_ref} (ggml/src/ggml-quants.c), which the x86 CPU backend also
   * runs: {@code max} the value of largest magnitude with its sign, {@code iscale = −127/max},
   * codes {@code min(127, nearest_int(iscale·x_j))}, {@code d = 1/iscale}, and the sums of each 16
   * codes. An all-zero block gets {@code d = 0} and zero codes; ggml leaves its sums as they were,
   * here they are zeroed (with {@code d = 0} they cannot change a product).
   */
  @Override
  public void quantize(float[] x, int xOff, MemorySegment dst, long block) {
    float max = signedMax(x, xOff, BLOCK);
    float iscale = max != 0f ? -127f / max : 0f;
    for (int j = 0; j < BLOCK; j++) {
      int code = max != 0f ? Math.min(127, nearestInt(iscale * x[xOff + j])) : 0;
      LittleEndian.putByte(dst, block + QS + j, code);
    }
    for (int g = 0; g < 16; g++) {
      int sum = 0;
      for (int i = 0; i < 16; i++) {
        sum += LittleEndian.s8(dst, block + QS + 16 * g + i);
      }
      dst.set(LittleEndian.SHORT, block + BSUMS + 2 * g, (short) sum);
    }
    dst.set(LittleEndian.FLOAT, block, max != 0f ? 1f / iscale : 0f);
  }

  /** The sum of codes {@code 16·group .. 16·group + 16}. */
  public int bsum(MemorySegment src, long block, int group) {
    return src.get(LittleEndian.SHORT, block + BSUMS + 2 * group);
  }

  @Override
  public void codes(MemorySegment src, long block, float[] dst, int dstOff) {
    signedBytes(src, block + QS, BLOCK, 1f, dst, dstOff);
  }

  @Override
  public void dequantize(MemorySegment src, long block, float[] dst, int dstOff) {
    signedBytes(src, block + QS, BLOCK, d(src, block), dst, dstOff);
  }
}
