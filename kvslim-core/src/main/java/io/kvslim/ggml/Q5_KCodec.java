package io.kvslim.ggml;

import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;

/**
 * ggml {@code block_q5_K}: super-blocks of 256 values in 176 bytes: fp16 {@code d}, fp16 {@code
 * dmin}, 12 bytes of packed 6-bit scales and mins (as {@link Q4_KCodec}), 32 bytes {@code qh} of
 * fifth bits, then 128 bytes {@code qs}. Chunk {@code c} (64 values) reads {@code qs[32c ..
 * 32c+32)}; value {@code 64c + l} is the low nibble of {@code qs[32c+l]} plus bit {@code 2c} of
 * {@code qh[l]} as 16, value {@code 64c + 32 + l} the high nibble plus bit {@code 2c+1}. Value:
 * {@code d·scale[s]·q − dmin·min[s]}, as ggml's {@code dequantize_row_q5_K}
 * (ggml/src/ggml-quants.c). kvslim reads these weights; it does not write them.
 */
public final class Q5_KCodec extends BlockCodec {
  public static final int BLOCK = 256;
  public static final int BYTES = 176;

  /** Offset of {@code dmin} (the scale {@code d} is at 0). */
  public static final int DMIN = Q4_KCodec.DMIN;

  /** Offset of the 12 bytes of packed scales and mins. */
  public static final int SCALES = Q4_KCodec.SCALES;

  /** Offset of the fifth bits {@code qh}. */
  public static final int QH = 16;

  /** Offset of the nibbles {@code qs}. */
  public static final int QS = 48;

  public static final Q5_KCodec INSTANCE = new Q5_KCodec();

  private Q5_KCodec() {
    super(GgmlType.Q5_K, 0, false, -1);
  }

  @Override
  public boolean quantizes() {
    return false;
  }

  /** The super-block's scale of the mins. */
  public float dmin(MemorySegment src, long block) {
    return LittleEndian.half(src, block + DMIN);
  }

  /** The 5-bit codes {@code q} (0..31), value by value. */
  @Override
  public void codes(MemorySegment src, long block, float[] dst, int dstOff) {
    for (int s = 0; s < 8; s++) {
      int shift = 4 * (s & 1);
      for (int l = 0; l < 32; l++) {
        int nibble = (LittleEndian.u8(src, block + QS + 32 * (s >> 1) + l) >>> shift) & 0xF;
        int fifth = (LittleEndian.u8(src, block + QH + l) >>> s) & 1;
        dst[dstOff + 32 * s + l] = nibble | fifth << 4;
      }
    }
  }

  @Override
  public void dequantize(MemorySegment src, long block, float[] dst, int dstOff) {
    codes(src, block, dst, dstOff);
    Q4_KCodec.scaleSubBlocks(src, block, dst, dstOff);
  }
}
