package io.kvslim.kv.store;

import java.util.BitSet;

/**
 * The store of one layer: one {@link HeadStore} per KV head, all drawing from one {@link
 * BlockPool}. Appends are all-or-nothing: the bytes every head needs are reserved at once, so a
 * refused append leaves every head and the pool unchanged.
 */
public final class LayerStore {
  private final BlockPool pool;
  private final KvCacheFormat format;
  private final int headDim;
  private final HeadStore[] heads;
  private final float[] conversionScratch;
  private final long[] headBytes;
  private boolean released;

  public LayerStore(BlockPool pool, int kvHeads, int headDim, KvCacheFormat format) {
    if (kvHeads <= 0) {
      throw new IllegalArgumentException("need at least one KV head, got " + kvHeads);
    }
    format.checkHeadDim(headDim);
    this.pool = pool;
    this.format = format;
    this.headDim = headDim;
    this.heads = new HeadStore[kvHeads];
    for (int g = 0; g < kvHeads; g++) {
      heads[g] = new HeadStore(pool, format, headDim);
    }
    this.conversionScratch = new float[2 * format.blockTokens() * headDim];
    this.headBytes = new long[kvHeads];
  }

  public int kvHeads() {
    return heads.length;
  }

  public int headDim() {
    return headDim;
  }

  public KvCacheFormat format() {
    return format;
  }

  public BlockPool pool() {
    return pool;
  }

  public HeadStore head(int kvHead) {
    return heads[kvHead];
  }

  /**
   * Appends {@code n} tokens to every head ({@code keys}/{@code values} are {@code n × kvHeads ×
   * headDim}, token-major), then flushes full residual blocks.
   *
   * @throws KvMemoryExhaustedException before any change if the pool cannot hold the new blocks
   */
  public void append(int n, int[] positions, float[] keys, float[] values) {
    if (released) {
      throw new IllegalStateException("this KV cache has been closed");
    }
    long needed = 0;
    for (int g = 0; g < heads.length; g++) {
      headBytes[g] = heads[g].appendBytes(n, positions, 0);
      needed += headBytes[g];
    }
    pool.reserve(needed);
    int stride = heads.length * headDim;
    for (int g = 0; g < heads.length; g++) {
      heads[g].appendReserved(n, positions, keys, values, g * headDim, stride, headBytes[g]);
      heads[g].flushResidual(conversionScratch);
    }
  }

  /** Evicts tokens of one head by retained index; see {@link HeadStore#evict(BitSet)}. */
  public void evict(int kvHead, BitSet indices) {
    heads[kvHead].evict(indices);
  }

  /** Changes the formats of one block; see {@link HeadStore#convertBlock}. */
  public void convertBlock(
      int kvHead,
      int blockIndex,
      io.kvslim.kv.format.KvFormat keys,
      io.kvslim.kv.format.KvFormat values) {
    heads[kvHead].convertBlock(blockIndex, keys, values, conversionScratch);
  }

  public long bytes() {
    long total = 0;
    for (HeadStore head : heads) {
      total += head.bytes();
    }
    return total;
  }

  /** Returns every block to the pool; the store cannot be appended to afterwards. */
  public void release() {
    for (HeadStore head : heads) {
      head.release();
    }
    released = true;
  }
}
