package io.kvslim.ggml;

import io.kvslim.gguf.GgmlType;

/**
 * The test oracle for the codecs, written apart from them: one value or one block at a time, on
 * plain byte arrays with the little-endian fields unpacked by hand, following the text of ggml's
 * {@code dequantize_row_*} and {@code quantize_row_*_ref} (ggml/src/ggml-quants.c) and of
 * llama.cpp's x86 {@code quantize_row_q8_1} (ggml/src/ggml-cpu/arch/x86/quants.c).
 */
public final class GgmlReference {
  private GgmlReference() {}

  public static float f16(byte[] b, int o) {
    return Float.float16ToFloat((short) ((b[o] & 0xff) | (b[o + 1] << 8)));
  }

  static int i32(byte[] b, int o) {
    return (b[o] & 0xff)
        | (b[o + 1] & 0xff) << 8
        | (b[o + 2] & 0xff) << 16
        | (b[o + 3] & 0xff) << 24;
  }

  static float f32(byte[] b, int o) {
    return Float.intBitsToFloat(i32(b, o));
  }

  static void putF16(byte[] b, int o, float v) {
    short h = Float.floatToFloat16(v);
    b[o] = (byte) h;
    b[o + 1] = (byte) (h >> 8);
  }

  static void putI32(byte[] b, int o, int v) {
    for (int k = 0; k < 4; k++) {
      b[o + k] = (byte) (v >> 8 * k);
    }
  }

  /** ggml's {@code get_scale_min_k4}: {scale, min} of sub-block {@code j} from the 12 bytes. */
  static int[] scaleMinK4(byte[] b, int q, int j) {
    if (j < 4) {
      return new int[] {b[q + j] & 63, b[q + j + 4] & 63};
    }
    int sc = (b[q + j + 4] & 0xF) | (((b[q + j - 4] & 0xff) >> 6) << 4);
    int m = ((b[q + j + 4] & 0xff) >> 4) | (((b[q + j] & 0xff) >> 6) << 4);
    return new int[] {sc, m};
  }

  /** Value {@code i} of the block {@code b[o..]} of {@code type}, as ggml dequantizes it. */
  public static float value(GgmlType type, byte[] b, int o, int i) {
    switch (type) {
      case Q8_0 -> {
        return b[o + 2 + i] * f16(b, o);
      }
      case Q8_1 -> {
        return b[o + 4 + i] * f16(b, o);
      }
      case Q4_0, Q4_1 -> {
        int qs = type == GgmlType.Q4_0 ? 2 : 4;
        int q = i < 16 ? b[o + qs + i] & 0x0F : (b[o + qs + i - 16] & 0xff) >> 4;
        return type == GgmlType.Q4_0 ? (q - 8) * f16(b, o) : q * f16(b, o) + f16(b, o + 2);
      }
      case Q5_0, Q5_1 -> {
        int qh = i32(b, o + (type == GgmlType.Q5_0 ? 2 : 4));
        int qs = type == GgmlType.Q5_0 ? 6 : 8;
        int low = i < 16 ? b[o + qs + i] & 0x0F : (b[o + qs + i - 16] & 0xff) >> 4;
        int q = low | ((qh >>> i) & 1) << 4;
        return type == GgmlType.Q5_0 ? (q - 16) * f16(b, o) : q * f16(b, o) + f16(b, o + 2);
      }
      case Q4_K, Q5_K -> {
        int sub = i / 32;
        int l = i % 32;
        int qs = type == GgmlType.Q4_K ? 16 : 48;
        int packed = b[o + qs + 32 * (sub / 2) + l] & 0xff;
        int q = sub % 2 == 0 ? packed & 0xF : packed >> 4;
        if (type == GgmlType.Q5_K && (b[o + 16 + l] & (1 << sub)) != 0) {
          q += 16;
        }
        int[] sm = scaleMinK4(b, o + 4, sub);
        float d1 = f16(b, o) * sm[0];
        float m1 = f16(b, o + 2) * sm[1];
        return d1 * q - m1;
      }
      case Q6_K -> {
        int half = i / 128;
        int r = i % 128;
        int l = r % 32;
        int group = r / 32;
        int ql = b[o + 64 * half + l + (group % 2 == 1 ? 32 : 0)] & 0xff;
        int low = group < 2 ? ql & 0xF : ql >> 4;
        int high = ((b[o + 128 + 32 * half + l] & 0xff) >> (2 * group)) & 3;
        int q = (low | high << 4) - 32;
        return f16(b, o + 208) * b[o + 192 + i / 16] * q;
      }
      case Q8_K -> {
        return f32(b, o) * b[o + 4 + i];
      }
      default -> throw new IllegalArgumentException(type.toString());
    }
  }

  /** {@code quantize_row_*_ref} of one block of {@code type} ({@code x86} for llama.cpp's q8_1). */
  public static byte[] quantize(GgmlType type, float[] x, int xo, boolean x86) {
    byte[] b = new byte[type.typeSize()];
    switch (type) {
      case Q8_0, Q8_1 -> {
        int qs = type == GgmlType.Q8_0 ? 2 : 4;
        float amax = 0f;
        for (int j = 0; j < 32; j++) {
          amax = Math.max(amax, Math.abs(x[xo + j]));
        }
        float d = amax / 127;
        float id = x86 ? (amax != 0f ? 127f / amax : 0f) : (d != 0f ? 1.0f / d : 0f);
        int sum = 0;
        for (int j = 0; j < 32; j++) {
          float v = x[xo + j] * id;
          // C's roundf (halves away from zero), or _mm256_round_ps (halves to even)
          int q =
              x86 ? (int) Math.rint(v) : (int) Math.signum(v) * (int) Math.floor(Math.abs(v) + 0.5);
          b[qs + j] = (byte) q;
          sum += b[qs + j];
        }
        putF16(b, 0, d);
        if (type == GgmlType.Q8_1) {
          putF16(b, 2, sum * d);
        }
      }
      case Q4_0, Q5_0 -> {
        int levels = type == GgmlType.Q4_0 ? 16 : 32;
        float amax = 0f;
        float max = 0f;
        for (int j = 0; j < 32; j++) {
          if (amax < Math.abs(x[xo + j])) {
            amax = Math.abs(x[xo + j]);
            max = x[xo + j];
          }
        }
        float d = max / -(levels / 2);
        float id = d != 0f ? 1.0f / d : 0f;
        putF16(b, 0, d);
        int[] q = new int[32];
        for (int j = 0; j < 32; j++) {
          q[j] = Math.min(levels - 1, (byte) (int) (x[xo + j] * id + (levels / 2 + 0.5f)));
        }
        pack(type, b, q);
      }
      case Q4_1, Q5_1 -> {
        float min = Float.MAX_VALUE;
        float max = -Float.MAX_VALUE;
        for (int j = 0; j < 32; j++) {
          if (x[xo + j] < min) {
            min = x[xo + j];
          }
          if (x[xo + j] > max) {
            max = x[xo + j];
          }
        }
        float d = (max - min) / (type == GgmlType.Q4_1 ? 15 : 31);
        float id = d != 0f ? 1.0f / d : 0f;
        putF16(b, 0, d);
        putF16(b, 2, min);
        int[] q = new int[32];
        for (int j = 0; j < 32; j++) {
          float v = (x[xo + j] - min) * id + 0.5f;
          q[j] = type == GgmlType.Q4_1 ? Math.min(15, (byte) (int) v) : ((int) v) & 0xff;
        }
        pack(type, b, q);
      }
      case Q8_K -> {
        float amax = 0f;
        float max = 0f;
        for (int j = 0; j < 256; j++) {
          if (Math.abs(x[xo + j]) > amax) {
            amax = Math.abs(x[xo + j]);
            max = x[xo + j];
          }
        }
        if (amax == 0f) {
          return b; // d = 0, codes 0, and (here) zero sums
        }
        float iscale = -127.f / max;
        for (int j = 0; j < 256; j++) {
          b[4 + j] = (byte) Math.min(127, (int) Math.rint(iscale * x[xo + j]));
        }
        for (int g = 0; g < 16; g++) {
          int sum = 0;
          for (int j = 0; j < 16; j++) {
            sum += b[4 + 16 * g + j];
          }
          b[260 + 2 * g] = (byte) sum;
          b[261 + 2 * g] = (byte) (sum >> 8);
        }
        putI32(b, 0, Float.floatToRawIntBits(1 / iscale));
      }
      default -> throw new IllegalArgumentException(type.toString());
    }
    return b;
  }

  /** Codes 0..15 (0..31) into the nibbles (and, for 5 bits, the {@code qh} word) of a block. */
  private static void pack(GgmlType type, byte[] b, int[] q) {
    boolean five = type == GgmlType.Q5_0 || type == GgmlType.Q5_1;
    int qs =
        switch (type) {
          case Q4_0 -> 2;
          case Q4_1 -> 4;
          case Q5_0 -> 6;
          default -> 8;
        };
    int qh = 0;
    for (int j = 0; j < 16; j++) {
      b[qs + j] = (byte) ((q[j] & 0x0F) | (q[j + 16] & 0x0F) << 4);
      qh |= ((q[j] >> 4) & 1) << j | ((q[j + 16] >> 4) & 1) << (j + 16);
    }
    if (five) {
      putI32(b, qs - 4, qh);
    }
  }
}
