package io.kvslim.kv.format;

import java.lang.foreign.MemorySegment;

/**
 * The key "format" of a block whose keys were dropped because another layer's keys stand in for
 * them (POD's shared distant keys, METHODS.md S4): it holds no byte, so the block counts only its
 * values, positions and header. Nothing can be read from it; an attempt is a bug of whoever reads
 * (the layer that dropped the keys scores those tokens with the other layer's keys), so every read
 * throws. It is not a name a spec accepts.
 */
public final class DroppedKeys implements KvFormat {
  public static final DroppedKeys INSTANCE = new DroppedKeys();

  private DroppedKeys() {}

  @Override
  public String name() {
    return "dropped";
  }

  @Override
  public boolean perToken() {
    return true;
  }

  @Override
  public long blockBytes(int capacity, int headDim) {
    return 0;
  }

  @Override
  public long scaleBytes(int capacity, int headDim) {
    return 0;
  }

  @Override
  public void checkHeadDim(int headDim) {}

  @Override
  public void encode(
      float[] src,
      int srcOff,
      int srcStride,
      int count,
      MemorySegment block,
      int firstSlot,
      int capacity,
      int headDim) {}

  @Override
  public void decode(
      MemorySegment block, int slot, int capacity, int headDim, float[] dst, int dstOff) {
    throw dropped();
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
    throw dropped();
  }

  @Override
  public void accumulate(
      MemorySegment block,
      int slot,
      int capacity,
      int headDim,
      float weight,
      float[] acc,
      float[] work) {
    throw dropped();
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
    throw dropped();
  }

  @Override
  public void copyRow(
      MemorySegment from, int fromSlot, MemorySegment to, int toSlot, int capacity, int headDim) {}

  private static IllegalStateException dropped() {
    return new IllegalStateException(
        "these keys were dropped (another layer's keys stand in for them) and cannot be read");
  }
}
