package io.kvslim.ggml;

import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;

/**
 * ggml {@code block_q8_1}, the form llama.cpp converts activations (and queries) to before a dot
 * product with q4_1 or q5_1 blocks: 32 values in 36 bytes, fp16 {@code d}, fp16 {@code s = d·Σqs},
 * then 32 signed bytes {@code qs}; value {@code j} is {@code qs[j]·d}. Two quantizers: ggml's
 * reference ({@link #quantize}) and the x86 one the CPU backend runs ({@link #quantizeX86}).
 */
public final class Q8_1Codec extends BlockCodec {
  public static final int BLOCK = 32;
  public static final int BYTES = 36;

  /** Offset of {@code s} (the scale {@code d} is at 0). */
  public static final int S = 2;

  /** Offset of the codes {@code qs}. */
  public static final int QS = 4;

  public static final Q8_1Codec INSTANCE = new Q8_1Codec();

  private Q8_1Codec() {
    super(GgmlType.Q8_1, 0, false, -1);
  }

  /**
   * ggml's {@code quantize_row_q8_1_ref} (ggml/src/ggml-quants.c): the codes and {@code d} of
   * {@code quantize_row_q8_0_ref}, and {@code s = fp16(Σqs·d)}.
   */
  @Override
  public void quantize(float[] x, int xOff, MemorySegment dst, long block) {
    float d = Q8_0Codec.quantizeCodes(x, xOff, dst, block + QS);
    int sum = 0;
    for (int j = 0; j < BLOCK; j++) {
      sum += LittleEndian.s8(dst, block + QS + j);
    }
    LittleEndian.putHalf(dst, block, d);
    LittleEndian.putHalf(dst, block + S, sum * d);
  }

  /**
   * llama.cpp's x86 {@code quantize_row_q8_1} (ggml/src/ggml-cpu/arch/x86/quants.c, AVX path),
   * which also gives {@code quantize_row_q8_0}'s codes and scale: {@code d = amax/127}, codes
   * {@code round(x_j·(127/amax))} with ties to even ({@code _mm256_round_ps}), {@code s =
   * fp16(d·Σqs)}. It differs from the reference in the reciprocal and in the ties.
   */
  @Override
  public void quantizeX86(float[] x, int xOff, MemorySegment dst, long block) {
    float d = Q8_0Codec.quantizeCodesX86(x, xOff, dst, block + QS);
    int sum = 0;
    for (int j = 0; j < BLOCK; j++) {
      sum += LittleEndian.s8(dst, block + QS + j);
    }
    LittleEndian.putHalf(dst, block, d);
    LittleEndian.putHalf(dst, block + S, d * sum);
  }

  /** The stored {@code s = fp16(d·Σqs)}. */
  public float s(MemorySegment src, long block) {
    return LittleEndian.half(src, block + S);
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
