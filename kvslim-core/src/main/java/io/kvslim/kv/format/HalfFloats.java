package io.kvslim.kv.format;

/**
 * Conversions between float and the 16-bit formats, with the rounding llama.cpp uses, plus the
 * directed roundings the KIVI quantizers need to keep their error bound with fp16 scales.
 */
public final class HalfFloats {
  private HalfFloats() {}

  /** fp32 → fp16, round to nearest even (as F16C {@code vcvtps2ph} and ggml's fallback). */
  public static short toF16(float value) {
    return Float.floatToFloat16(value);
  }

  public static float fromF16(short bits) {
    return Float.float16ToFloat(bits);
  }

  /**
   * fp32 → bf16 as ggml's {@code ggml_compute_fp32_to_bf16}: round to nearest even on the upper 16
   * bits; a NaN stays a (quiet) NaN.
   */
  public static short toBf16(float value) {
    int bits = Float.floatToRawIntBits(value);
    if ((bits & 0x7fffffff) > 0x7f800000) {
      return (short) ((bits >>> 16) | 64);
    }
    return (short) ((bits + (0x7fff + ((bits >>> 16) & 1))) >>> 16);
  }

  public static float fromBf16(short bits) {
    return Float.intBitsToFloat((bits & 0xffff) << 16);
  }

  /** The largest fp16 value {@code <= value} (assumes {@code |value| <= 65504}). */
  public static short toF16RoundedDown(float value) {
    short h = toF16(value);
    if (fromF16(h) <= value) {
      return h;
    }
    if ((h & 0x8000) == 0) {
      return h == 0 ? (short) 0x8001 : (short) (h - 1);
    }
    return (short) (h + 1);
  }

  /** The smallest fp16 value {@code >= value} (assumes {@code |value| <= 65504}). */
  public static short toF16RoundedUp(float value) {
    short h = toF16(value);
    if (fromF16(h) >= value) {
      return h;
    }
    return nextF16Up(h);
  }

  /** The next fp16 value towards +infinity. */
  public static short nextF16Up(short h) {
    if ((h & 0x8000) == 0) {
      return (short) (h + 1);
    }
    return h == (short) 0x8000 ? (short) 0x0001 : (short) (h - 1);
  }
}
