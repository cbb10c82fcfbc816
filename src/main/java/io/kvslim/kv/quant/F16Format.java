package io.kvslim.kv.quant;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * IEEE half precision, 2 bytes per value, round to nearest even: llama.cpp's default KV type and
 * the baseline of every compression ratio (DESIGN.md §3.2). The fused kernels widen one row at a
 * time into the scratch (the JIT turns that loop into {@code vcvtph2ps}) and run the float Vector
 * API loop on it.
 */
public final class F16Format extends RowFormat {
  static final ValueLayout.OfShort SHORT_LE =
      ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

  F16Format() {}

  @Override
  public String name() {
    return "f16";
  }

  @Override
  public int rowBytes(int headDim) {
    return 2 * headDim;
  }

  @Override
  protected int rowScaleBytes(int headDim) {
    return 0;
  }

  @Override
  protected void encodeRow(float[] src, int srcOff, MemorySegment block, long offset, int headDim) {
    for (int j = 0; j < headDim; j++) {
      block.set(SHORT_LE, offset + 2L * j, HalfFloats.toF16(src[srcOff + j]));
    }
  }

  @Override
  protected void decodeRow(MemorySegment block, long offset, int headDim, float[] dst, int dstOff) {
    VectorKernels.halves(block, offset, headDim, dst, dstOff);
  }

  @Override
  protected boolean dotDecodesRow() {
    return true;
  }

  @Override
  protected float dotRow(
      MemorySegment block, long offset, int headDim, float[] q, int qOff, float[] work) {
    return VectorKernels.dotHalves(q, qOff, block, offset, headDim, work);
  }

  @Override
  protected void accumulateRow(
      MemorySegment block,
      long offset,
      int headDim,
      float weight,
      float[] acc,
      int accOff,
      float[] work) {
    VectorKernels.addWeightedHalves(roundToF16(weight), block, offset, acc, accOff, headDim, work);
  }

  /** Each slot is decoded once for all rows; each row then adds it as {@link #accumulateRow}. */
  @Override
  public void accumulateBlockRows(
      MemorySegment block,
      int count,
      int capacity,
      int headDim,
      float[] weights,
      int wOff,
      int wStride,
      int[] rows,
      int rowCount,
      float[] acc,
      int accStride,
      float[] work) {
    if (rowCount < 2) {
      super.accumulateBlockRows(
          block, count, capacity, headDim, weights, wOff, wStride, rows, rowCount, acc, accStride,
          work);
      return;
    }
    int rowBytes = rowBytes(headDim);
    for (int s = 0; s < count; s++) {
      boolean decoded = false;
      for (int i = 0; i < rowCount; i++) {
        int r = rows[i];
        float weight = weights[wOff + r * wStride + s];
        if (weight == 0f) {
          continue;
        }
        if (!decoded) {
          decodeRow(block, (long) s * rowBytes, headDim, work, 0);
          decoded = true;
        }
        AttentionKernels.addWeighted(roundToF16(weight), work, 0, acc, r * accStride, headDim);
      }
    }
  }

  @Override
  public boolean accumulatesProbabilities() {
    return true;
  }

  /** Rounds the weight to f16 as {@link #accumulate} does. */
  @Override
  public void accumulateReference(
      MemorySegment block, int slot, int capacity, int headDim, float weight, float[] acc) {
    super.accumulateReference(block, slot, capacity, headDim, roundToF16(weight), acc);
  }

  /**
   * The weight (a softmax probability) rounded to f16: llama.cpp's {@code KQV} product with f16
   * values converts the probabilities to f16 first ({@code vec_dot_type} of f16).
   */
  private static float roundToF16(float weight) {
    return Float.float16ToFloat(Float.floatToFloat16(weight));
  }

  /** llama.cpp converts the query to f16 before its f16 dot product ({@code vec_dot_type}). */
  @Override
  public void prepareQuery(float[] q, int qOff, int headDim, float[] dst, int dstOff) {
    for (int j = 0; j < headDim; j++) {
      dst[dstOff + j] = Float.float16ToFloat(Float.floatToFloat16(q[qOff + j]));
    }
  }
}
