package io.kvslim.kv.store;

import java.util.BitSet;

/**
 * The store of one layer: one {@link HeadStore} per KV head, all drawing from one {@link
 * BlockPool}. Appends are all-or-nothing: the bytes every head needs are reserved at once, so a
 * refused append leaves every head and the pool unchanged.
 *
 * <p>With a residual window (KIVI), an append leaves the new tokens in the residual format and the
 * step's attention reads them exact; {@link #flushResidual} then quantizes what has left the
 * window. This is the order of the authors' {@code LlamaAttention_KIVI.forward} ({@code
 * models/llama_kivi.py}, jy-yuan/KIVI): the decode branch concatenates the new key and value to the
 * full-precision parts, attends, and only then quantizes (keys at lines 131–144 when the key
 * residual reaches R, the oldest value at lines 174–187 once R + 1 are held); the prefill branch
 * attends over the exact prompt (lines 190–191, 243) and quantizes for the cache it returns (lines
 * 193–220). An append flushes what an earlier append left pending first, so the window never holds
 * more than R tokens plus one append's.
 */
public final class LayerStore {
  private final BlockPool pool;
  private final KvCacheFormat format;
  private final int headDim;
  private final HeadStore[] heads;
  private final float[] conversionScratch;
  private float[][] threadScratch = new float[0][]; // per thread of a parallel flush
  private final long[] headBytes;
  private final boolean hasResidual;
  private boolean pending; // appended to the residual since the last flush
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
      heads[g] = new HeadStore(pool, format.forHead(g), headDim);
    }
    this.conversionScratch = new float[2 * format.blockTokens() * headDim];
    this.headBytes = new long[kvHeads];
    this.hasResidual = format.hasResidual();
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

  /**
   * For keys stored before RoPE at their own positions (KVQuant): {@link HeadStore#readKeys} then
   * rotates each key at its position with {@code rope}, so policies read keys as the model uses
   * them.
   */
  public void rotateKeysOnRead(io.kvslim.kv.Rotary rope) {
    for (HeadStore h : heads) {
      h.rotateKeysOnRead(rope);
    }
  }

  public BlockPool pool() {
    return pool;
  }

  public HeadStore head(int kvHead) {
    return heads[kvHead];
  }

  /**
   * Appends {@code n} tokens to every head ({@code keys}/{@code values} are {@code n × kvHeads ×
   * headDim}, token-major). With a residual window they stay in the residual format, exact, until
   * {@link #flushResidual} (after the step's attention); a flush an earlier append left pending is
   * done first.
   *
   * @throws KvMemoryExhaustedException before any change (but the pending flush, which only gives
   *     bytes back) if the pool cannot hold the new blocks
   */
  public void append(int n, int[] positions, float[] keys, float[] values) {
    if (released) {
      throw new IllegalStateException("this KV cache has been closed");
    }
    flushResidual();
    long needed = 0;
    for (int g = 0; g < heads.length; g++) {
      headBytes[g] = heads[g].appendBytes(n, positions, 0);
      needed += headBytes[g];
    }
    pool.reserve(needed);
    int stride = heads.length * headDim;
    for (int g = 0; g < heads.length; g++) {
      heads[g].appendReserved(n, positions, keys, values, g * headDim, stride, headBytes[g]);
    }
    pending = hasResidual && n > 0;
  }

  /**
   * Appends {@code n} tokens to head {@code kvHead} alone ({@code keys}/{@code values} are {@code n
   * × headDim}), for a policy that brings evicted tokens back into one head (ALISA's recomputation,
   * METHODS.md H2). Formats with a residual window are refused.
   *
   * @throws KvMemoryExhaustedException before any change if the pool cannot hold the new blocks
   */
  public void appendHead(int kvHead, int n, int[] positions, float[] keys, float[] values) {
    if (released) {
      throw new IllegalStateException("this KV cache has been closed");
    }
    if (hasResidual) {
      throw new IllegalStateException("a per-head append needs a format without a residual window");
    }
    long needed = heads[kvHead].appendBytes(n, positions, 0);
    pool.reserve(needed);
    heads[kvHead].appendReserved(n, positions, keys, values, 0, headDim, needed);
  }

  /**
   * Quantizes what the appends since the last flush pushed out of the residual window, in every
   * head ({@link HeadStore#flushResidual}): keys once the residual holds R tokens, values beyond
   * the latest R. Only gives bytes back to the pool. Does nothing without a pending append.
   */
  public void flushResidual() {
    flushResidual(null);
  }

  /**
   * {@link #flushResidual()}, the heads on {@code pool}'s threads when it has several (each head's
   * codes are those of a serial flush: the heads are independent, each thread has its own scratch).
   * Lexico codes every token it flushes by orthogonal matching pursuit, which a prefill's flush
   * spends most of its time on.
   */
  public void flushResidual(io.kvslim.tensor.Parallel pool) {
    if (!pending) {
      return;
    }
    pending = false;
    if (pool == null || pool.threads() < 2 || heads.length < 2) {
      for (HeadStore head : heads) {
        head.flushResidual(conversionScratch);
      }
      return;
    }
    if (threadScratch.length < pool.threads()) {
      float[][] grown = java.util.Arrays.copyOf(threadScratch, pool.threads());
      for (int t = Math.max(1, threadScratch.length); t < grown.length; t++) {
        grown[t] = new float[conversionScratch.length];
      }
      grown[0] = conversionScratch;
      threadScratch = grown;
    }
    float[][] scratch = threadScratch;
    pool.forChunks(
        heads.length,
        1,
        (chunk, from, to) -> {
          for (int g = from; g < to; g++) {
            heads[g].flushResidual(scratch[chunk]);
          }
        });
  }

  /**
   * Evicts tokens of one head by retained index; see {@link HeadStore#evict(BitSet)}. A pending
   * flush is done first, so eviction always meets the window's settled layout.
   */
  public void evict(int kvHead, BitSet indices) {
    flushResidual();
    heads[kvHead].evict(indices);
  }

  /**
   * Evicts tokens of one head by retained index and folds them into its compensation entry; see
   * {@link HeadStore#fold}. A pending flush is done first.
   */
  public void fold(int kvHead, BitSet indices) {
    flushResidual();
    heads[kvHead].fold(indices);
  }

  /**
   * Merges tokens of one head into kept entries with weights (after a pending flush); see {@link
   * HeadStore#merge}.
   */
  public void merge(
      int kvHead, int[] targets, int n, float[] keys, float[] values, float[] w, BitSet evicted) {
    flushResidual();
    heads[kvHead].merge(targets, n, keys, values, w, evicted);
  }

  /** Evicts the tokens of one head at retained indices {@code indices[0..count)}. */
  public void evict(int kvHead, int[] indices, int count) {
    flushResidual();
    heads[kvHead].evict(indices, count);
  }

  /**
   * Changes the formats of one block (after a pending flush); see {@link HeadStore#convertBlock}.
   */
  public void convertBlock(
      int kvHead,
      int blockIndex,
      io.kvslim.kv.format.KvFormat keys,
      io.kvslim.kv.format.KvFormat values) {
    flushResidual();
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
