package io.kvslim.kv.cache;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.kv.store.LayerStore;

/**
 * The compressible cache of one sequence (DESIGN.md §3): per layer a {@link PagedLayerKv} over
 * paged blocks drawn from a {@link BlockPool}. Closing returns every byte to the pool.
 */
public final class PagedKvCache implements KvCache {
  private final BlockPool pool;
  private final KvCacheFormat format;
  private final PagedLayerKv[] layers;

  /**
   * @param pool where blocks are counted (shared by the sequences of one engine)
   * @param format formats of keys and values, block size, residual window
   * @throws IllegalArgumentException if a format cannot store rows of {@code headDim}
   */
  public PagedKvCache(
      BlockPool pool, int layerCount, int kvHeads, int headDim, KvCacheFormat format) {
    this.pool = pool;
    this.format = format;
    this.layers = new PagedLayerKv[layerCount];
    PagedLayerKv.Scratch scratch = new PagedLayerKv.Scratch(); // layers attend one at a time
    for (int l = 0; l < layerCount; l++) {
      layers[l] = new PagedLayerKv(new LayerStore(pool, kvHeads, headDim, format), scratch);
    }
  }

  /** A cache with its own unlimited pool. */
  public static PagedKvCache create(
      int layerCount, int kvHeads, int headDim, KvCacheFormat format) {
    return new PagedKvCache(new BlockPool(), layerCount, kvHeads, headDim, format);
  }

  public BlockPool pool() {
    return pool;
  }

  public KvCacheFormat format() {
    return format;
  }

  @Override
  public int layerCount() {
    return layers.length;
  }

  @Override
  public PagedLayerKv layer(int layer) {
    return layers[layer];
  }

  @Override
  public long bytes() {
    long total = 0;
    for (PagedLayerKv l : layers) {
      total += l.bytes();
    }
    return total;
  }

  @Override
  public void close() {
    for (PagedLayerKv l : layers) {
      l.store().release();
    }
  }
}
