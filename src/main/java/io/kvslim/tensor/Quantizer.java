package io.kvslim.tensor;

import io.kvslim.gguf.GgmlType;

/**
 * Converts float rows into GGML block formats, bit-exact with llama.cpp's reference
 * (round-to-nearest) quantizers {@code quantize_row_q8_0_ref} and {@code quantize_row_q4_0_ref}, so
 * files written by kvslim quantize exactly as {@code llama-quantize} would from the same floats.
 *
 * <p>Block layouts (little-endian):
 *
 * <ul>
 *   <li>F16: IEEE half per element, rounded to nearest even.
 *   <li>Q8_0: 32 elements in 34 bytes: fp16 scale {@code d = amax / 127}, then 32 int8 {@code q =
 *       roundf(x / d)} (half away from zero).
 *   <li>Q4_0: 32 elements in 18 bytes: fp16 scale {@code d = m / -8} where {@code m} is the element
 *       of largest magnitude (the first one on ties, sign kept), then 16 bytes whose low nibble is
 *       element {@code j} and high nibble element {@code j + 16}, each {@code min(15, (int) (x / d
 *       + 8.5))}; dequantized as {@code (nibble - 8) * d}.
 * </ul>
 */
public final class Quantizer {
  private Quantizer() {}

  public static final int QK = 32;

  /** Whether {@link #quantize} can write {@code type}. */
  public static boolean supports(GgmlType type) {
    return switch (type) {
      case F32, F16, Q8_0, Q4_0 -> true;
      default -> false;
    };
  }

  /**
   * Writes {@code n} floats of {@code src} from {@code srcOffset} as {@code type} into {@code dst}
   * at {@code dstOffset} ({@code type.bytesFor(n)} bytes).
   */
  public static void quantize(
      GgmlType type, float[] src, int srcOffset, int n, byte[] dst, int dstOffset) {
    switch (type) {
      case F32 -> quantizeF32(src, srcOffset, n, dst, dstOffset);
      case F16 -> quantizeF16(src, srcOffset, n, dst, dstOffset);
      case Q8_0 -> quantizeQ8_0(src, srcOffset, n, dst, dstOffset);
      case Q4_0 -> quantizeQ4_0(src, srcOffset, n, dst, dstOffset);
      default ->
          throw new IllegalArgumentException(
              "cannot quantize to " + type + " (supported: F32, F16, Q8_0, Q4_0)");
    }
  }

  /** {@code src} quantized as {@code type}, in a new array. */
  public static byte[] quantize(GgmlType type, float[] src) {
    byte[] dst = new byte[Math.toIntExact(type.bytesFor(src.length))];
    quantize(type, src, 0, src.length, dst, 0);
    return dst;
  }

  public static void quantizeF32(float[] src, int srcOffset, int n, byte[] dst, int dstOffset) {
    for (int i = 0; i < n; i++) {
      int bits = Float.floatToRawIntBits(src[srcOffset + i]);
      int o = dstOffset + 4 * i;
      dst[o] = (byte) bits;
      dst[o + 1] = (byte) (bits >>> 8);
      dst[o + 2] = (byte) (bits >>> 16);
      dst[o + 3] = (byte) (bits >>> 24);
    }
  }

  public static void quantizeF16(float[] src, int srcOffset, int n, byte[] dst, int dstOffset) {
    for (int i = 0; i < n; i++) {
      putF16(dst, dstOffset + 2 * i, src[srcOffset + i]);
    }
  }

  public static void quantizeQ8_0(float[] src, int srcOffset, int n, byte[] dst, int dstOffset) {
    checkBlocks(n);
    for (int b = 0; b < n / QK; b++) {
      int x = srcOffset + b * QK;
      int o = dstOffset + b * 34;
      float amax = 0f;
      for (int j = 0; j < QK; j++) {
        amax = Math.max(amax, Math.abs(src[x + j]));
      }
      float d = amax / 127f;
      float id = d != 0f ? 1f / d : 0f;
      putF16(dst, o, d);
      for (int j = 0; j < QK; j++) {
        dst[o + 2 + j] = (byte) roundf(src[x + j] * id);
      }
    }
  }

  public static void quantizeQ4_0(float[] src, int srcOffset, int n, byte[] dst, int dstOffset) {
    checkBlocks(n);
    for (int b = 0; b < n / QK; b++) {
      int x = srcOffset + b * QK;
      int o = dstOffset + b * 18;
      float amax = 0f;
      float max = 0f;
      for (int j = 0; j < QK; j++) {
        float v = src[x + j];
        if (amax < Math.abs(v)) {
          amax = Math.abs(v);
          max = v;
        }
      }
      float d = max / -8f;
      float id = d != 0f ? 1f / d : 0f;
      putF16(dst, o, d);
      for (int j = 0; j < QK / 2; j++) {
        int lo = Math.min(15, (int) (src[x + j] * id + 8.5f));
        int hi = Math.min(15, (int) (src[x + QK / 2 + j] * id + 8.5f));
        dst[o + 2 + j] = (byte) (lo | (hi << 4));
      }
    }
  }

  /** C's {@code roundf}: to nearest, halves away from zero (Math.round rounds halves up). */
  static int roundf(float v) {
    // |v| + 0.5 is exact in double for every float of the magnitudes quantizers produce.
    double r = Math.floor(Math.abs((double) v) + 0.5);
    return (int) (v < 0 ? -r : r);
  }

  private static void putF16(byte[] dst, int offset, float v) {
    short h = Float.floatToFloat16(v);
    dst[offset] = (byte) h;
    dst[offset + 1] = (byte) (h >>> 8);
  }

  private static void checkBlocks(int n) {
    if (n % QK != 0) {
      throw new IllegalArgumentException(
          "block quantization needs a multiple of " + QK + " elements, got " + n);
    }
  }
}
