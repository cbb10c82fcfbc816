package io.kvslim.tensor;

import io.kvslim.ggml.BlockCodec;
import io.kvslim.ggml.LittleEndian;
import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;

/**
 * Converts float rows into GGML tensor data, bit-exact with llama.cpp's reference
 * (round-to-nearest) quantizers, so files written by kvslim quantize exactly as {@code
 * llama-quantize} would from the same floats: F32 as is, F16 rounded to nearest even, and the block
 * types through their codecs ({@link io.kvslim.ggml.Q8_0Codec}, {@link io.kvslim.ggml.Q4_0Codec},
 * ...: ggml's {@code quantize_row_*_ref}).
 */
public final class Quantizer {
  private Quantizer() {}

  /** Whether {@link #quantize} can write {@code type}. */
  public static boolean supports(GgmlType type) {
    return switch (type) {
      case F32, F16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 -> true;
      default -> false;
    };
  }

  /**
   * Writes {@code n} floats of {@code src} from {@code srcOffset} as {@code type} into {@code dst}
   * at {@code dstOffset} ({@code type.bytesFor(n)} bytes).
   */
  public static void quantize(
      GgmlType type, float[] src, int srcOffset, int n, byte[] dst, int dstOffset) {
    if (!supports(type)) {
      throw new IllegalArgumentException(
          "cannot quantize to " + type + " (supported: F32, F16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1)");
    }
    MemorySegment out = MemorySegment.ofArray(dst);
    switch (type) {
      case F32 -> {
        for (int i = 0; i < n; i++) {
          out.set(
              LittleEndian.INT, dstOffset + 4L * i, Float.floatToRawIntBits(src[srcOffset + i]));
        }
      }
      case F16 -> {
        for (int i = 0; i < n; i++) {
          LittleEndian.putHalf(out, dstOffset + 2L * i, src[srcOffset + i]);
        }
      }
      default -> BlockCodec.of(type).quantizeRow(src, srcOffset, n, out, dstOffset);
    }
  }

  /** {@code src} quantized as {@code type}, in a new array. */
  public static byte[] quantize(GgmlType type, float[] src) {
    byte[] dst = new byte[Math.toIntExact(type.bytesFor(src.length))];
    quantize(type, src, 0, src.length, dst, 0);
    return dst;
  }
}
