package io.kvslim.ggml;

import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;

/**
 * One ggml block type, the single place kvslim reads and writes it: its layout ({@link #blockSize}
 * values in {@link #blockBytes} bytes, field offsets as constants of each codec), the scalar
 * reference quantizer (ggml's {@code quantize_row_*_ref}), the dequantizer ({@code
 * dequantize_row_*}), the integer codes behind the values, and a scalar dot product with floats.
 * Weight matrices ({@code io.kvslim.tensor}), llama.cpp's activation conversion and the KV cache's
 * block formats ({@code io.kvslim.kv.format}) all use these; their vector kernels keep their own
 * fused loops but take the layout from here, and are tested against these scalar paths.
 *
 * <p>Every value of a block is {@code scale · code + min} for an integer code, with one scale (and,
 * for some types, one minimum) per block or per sub-block: {@link #codes} gives the codes, already
 * centred for the types without a minimum ({@code q − 8} for q4_0), so that {@link #dequantize} is
 * exactly {@code d · code (+ m)} with ggml's operation order.
 *
 * <p>Codecs are stateless singletons ({@code Q4_0Codec.INSTANCE}, or {@link #of}); a block is
 * addressed by a segment and the byte offset where it starts.
 */
public abstract class BlockCodec {
  private final GgmlType type;
  private final int blockSize;
  private final int blockBytes;
  private final int dOffset;
  private final boolean floatScale;
  private final int mOffset;

  /**
   * A codec whose blocks keep the scale {@code d} at {@code dOffset} (fp16, or float32 when {@code
   * floatScale}) and the fp16 minimum {@code m} at {@code mOffset} ({@code −1}: none). The scale
   * fields are data rather than overridden methods, so that generic code (the KV formats, the
   * activation dot products) reads them without a virtual call per block.
   */
  BlockCodec(GgmlType type, int dOffset, boolean floatScale, int mOffset) {
    this.type = type;
    this.blockSize = type.blockSize();
    this.blockBytes = type.typeSize();
    this.dOffset = dOffset;
    this.floatScale = floatScale;
    this.mOffset = mOffset;
  }

  /** The codec of {@code type}, or {@code null} for the types that are not blocks (F32, F16...). */
  public static BlockCodec of(GgmlType type) {
    return switch (type) {
      case Q8_0 -> Q8_0Codec.INSTANCE;
      case Q8_1 -> Q8_1Codec.INSTANCE;
      case Q4_0 -> Q4_0Codec.INSTANCE;
      case Q4_1 -> Q4_1Codec.INSTANCE;
      case Q5_0 -> Q5_0Codec.INSTANCE;
      case Q5_1 -> Q5_1Codec.INSTANCE;
      case Q4_K -> Q4_KCodec.INSTANCE;
      case Q5_K -> Q5_KCodec.INSTANCE;
      case Q6_K -> Q6_KCodec.INSTANCE;
      case Q8_K -> Q8_KCodec.INSTANCE;
      default -> null;
    };
  }

  public final GgmlType type() {
    return type;
  }

  /** Values per block ({@code QK4_0}, {@code QK_K}, ...). */
  public final int blockSize() {
    return blockSize;
  }

  /** Bytes per block ({@code sizeof(block_q4_0)}, ...). */
  public final int blockBytes() {
    return blockBytes;
  }

  /** Whether kvslim has this type's reference quantizer (it reads K-quant weights only). */
  public boolean quantizes() {
    return true;
  }

  /**
   * Quantizes {@code x[xOff..+blockSize)} into the block at {@code dst[block..]}, byte for byte as
   * ggml's {@code quantize_row_*_ref}.
   *
   * @throws UnsupportedOperationException when {@link #quantizes} is false
   */
  public void quantize(float[] x, int xOff, MemorySegment dst, long block) {
    throw new UnsupportedOperationException(
        "kvslim reads " + type + " blocks but has no quantizer for them");
  }

  /**
   * Quantizes as llama.cpp's CPU backend does on x86-64 (the type's {@code from_float}, which its
   * KV-cache writes and its conversion of queries and activations run): the reference quantizer
   * ({@link #quantize}) for every type but q8_0 and q8_1, whose AVX quantizers
   * (ggml/src/ggml-cpu/arch/x86/quants.c) multiply by {@code 127/amax} and round halves to even.
   */
  public void quantizeX86(float[] x, int xOff, MemorySegment dst, long block) {
    quantize(x, xOff, dst, block);
  }

  /**
   * The values of the block at {@code src[block..]} into {@code dst[dstOff..+blockSize)}, as ggml's
   * {@code dequantize_row_*}: {@code d·code}, {@code d·code + m} for the types with a minimum, and
   * per sub-block scales for the K-quants.
   */
  public abstract void dequantize(MemorySegment src, long block, float[] dst, int dstOff);

  /** The block's integer codes, as floats (exact), into {@code dst[dstOff..+blockSize)}. */
  public abstract void codes(MemorySegment src, long block, float[] dst, int dstOff);

  /** The block's scale {@code d} (the super-block scale for K-quants). */
  public final float d(MemorySegment src, long block) {
    return floatScale
        ? src.get(LittleEndian.FLOAT, block + dOffset)
        : LittleEndian.half(src, block + dOffset);
  }

  /** Whether the blocks store a minimum {@code m} (q4_1, q5_1): values are {@code d·q + m}. */
  public final boolean hasMinimum() {
    return mOffset >= 0;
  }

  /** The block's minimum {@code m}, for the types that have one ({@link #hasMinimum}). */
  public final float m(MemorySegment src, long block) {
    if (mOffset < 0) {
      throw new UnsupportedOperationException(type + " blocks have no minimum");
    }
    return LittleEndian.half(src, block + mOffset);
  }

  /**
   * The scalar reference dot product of {@code n} values (whole blocks) from {@code src[offset..]}
   * with {@code x[xOff..+n)}, the reference the weight matrices' vector kernels are tested against.
   * By default {@code Σ w_i·x_i} over the dequantized values in index order; q8_0, q4_0 and q5_0
   * instead add {@code d·Σ code·x} block by block, q4_1 and q5_1 {@code (d·q + m)·x} value by value
   * (their loops decode in place).
   */
  public float dot(MemorySegment src, long offset, int n, float[] x, int xOff) {
    float[] values = new float[blockSize];
    float sum = 0f;
    int blocks = blocks(n);
    for (int b = 0; b < blocks; b++) {
      dequantize(src, offset + (long) b * blockBytes, values, 0);
      for (int i = 0; i < blockSize; i++) {
        sum += values[i] * x[xOff + b * blockSize + i];
      }
    }
    return sum;
  }

  /** {@link #quantize} over {@code n} values (a multiple of the block) into consecutive blocks. */
  public final void quantizeRow(float[] x, int xOff, int n, MemorySegment dst, long offset) {
    int blocks = blocks(n);
    for (int b = 0; b < blocks; b++) {
      quantize(x, xOff + b * blockSize, dst, offset + (long) b * blockBytes);
    }
  }

  /**
   * {@link #quantizeX86} over {@code n} values (a multiple of the block) into consecutive blocks.
   */
  public final void quantizeRowX86(float[] x, int xOff, int n, MemorySegment dst, long offset) {
    int blocks = blocks(n);
    for (int b = 0; b < blocks; b++) {
      quantizeX86(x, xOff + b * blockSize, dst, offset + (long) b * blockBytes);
    }
  }

  /** {@link #dequantize} of {@code n} values (a multiple of the block) from consecutive blocks. */
  public final void dequantizeRow(MemorySegment src, long offset, int n, float[] dst, int dstOff) {
    int blocks = blocks(n);
    for (int b = 0; b < blocks; b++) {
      dequantize(src, offset + (long) b * blockBytes, dst, dstOff + b * blockSize);
    }
  }

  /** The blocks in a row of {@code n} values, which must be a multiple of the block. */
  final int blocks(int n) {
    if (n % blockSize != 0) {
      throw new IllegalArgumentException(
          type + " needs a multiple of " + blockSize + " values, got " + n);
    }
    return n / blockSize;
  }

  /** C's {@code roundf}: to nearest, halves away from zero ({@link Math#round} rounds them up). */
  public static int roundf(float v) {
    // |v| + 0.5 is exact in double for every float
    double r = Math.floor(Math.abs((double) v) + 0.5);
    return (int) (v < 0 ? -r : r);
  }

  /** ggml's {@code nearest_int}: to nearest, halves to even (its float magic-number trick). */
  public static int nearestInt(float v) {
    return (int) Math.rint(v);
  }

  /**
   * The value of largest magnitude in {@code x[xOff..+n)}, sign kept, the first one on ties (0 when
   * all are 0): the extreme that q4_0, q5_0 and q8_K scale by.
   */
  static float signedMax(float[] x, int xOff, int n) {
    float amax = 0f;
    float max = 0f;
    for (int j = 0; j < n; j++) {
      float v = x[xOff + j];
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    return max;
  }

  /**
   * The scale of q4_0 and q5_0: {@code d = max/divisor} for the value {@code max} of largest
   * magnitude in {@code x[xOff..+32)}, stored as the block's fp16 scale; returns {@code 1/d} (0
   * when {@code d} is 0), which the codes are computed with.
   */
  static float putSignedScale(float[] x, int xOff, float divisor, MemorySegment dst, long block) {
    float d = signedMax(x, xOff, 32) / divisor;
    LittleEndian.putHalf(dst, block, d);
    return d != 0f ? 1f / d : 0f;
  }

  /**
   * The scale and minimum of q4_1 and q5_1: {@code d = (max − min)/levels} over {@code
   * x[xOff..+32)} stored as the block's fp16 scale, {@code min} as the fp16 at {@code mAt}; returns
   * {@code 1/d} (0 when {@code d} is 0).
   */
  static float putScaleAndMin(
      float[] x, int xOff, float min, float levels, MemorySegment dst, long block, long mAt) {
    float d = (max(x, xOff, 32) - min) / levels;
    LittleEndian.putHalf(dst, block, d);
    LittleEndian.putHalf(dst, mAt, min);
    return d != 0f ? 1f / d : 0f;
  }

  /** The smallest of {@code x[xOff..+n)} (ggml's {@code min} loop from {@code FLT_MAX}). */
  static float min(float[] x, int xOff, int n) {
    float min = Float.MAX_VALUE;
    for (int j = 0; j < n; j++) {
      if (x[xOff + j] < min) {
        min = x[xOff + j];
      }
    }
    return min;
  }

  /** The largest of {@code x[xOff..+n)} (ggml's {@code max} loop from {@code -FLT_MAX}). */
  static float max(float[] x, int xOff, int n) {
    float max = -Float.MAX_VALUE;
    for (int j = 0; j < n; j++) {
      if (x[xOff + j] > max) {
        max = x[xOff + j];
      }
    }
    return max;
  }

  /**
   * The values {@code (q_j − offset)·d + m} of a 32-value block whose 16 bytes at {@code qs} hold
   * code {@code q_j} in the low nibble of byte {@code j} and {@code q_{j+16}} in its high nibble.
   * With {@code d = 1}, {@code m = −0} they are the codes; {@code m = −0} is how the types without
   * a minimum pass none, as adding −0 leaves every value, −0 included, unchanged.
   */
  static void nibbles(
      MemorySegment src, long qs, int offset, float d, float m, float[] dst, int dstOff) {
    for (int j = 0; j < 16; j++) {
      int b = LittleEndian.u8(src, qs + j);
      dst[dstOff + j] = ((b & 0x0F) - offset) * d + m;
      dst[dstOff + 16 + j] = ((b >>> 4) - offset) * d + m;
    }
  }

  /**
   * As {@link #nibbles} for 5-bit codes: bit 4 of code {@code j} is bit {@code j} of the
   * little-endian word at {@code qh}.
   */
  static void fiveBits(
      MemorySegment src, long qh, long qs, int offset, float d, float m, float[] dst, int dstOff) {
    int high = src.get(LittleEndian.INT, qh);
    for (int j = 0; j < 16; j++) {
      int b = LittleEndian.u8(src, qs + j);
      dst[dstOff + j] = (((b & 0x0F) | ((high >>> j) & 1) << 4) - offset) * d + m;
      dst[dstOff + 16 + j] = (((b >>> 4) | ((high >>> (j + 16)) & 1) << 4) - offset) * d + m;
    }
  }

  /**
   * Code {@code j} of a 5-bit block, for loops that take the values one by one: as {@link
   * #fiveBits}, with the fifth-bit word already read into {@code qh}.
   */
  static int fiveBit(MemorySegment src, int qh, long qs, int j) {
    int b = LittleEndian.u8(src, qs + (j & 15));
    return (j < 16 ? b & 0x0F : b >>> 4) | ((qh >>> j) & 1) << 4;
  }

  /**
   * Stores the low nibbles of codes {@code lo} (value {@code j}) and {@code hi} (value {@code j +
   * 16}) in byte {@code j} at {@code qs}; returns their fifth bits placed for the {@code qh} word.
   */
  static int putFiveBits(MemorySegment dst, long qs, int j, int lo, int hi) {
    LittleEndian.putByte(dst, qs + j, (lo & 0x0F) | (hi & 0x0F) << 4);
    return ((lo >>> 4) & 1) << j | ((hi >>> 4) & 1) << (j + 16);
  }

  /** The values {@code q_j·d} of {@code n} signed byte codes at {@code at} (d = 1: the codes). */
  static void signedBytes(MemorySegment src, long at, int n, float d, float[] dst, int dstOff) {
    for (int j = 0; j < n; j++) {
      dst[dstOff + j] = LittleEndian.s8(src, at + j) * d;
    }
  }
}
