package io.kvslim.kv.format;

import io.kvslim.ggml.BlockCodec;
import io.kvslim.ggml.Q8_1Codec;
import io.kvslim.kv.attention.AttentionKernels;
import io.kvslim.kv.attention.VectorKernels;
import java.lang.foreign.MemorySegment;

/**
 * The llama.cpp block formats (ggml {@code block_q8_0}, {@code block_q4_0}, ...): a row of {@code
 * headDim} values is {@code headDim / 32} consecutive blocks of 32 values, each read and written by
 * the type's {@link BlockCodec}, so a row is byte for byte as in ggml and can be compared with
 * llama.cpp's {@code -ctk/-ctv} caches. Rows are written with the quantizer llama.cpp's x86 CPU
 * backend writes its cache with ({@link BlockCodec#quantizeX86}: the reference one but for q8_0).
 *
 * <p>Scores are computed as llama.cpp's CPU {@code vec_dot} for these types does: the query is
 * first quantized to {@code q8_0} (for q8_0, q4_0, q5_0 keys) or {@code q8_1} (q4_1, q5_1: q8_0
 * plus {@code s = fp16(d·Σq)}) by {@link #prepareQuery}, then each 32-value block contributes its
 * integer dot product {@code Σ q_k·q_q} times both fp16 scales, plus {@code m_k·s_q} for the
 * formats with a minimum. The integer dot is computed in float lanes, exactly: every partial sum is
 * an integer below {@code 2^24} ({@code 32·127·127}), so any summation order gives the same value.
 *
 * <p>The weighted sum of values decodes one 32-value block at a time; formats with a cheap
 * in-register decoding (q8_0, q4_0) override it and the integer dot.
 */
public class GgmlBlockFormat extends RowFormat {
  /** Values per ggml block ({@code QK8_0}, {@code QK4_0}, ...). */
  public static final int BLOCK_VALUES = 32;

  private final String name;
  private final BlockCodec codec;

  GgmlBlockFormat(String name, BlockCodec codec) {
    if (codec.blockSize() != BLOCK_VALUES) {
      throw new IllegalArgumentException(codec.type() + " is not a 32-value block type");
    }
    this.name = name;
    this.codec = codec;
  }

  @Override
  public final String name() {
    return name;
  }

  /** The codec of this format's blocks. */
  public final BlockCodec codec() {
    return codec;
  }

  /** Bytes of one 32-value block, e.g. 34 for q8_0. */
  public final int typeBytes() {
    return codec.blockBytes();
  }

  /**
   * {@code Σ code_j · qCodes[qOff + j]} over the block's 32 values: an integer, exact in float.
   * Formats override it with an in-register decoding.
   */
  protected float integerDot(
      MemorySegment block, long offset, float[] qCodes, int qOff, float[] work) {
    codec.codes(block, offset, work, 0);
    return exactDot(qCodes, qOff, work, 0);
  }

  /** A dot product of 32 integer-valued floats whose partial sums stay below 2^24 (exact). */
  static float exactDot(float[] a, int aOff, float[] b, int bOff) {
    return VectorKernels.dot(a, aOff, b, bOff, BLOCK_VALUES);
  }

  /** {@code acc[accOff..+32) += weight * block}. */
  protected void accumulateBlock(
      MemorySegment block, long offset, float weight, float[] acc, int accOff, float[] work) {
    codec.dequantize(block, offset, work, 0);
    AttentionKernels.addWeighted(weight, work, 0, acc, accOff, BLOCK_VALUES);
  }

  /** Codes, then one scale per block, then one {@code s} per block (see {@link #prepareQuery}). */
  @Override
  public final int preparedQueryLength(int headDim) {
    return headDim + 2 * (headDim / BLOCK_VALUES);
  }

  /**
   * Quantizes the query as llama.cpp's x86 {@code quantize_row_q8_1} ({@link
   * Q8_1Codec#quantizeX86}, which has the codes and scale of its {@code quantize_row_q8_0}): per 32
   * values {@code d = amax/127}, {@code q_j = round(x_j·(127/amax))} with ties to even, then {@code
   * fp16(d)} and {@code s = fp16(d·Σq_j)}. Layout in {@code dst}: the {@code headDim} codes, the
   * {@code headDim/32} scales (as floats), the {@code headDim/32} sums.
   */
  @Override
  public final void prepareQuery(float[] q, int qOff, int headDim, float[] dst, int dstOff) {
    int blocks = headDim / BLOCK_VALUES;
    Q8_1Codec q8 = Q8_1Codec.INSTANCE;
    MemorySegment block = MemorySegment.ofArray(new byte[Q8_1Codec.BYTES]);
    for (int b = 0; b < blocks; b++) {
      q8.quantizeX86(q, qOff + b * BLOCK_VALUES, block, 0);
      q8.codes(block, 0, dst, dstOff + b * BLOCK_VALUES);
      dst[dstOff + headDim + b] = q8.d(block, 0);
      dst[dstOff + headDim + blocks + b] = q8.s(block, 0);
    }
  }

  /**
   * llama.cpp's scalar {@code ggml_vec_dot_qX_q8_Y} per row: integer sums in {@code int}, then
   * {@code sumf += sumi·(d_k·d_q) [+ m_k·s_q]} block after block.
   */
  @Override
  public final void dotsReference(
      MemorySegment block,
      int count,
      int capacity,
      int headDim,
      float[] q,
      int qOff,
      float[] scores) {
    float[] prepared = new float[preparedQueryLength(headDim)];
    prepareQuery(q, qOff, headDim, prepared, 0);
    float[] codes = new float[BLOCK_VALUES];
    int blocks = headDim / BLOCK_VALUES;
    for (int s = 0; s < count; s++) {
      long row = (long) s * rowBytes(headDim);
      float sum = 0f;
      for (int b = 0; b < blocks; b++) {
        long at = row + (long) b * typeBytes();
        codec.codes(block, at, codes, 0);
        int sumi = 0;
        for (int j = 0; j < BLOCK_VALUES; j++) {
          sumi += (int) codes[j] * (int) prepared[b * BLOCK_VALUES + j];
        }
        float term = sumi * (codec.d(block, at) * prepared[headDim + b]);
        if (codec.hasMinimum()) {
          term += codec.m(block, at) * prepared[headDim + blocks + b];
        }
        sum += term;
      }
      scores[s] = sum;
    }
  }

  @Override
  public final int rowBytes(int headDim) {
    return headDim / BLOCK_VALUES * typeBytes();
  }

  @Override
  protected final int rowScaleBytes(int headDim) {
    // the fp16 scale, and the fp16 minimum where there is one
    return headDim / BLOCK_VALUES * (codec.hasMinimum() ? 4 : 2);
  }

  @Override
  public final void checkHeadDim(int headDim) {
    if (headDim <= 0 || headDim % BLOCK_VALUES != 0) {
      throw new IllegalArgumentException(
          "format "
              + name()
              + " needs a head dimension that is a multiple of "
              + BLOCK_VALUES
              + ", got "
              + headDim);
    }
  }

  @Override
  protected final void encodeRow(
      float[] src, int srcOff, MemorySegment block, long offset, int headDim) {
    codec.quantizeRowX86(src, srcOff, headDim, block, offset);
  }

  @Override
  protected final void decodeRow(
      MemorySegment block, long offset, int headDim, float[] dst, int dstOff) {
    codec.dequantizeRow(block, offset, headDim, dst, dstOff);
  }

  @Override
  protected final float dotRow(
      MemorySegment block, long offset, int headDim, float[] q, int qOff, float[] work) {
    int blocks = headDim / BLOCK_VALUES;
    boolean minimum = codec.hasMinimum();
    float sum = 0f;
    for (int b = 0; b < blocks; b++) {
      long at = offset + (long) b * typeBytes();
      float sumi = integerDot(block, at, q, qOff + b * BLOCK_VALUES, work);
      float term = sumi * (codec.d(block, at) * q[qOff + headDim + b]);
      if (minimum) {
        term += codec.m(block, at) * q[qOff + headDim + blocks + b];
      }
      sum += term;
    }
    return sum;
  }

  @Override
  protected final void accumulateRow(
      MemorySegment block,
      long offset,
      int headDim,
      float weight,
      float[] acc,
      int accOff,
      float[] work) {
    for (int b = 0; b < headDim / BLOCK_VALUES; b++) {
      accumulateBlock(
          block, offset + (long) b * typeBytes(), weight, acc, accOff + b * BLOCK_VALUES, work);
    }
  }
}
