package io.kvslim.kv.store;

import io.kvslim.kv.quant.KvFormat;
import java.lang.foreign.MemorySegment;

/**
 * A fixed number of token slots of one (layer, KV head): keys and values in their own formats, each
 * token's original position, and a live mask (DESIGN.md §3.2). Slots {@code [0, filled)} have been
 * written; a dead slot stays in place until its block is compacted or freed.
 *
 * <p>{@link #bytes()} is exact: key block + value block (codes, scales, zero points) + 4 bytes of
 * position per slot + the live mask's 64-bit words. JVM object headers are not counted.
 */
public final class KvBlock {
  private final int capacity;
  private final int headDim;
  private final KvFormat keyFormat;
  private final KvFormat valueFormat;
  private final MemorySegment keys;
  private final MemorySegment values;
  private final int[] positions;
  private final long[] liveMask;
  private final long bytes;
  private int filled;
  private int liveCount;
  private int minPosition = Integer.MAX_VALUE;
  private int maxPosition = Integer.MIN_VALUE;

  KvBlock(int capacity, int headDim, KvFormat keyFormat, KvFormat valueFormat) {
    this.capacity = capacity;
    this.headDim = headDim;
    this.keyFormat = keyFormat;
    this.valueFormat = valueFormat;
    this.keys = MemorySegment.ofArray(new byte[(int) keyFormat.blockBytes(capacity, headDim)]);
    this.values = MemorySegment.ofArray(new byte[(int) valueFormat.blockBytes(capacity, headDim)]);
    this.positions = new int[capacity];
    this.liveMask = new long[(capacity + 63) / 64];
    this.bytes = bytesFor(capacity, headDim, keyFormat, valueFormat);
  }

  /** Exact bytes of a block with these parameters. */
  public static long bytesFor(int capacity, int headDim, KvFormat keys, KvFormat values) {
    return keys.blockBytes(capacity, headDim)
        + values.blockBytes(capacity, headDim)
        + 4L * capacity
        + 8L * ((capacity + 63) / 64);
  }

  /** Of {@link #bytes()}: bytes that are scales and zero points. */
  public long scaleBytes() {
    return keyFormat.scaleBytes(capacity, headDim) + valueFormat.scaleBytes(capacity, headDim);
  }

  /** Of {@link #bytes()}: bytes of positions and live mask. */
  public long bookkeepingBytes() {
    return 4L * capacity + 8L * liveMask.length;
  }

  public long bytes() {
    return bytes;
  }

  public int capacity() {
    return capacity;
  }

  public int filled() {
    return filled;
  }

  public int liveCount() {
    return liveCount;
  }

  public KvFormat keyFormat() {
    return keyFormat;
  }

  public KvFormat valueFormat() {
    return valueFormat;
  }

  /** A lower bound of the positions in the block: a query before it attends to none of them. */
  public int minPosition() {
    return minPosition;
  }

  /** An upper bound of the positions in the block: a query at or after it sees all of them. */
  public int maxPosition() {
    return maxPosition;
  }

  public int position(int slot) {
    return positions[slot];
  }

  public boolean isLive(int slot) {
    return (liveMask[slot >>> 6] & (1L << slot)) != 0;
  }

  /** Raw key storage, in {@link #keyFormat()} (read-only use). */
  public MemorySegment keys() {
    return keys;
  }

  /** Raw value storage, in {@link #valueFormat()} (read-only use). */
  public MemorySegment values() {
    return values;
  }

  int[] positions() {
    return positions;
  }

  boolean isFull() {
    return filled == capacity;
  }

  /**
   * Appends {@code count} tokens after the filled slots: key rows at {@code kOff + t·stride}, value
   * rows at {@code vOff + t·stride}.
   */
  void append(
      int count, int[] pos, int posOff, float[] k, int kOff, float[] v, int vOff, int stride) {
    keyFormat.encode(k, kOff, stride, count, keys, filled, capacity, headDim);
    valueFormat.encode(v, vOff, stride, count, values, filled, capacity, headDim);
    for (int t = 0; t < count; t++) {
      positions[filled] = pos[posOff + t];
      minPosition = Math.min(minPosition, positions[filled]);
      maxPosition = Math.max(maxPosition, positions[filled]);
      liveMask[filled >>> 6] |= 1L << filled;
      filled++;
    }
    liveCount += count;
  }

  /** Marks a live slot dead. */
  void kill(int slot) {
    assert isLive(slot);
    liveMask[slot >>> 6] &= ~(1L << slot);
    liveCount--;
  }

  /** Moves a live row from {@code from} (any block of the same formats) into slot {@code slot}. */
  void moveRowFrom(KvBlock from, int fromSlot, int slot) {
    keyFormat.copyRow(from.keys, fromSlot, keys, slot, capacity, headDim);
    valueFormat.copyRow(from.values, fromSlot, values, slot, capacity, headDim);
    positions[slot] = from.positions[fromSlot];
  }

  /** After a repack: slots {@code [0, count)} are the live tokens, the rest unused. */
  void resetToDense(int count) {
    java.util.Arrays.fill(liveMask, 0L);
    for (int s = 0; s < count; s++) {
      liveMask[s >>> 6] |= 1L << s;
    }
    filled = count;
    liveCount = count;
    minPosition = Integer.MAX_VALUE;
    maxPosition = Integer.MIN_VALUE;
    for (int s = 0; s < count; s++) {
      minPosition = Math.min(minPosition, positions[s]);
      maxPosition = Math.max(maxPosition, positions[s]);
    }
  }
}
