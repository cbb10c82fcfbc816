package io.kvslim.kv.quant;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Asymmetric uniform quantization of a group (METHODS.md M8), shared by the KIVI formats: zero
 * point {@code z = min}, scale {@code s = (max − min)/(2^b − 1)}, {@code q = clamp(round((x −
 * z)/s), 0, 2^b − 1)}, {@code x̂ = q·s + z}. Scale and zero point are stored as fp16; {@code z} is
 * rounded down and {@code s} up so that {@code [z, z + s·(2^b−1)]} still covers the group and the
 * bound {@code |x − x̂| ≤ s/2} holds with the stored {@code s} (up to float rounding). Codes are
 * packed least significant bit first, which is little-endian inside 32-bit words.
 */
final class AsymmetricCodes {
  private AsymmetricCodes() {}

  static void checkBits(String format, int bits) {
    if (bits != 1 && bits != 2 && bits != 4 && bits != 8) {
      throw new IllegalArgumentException(
          "format " + format + " needs 1, 2, 4 or 8 bits, got " + bits);
    }
  }

  static short zeroPoint(float min) {
    return HalfFloats.toF16RoundedDown(min);
  }

  static short scale(float zeroPoint, float max, int bits) {
    int levels = (1 << bits) - 1;
    short s = HalfFloats.toF16RoundedUp(Math.max(0f, (max - zeroPoint) / levels));
    while (zeroPoint + HalfFloats.fromF16(s) * levels < max) {
      s = HalfFloats.nextF16Up(s);
    }
    return s;
  }

  static int code(float x, float zeroPoint, float scale, int bits) {
    if (scale == 0f) {
      return 0;
    }
    int q = Math.round((x - zeroPoint) / scale);
    return Math.max(0, Math.min((1 << bits) - 1, q));
  }

  /** Stores code number {@code index} of a run that starts at {@code base}. */
  static void put(MemorySegment block, long base, int index, int bits, int code) {
    long bit = (long) index * bits;
    long at = base + (bit >>> 3);
    int shift = (int) (bit & 7);
    int mask = ((1 << bits) - 1) << shift;
    int old = block.get(ValueLayout.JAVA_BYTE, at) & 0xff;
    block.set(ValueLayout.JAVA_BYTE, at, (byte) ((old & ~mask) | (code << shift)));
  }

  static int get(MemorySegment block, long base, int index, int bits) {
    long bit = (long) index * bits;
    int packed = block.get(ValueLayout.JAVA_BYTE, base + (bit >>> 3)) & 0xff;
    return (packed >>> (int) (bit & 7)) & ((1 << bits) - 1);
  }

  /**
   * Unpacks {@code count} codes starting at byte {@code base} (byte-aligned) into {@code
   * codes[0..count)} as floats.
   */
  static void unpack(MemorySegment block, long base, int count, int bits, float[] codes, int off) {
    int perByte = 8 / bits;
    int mask = (1 << bits) - 1;
    for (int i = 0, b = 0; i < count; b++) {
      int packed = block.get(ValueLayout.JAVA_BYTE, base + b) & 0xff;
      for (int k = 0; k < perByte && i < count; k++, i++) {
        codes[off + i] = (packed >>> (k * bits)) & mask;
      }
    }
  }
}
