package io.kvslim.ggml;

import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;

/**
 * ggml {@code block_q6_K}: super-blocks of 256 values in 210 bytes: 128 bytes {@code ql} (low
 * nibbles), 64 bytes {@code qh} (2-bit high parts), 16 signed 8-bit {@code scales} (one per 16
 * values), then fp16 {@code d}. Each half {@code n} of 128 values reads {@code ql[64n ..]}, {@code
 * qh[32n ..]}; for {@code l < 32}, values {@code l, l+32, l+64, l+96} take the low nibble of {@code
 * ql[l]}, the low nibble of {@code ql[l+32]}, the high nibble of {@code ql[l]}, the high nibble of
 * {@code ql[l+32]}, with bits 0-1, 2-3, 4-5, 6-7 of {@code qh[l]} on top; value {@code i} is {@code
 * d·scales[i/16]·(q − 32)}, as ggml's {@code dequantize_row_q6_K} (ggml/src/ggml-quants.c). kvslim
 * reads these weights; it does not write them.
 */
public final class Q6_KCodec extends BlockCodec {
  public static final int BLOCK = 256;
  public static final int BYTES = 210;

  /** Offset of the low nibbles {@code ql}. */
  public static final int QL = 0;

  /** Offset of the high parts {@code qh}. */
  public static final int QH = 128;

  /** Offset of the 16 signed scales. */
  public static final int SCALES = 192;

  /** Offset of the scale {@code d}. */
  public static final int D = 208;

  public static final Q6_KCodec INSTANCE = new Q6_KCodec();

  private Q6_KCodec() {
    super(GgmlType.Q6_K, D, false, -1);
  }

  @Override
  public boolean quantizes() {
    return false;
  }

  /** The signed scale of values {@code 16·group .. 16·group + 16}. */
  public int scale(MemorySegment src, long block, int group) {
    return LittleEndian.s8(src, block + SCALES + group);
  }

  /** The centred codes {@code q − 32}, value by value. */
  @Override
  public void codes(MemorySegment src, long block, float[] dst, int dstOff) {
    for (int n = 0; n < 2; n++) {
      long ql = block + QL + 64 * n;
      long qh = block + QH + 32 * n;
      int o = dstOff + 128 * n;
      for (int l = 0; l < 32; l++) {
        int a = LittleEndian.u8(src, ql + l);
        int b = LittleEndian.u8(src, ql + 32 + l);
        int h = LittleEndian.u8(src, qh + l);
        dst[o + l] = ((a & 0xF) | (h & 3) << 4) - 32;
        dst[o + 32 + l] = ((b & 0xF) | ((h >> 2) & 3) << 4) - 32;
        dst[o + 64 + l] = ((a >> 4) | ((h >> 4) & 3) << 4) - 32;
        dst[o + 96 + l] = ((b >> 4) | ((h >> 6) & 3) << 4) - 32;
      }
    }
  }

  @Override
  public void dequantize(MemorySegment src, long block, float[] dst, int dstOff) {
    codes(src, block, dst, dstOff);
    float d = d(src, block);
    for (int g = 0; g < 16; g++) {
      float scale = d * scale(src, block, g);
      for (int i = dstOff + 16 * g; i < dstOff + 16 * g + 16; i++) {
        dst[i] = scale * dst[i];
      }
    }
  }
}
