package io.kvslim.kv.format;

import java.lang.foreign.MemorySegment;

/**
 * A per-token key format whose prepared query is not the raw query (TurboQuant's keys: the query is
 * rotated once, {@link #prepareQuery}): its scalar reference dequantizes each key and takes a
 * sequential dot product with the <em>raw</em> query, and a value-side accumulation (never used for
 * keys, but part of the contract) adds the dequantized row.
 */
abstract class RawQueryKeyFormat extends RowFormat {

  @Override
  protected void accumulateRow(
      MemorySegment block,
      long offset,
      int headDim,
      float weight,
      float[] acc,
      int accOff,
      float[] work) {
    decodeRow(block, offset, headDim, work, 0);
    for (int j = 0; j < headDim; j++) {
      acc[accOff + j] += weight * work[j];
    }
  }

  /** Dequantize each key, then a sequential dot product with the raw query. */
  @Override
  public void dotsReference(
      MemorySegment block,
      int count,
      int capacity,
      int headDim,
      float[] q,
      int qOff,
      float[] scores) {
    float[] row = new float[headDim];
    for (int s = 0; s < count; s++) {
      decode(block, s, capacity, headDim, row, 0);
      float sum = 0f;
      for (int j = 0; j < headDim; j++) {
        sum += q[qOff + j] * row[j];
      }
      scores[s] = sum;
    }
  }
}
