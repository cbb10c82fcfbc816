package io.kvslim.kv.format;

import io.kvslim.kv.attention.VectorKernels;
import java.lang.foreign.MemorySegment;

/**
 * Base of the per-token formats: a block is {@code capacity} rows of {@link #rowBytes} bytes, slot
 * after slot, so a row can be written, read and moved on its own.
 */
public abstract class RowFormat implements KvFormat {

  /** Bytes of one token's row of {@code headDim} values. */
  public abstract int rowBytes(int headDim);

  /** Of {@link #rowBytes}, the scale and zero-point bytes. */
  protected abstract int rowScaleBytes(int headDim);

  protected abstract void encodeRow(
      float[] src, int srcOff, MemorySegment block, long offset, int headDim);

  protected abstract void decodeRow(
      MemorySegment block, long offset, int headDim, float[] dst, int dstOff);

  /** The score of the row at {@code offset} with a query prepared by {@link #prepareQuery}. */
  protected abstract float dotRow(
      MemorySegment block, long offset, int headDim, float[] q, int qOff, float[] work);

  /** {@code acc[accOff..+headDim) += weight · row}. */
  protected abstract void accumulateRow(
      MemorySegment block,
      long offset,
      int headDim,
      float weight,
      float[] acc,
      int accOff,
      float[] work);

  @Override
  public final boolean perToken() {
    return true;
  }

  @Override
  public final long blockBytes(int capacity, int headDim) {
    return (long) capacity * rowBytes(headDim);
  }

  @Override
  public final long scaleBytes(int capacity, int headDim) {
    return (long) capacity * rowScaleBytes(headDim);
  }

  @Override
  public void encode(
      float[] src,
      int srcOff,
      int srcStride,
      int count,
      MemorySegment block,
      int firstSlot,
      int capacity,
      int headDim) {
    int rowBytes = rowBytes(headDim);
    for (int t = 0; t < count; t++) {
      encodeRow(src, srcOff + t * srcStride, block, (long) (firstSlot + t) * rowBytes, headDim);
    }
  }

  @Override
  public final void decode(
      MemorySegment block, int slot, int capacity, int headDim, float[] dst, int dstOff) {
    decodeRow(block, (long) slot * rowBytes(headDim), headDim, dst, dstOff);
  }

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
    int rowBytes = rowBytes(headDim);
    for (int s = 0; s < count; s++) {
      scores[s] = dotRow(block, (long) s * rowBytes, headDim, prepared, pOff, work);
    }
  }

  /**
   * True when {@link #dotRow} is {@link #decodeRow} followed by {@code VectorKernels.dot(q,
   * decoded)}: {@link #scoresRows} then decodes each row once for all queries.
   */
  protected boolean dotDecodesRow() {
    return false;
  }

  @Override
  public void scoresRows(
      MemorySegment block,
      int count,
      int capacity,
      int headDim,
      float[] prepared,
      int pStride,
      int[] rows,
      int rowCount,
      float[] out,
      int outStride,
      float[] work,
      float[] decoded) {
    if (!dotDecodesRow() || rowCount < 2 || decoded.length < count * headDim) {
      KvFormat.super.scoresRows(
          block, count, capacity, headDim, prepared, pStride, rows, rowCount, out, outStride, work,
          decoded);
      return;
    }
    int rowBytes = rowBytes(headDim);
    for (int s = 0; s < count; s++) {
      decodeRow(block, (long) s * rowBytes, headDim, decoded, s * headDim);
    }
    for (int i = 0; i < rowCount; i++) {
      int pOff = rows[i] * pStride;
      int o = i * outStride;
      for (int s = 0; s < count; s++) {
        out[o + s] = VectorKernels.dot(prepared, pOff, decoded, s * headDim, headDim);
      }
    }
  }

  @Override
  public final void accumulate(
      MemorySegment block,
      int slot,
      int capacity,
      int headDim,
      float weight,
      float[] acc,
      float[] work) {
    accumulateRow(block, (long) slot * rowBytes(headDim), headDim, weight, acc, 0, work);
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
    int rowBytes = rowBytes(headDim);
    for (int s = 0; s < count; s++) {
      float weight = weights[wOff + s];
      if (weight != 0f) {
        accumulateRow(block, (long) s * rowBytes, headDim, weight, acc, accOff, work);
      }
    }
  }

  @Override
  public final void copyRow(
      MemorySegment from, int fromSlot, MemorySegment to, int toSlot, int capacity, int headDim) {
    int rowBytes = rowBytes(headDim);
    MemorySegment.copy(from, (long) fromSlot * rowBytes, to, (long) toSlot * rowBytes, rowBytes);
  }

  @Override
  public void checkHeadDim(int headDim) {
    if (headDim <= 0) {
      throw new IllegalArgumentException(
          "format " + name() + " needs a positive head dimension, got " + headDim);
    }
  }

  @Override
  public String toString() {
    return name();
  }
}
