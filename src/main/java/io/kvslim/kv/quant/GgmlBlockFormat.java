package io.kvslim.kv.quant;

import java.lang.foreign.MemorySegment;

/**
 * Base of the llama.cpp block formats (ggml {@code block_q8_0}, {@code block_q4_0}, ...): a row of
 * {@code headDim} values is {@code headDim / 32} consecutive blocks of 32 values, each laid out
 * byte for byte as in ggml so a row can be compared with llama.cpp's {@code -ctk/-ctv} caches.
 *
 * <p>The default fused kernels decode one 32-value block into the scratch and run the float Vector
 * API loop on it; formats with a cheap in-register decoding override them.
 */
public abstract class GgmlBlockFormat extends RowFormat {
  /** Values per ggml block ({@code QK8_0}, {@code QK4_0}, ...). */
  public static final int BLOCK_VALUES = 32;

  /** Bytes of one 32-value block, e.g. 34 for q8_0. */
  public abstract int typeBytes();

  /** Of {@link #typeBytes}, the fp16 scale and minimum bytes. */
  protected abstract int typeScaleBytes();

  /** Quantizes {@code x[xOff..+32)} into the block at {@code offset}, as ggml's reference. */
  protected abstract void encodeBlock(float[] x, int xOff, MemorySegment block, long offset);

  /** Dequantizes the block at {@code offset} into {@code dst[dstOff..+32)}, as ggml does. */
  protected abstract void decodeBlock(MemorySegment block, long offset, float[] dst, int dstOff);

  /** {@code q[qOff..+32) · block}. */
  protected float dotBlock(MemorySegment block, long offset, float[] q, int qOff, float[] work) {
    decodeBlock(block, offset, work, 0);
    return VectorKernels.dot(q, qOff, work, 0, BLOCK_VALUES);
  }

  /** {@code acc[accOff..+32) += weight * block}. */
  protected void accumulateBlock(
      MemorySegment block, long offset, float weight, float[] acc, int accOff, float[] work) {
    decodeBlock(block, offset, work, 0);
    VectorKernels.addScaled(weight, work, 0, acc, accOff, BLOCK_VALUES);
  }

  @Override
  public final int rowBytes(int headDim) {
    return headDim / BLOCK_VALUES * typeBytes();
  }

  @Override
  protected final int rowScaleBytes(int headDim) {
    return headDim / BLOCK_VALUES * typeScaleBytes();
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
    for (int b = 0; b < headDim / BLOCK_VALUES; b++) {
      encodeBlock(src, srcOff + b * BLOCK_VALUES, block, offset + (long) b * typeBytes());
    }
  }

  @Override
  protected final void decodeRow(
      MemorySegment block, long offset, int headDim, float[] dst, int dstOff) {
    for (int b = 0; b < headDim / BLOCK_VALUES; b++) {
      decodeBlock(block, offset + (long) b * typeBytes(), dst, dstOff + b * BLOCK_VALUES);
    }
  }

  @Override
  protected final float dotRow(
      MemorySegment block, long offset, int headDim, float[] q, int qOff, float[] work) {
    float sum = 0f;
    for (int b = 0; b < headDim / BLOCK_VALUES; b++) {
      sum += dotBlock(block, offset + (long) b * typeBytes(), q, qOff + b * BLOCK_VALUES, work);
    }
    return sum;
  }

  @Override
  protected final void accumulateRow(
      MemorySegment block, long offset, int headDim, float weight, float[] acc, float[] work) {
    for (int b = 0; b < headDim / BLOCK_VALUES; b++) {
      accumulateBlock(block, offset + (long) b * typeBytes(), weight, acc, b * BLOCK_VALUES, work);
    }
  }

  static short scaleBits(MemorySegment block, long offset) {
    return block.get(F16Format.SHORT_LE, offset);
  }

  static float scale(MemorySegment block, long offset) {
    return HalfFloats.fromF16(block.get(F16Format.SHORT_LE, offset));
  }

  static void putScale(MemorySegment block, long offset, float value) {
    block.set(F16Format.SHORT_LE, offset, HalfFloats.toF16(value));
  }
}
