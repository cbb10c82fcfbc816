package io.kvslim.kv.format;

import io.kvslim.kv.attention.AttentionKernels;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * Full precision: 4 bytes per value, little-endian. This is the exactness reference of the paged
 * cache, so its score and weighted sum are {@link AttentionKernels}' fixed-order ones: the same
 * arithmetic as {@code DenseLayerKv}, which makes a paged F32 cache equal the dense one bit for
 * bit.
 */
public final class F32Format extends RowFormat {
  public static final ValueLayout.OfFloat FLOAT_LE =
      ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

  F32Format() {}

  @Override
  public String name() {
    return "f32";
  }

  @Override
  public int rowBytes(int headDim) {
    return 4 * headDim;
  }

  @Override
  protected int rowScaleBytes(int headDim) {
    return 0;
  }

  @Override
  protected void encodeRow(float[] src, int srcOff, MemorySegment block, long offset, int headDim) {
    for (int j = 0; j < headDim; j++) {
      block.set(FLOAT_LE, offset + 4L * j, src[srcOff + j]);
    }
  }

  @Override
  protected void decodeRow(MemorySegment block, long offset, int headDim, float[] dst, int dstOff) {
    for (int j = 0; j < headDim; j++) {
      dst[dstOff + j] = block.get(FLOAT_LE, offset + 4L * j);
    }
  }

  @Override
  protected float dotRow(
      MemorySegment block, long offset, int headDim, float[] q, int qOff, float[] work) {
    return AttentionKernels.dot(q, qOff, block, offset, headDim);
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
    AttentionKernels.addWeighted(weight, block, offset, acc, accOff, headDim);
  }

  // The block loops below repeat RowFormat's with the kernels inlined: the per-row calls there are
  // shared by every format, so the JIT cannot inline them once several formats are in use.

  @Override
  public void scores(
      MemorySegment block,
      int count,
      int capacity,
      int headDim,
      float[] prepared,
      int pOff,
      float[] scores,
      float[] work) {
    AttentionKernels.dotRows(
        prepared, pOff, block, 0, 4L * headDim, count, headDim, scores, 0, work);
  }

  @Override
  public void accumulateBlock(
      MemorySegment block,
      int count,
      int capacity,
      int headDim,
      float[] weights,
      int wOff,
      float[] acc,
      int accOff,
      float[] work) {
    AttentionKernels.addWeightedRows(
        weights, wOff, block, 0, 4L * headDim, count, acc, accOff, headDim);
  }
}
