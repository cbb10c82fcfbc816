package io.kvslim.ggml;

import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;

/**
 * ggml {@code block_q4_K}: super-blocks of 256 values in 144 bytes: fp16 {@code d}, fp16 {@code
 * dmin}, 12 bytes packing eight 6-bit scales and eight 6-bit mins ({@link #scale}, {@link #min}),
 * then 128 bytes {@code qs}. The super-block is four chunks of 64: chunk {@code c} reads {@code
 * qs[32c .. 32c+32)}; its low nibbles are sub-block {@code 2c} (values {@code 64c .. 64c+32)}), its
 * high nibbles sub-block {@code 2c+1}. Value {@code i} of sub-block {@code s} is {@code
 * d·scale[s]·q − dmin·min[s]}, as ggml's {@code dequantize_row_q4_K} (ggml/src/ggml-quants.c).
 * kvslim reads these weights; it does not write them.
 */
public final class Q4_KCodec extends BlockCodec {
  public static final int BLOCK = 256;
  public static final int BYTES = 144;

  /** Offset of {@code dmin} (the scale {@code d} is at 0). */
  public static final int DMIN = 2;

  /** Offset of the 12 bytes of packed scales and mins. */
  public static final int SCALES = 4;

  /** Offset of the nibbles {@code qs}. */
  public static final int QS = 16;

  public static final Q4_KCodec INSTANCE = new Q4_KCodec();

  private Q4_KCodec() {
    super(GgmlType.Q4_K, 0, false, -1);
  }

  @Override
  public boolean quantizes() {
    return false;
  }

  /** The super-block's scale of the mins. */
  public float dmin(MemorySegment src, long block) {
    return LittleEndian.half(src, block + DMIN);
  }

  /**
   * The 6-bit scale of sub-block {@code s} (0..7) from the 12 packed bytes at {@code scales}:
   * sub-blocks 0..3 keep theirs in the low 6 bits of bytes 0..3; sub-blocks 4..7 in the low nibble
   * of bytes 8..11 plus the top 2 bits of bytes 0..3 (ggml's {@code get_scale_min_k4}).
   */
  public static int scale(MemorySegment src, long scales, int s) {
    return scale(src.get(LittleEndian.LONG, scales), src.get(LittleEndian.INT, scales + 8), s);
  }

  /**
   * The 6-bit min of sub-block {@code s}: sub-blocks 0..3 in the low 6 bits of bytes 4..7; 4..7 in
   * the high nibble of bytes 8..11 plus the top 2 bits of bytes 4..7.
   */
  public static int min(MemorySegment src, long scales, int s) {
    return min(src.get(LittleEndian.LONG, scales), src.get(LittleEndian.INT, scales + 8), s);
  }

  /** {@link #scale} from the packed bytes read as {@code bytes0to7} and {@code bytes8to11}. */
  public static int scale(long bytes0to7, int bytes8to11, int s) {
    return s < 4
        ? (int) (bytes0to7 >>> 8 * s) & 63
        : (bytes8to11 >>> 8 * (s - 4)) & 0xF | ((int) (bytes0to7 >>> 8 * (s - 4) + 6) & 3) << 4;
  }

  /** {@link #min} from the packed bytes read as {@code bytes0to7} and {@code bytes8to11}. */
  public static int min(long bytes0to7, int bytes8to11, int s) {
    return s < 4
        ? (int) (bytes0to7 >>> 8 * (s + 4)) & 63
        : (bytes8to11 >>> 8 * (s - 4) + 4) & 0xF | ((int) (bytes0to7 >>> 8 * s + 6) & 3) << 4;
  }

  /** The nibbles {@code q} (0..15), value by value. */
  @Override
  public void codes(MemorySegment src, long block, float[] dst, int dstOff) {
    for (int c = 0; c < 4; c++) {
      for (int l = 0; l < 32; l++) {
        int b = LittleEndian.u8(src, block + QS + 32 * c + l);
        dst[dstOff + 64 * c + l] = b & 0xF;
        dst[dstOff + 64 * c + 32 + l] = b >>> 4;
      }
    }
  }

  @Override
  public void dequantize(MemorySegment src, long block, float[] dst, int dstOff) {
    codes(src, block, dst, dstOff);
    scaleSubBlocks(src, block, dst, dstOff);
  }

  /**
   * Codes to values for q4_K and q5_K (same header): value {@code i} of sub-block {@code s} becomes
   * {@code (d·scale[s])·q − dmin·min[s]}.
   */
  static void scaleSubBlocks(MemorySegment src, long block, float[] values, int off) {
    float d = LittleEndian.half(src, block);
    float dmin = LittleEndian.half(src, block + DMIN);
    for (int s = 0; s < 8; s++) {
      float scale = d * scale(src, block + SCALES, s);
      float min = dmin * min(src, block + SCALES, s);
      for (int l = 0; l < 32; l++) {
        values[off + 32 * s + l] = scale * values[off + 32 * s + l] - min;
      }
    }
  }
}
