package io.kvslim.kv.cache;

import io.kvslim.kv.AttentionObserver;
import io.kvslim.kv.AttentionOrder;
import io.kvslim.kv.DenseLayerKv;
import io.kvslim.kv.LayerKv;
import io.kvslim.kv.Rotary;
import io.kvslim.kv.attention.AttentionKernels;
import io.kvslim.kv.format.KvFormat;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.LayerStore;
import io.kvslim.tensor.LlamaCppMath;
import io.kvslim.tensor.Parallel;
import java.util.Arrays;
import java.util.BitSet;

/**
 * One layer of the compressible cache: the {@link LayerStore} (paged blocks per KV head, each in
 * its own format) and attention over it (DESIGN.md §3.1).
 *
 * <p>Attention works on tiles: up to {@link #TILE_ROWS} query rows that read the same KV head
 * (several query positions of a prefill chunk, and the query heads of a GQA group). A tile makes
 * two passes over the head's blocks, so each block is read once per tile, not once per query, and
 * no score matrix larger than {@code TILE_ROWS × retained tokens} is built:
 *
 * <ol>
 *   <li>keys: the block's key format scores all its slots in one fused call ({@link
 *       KvFormat#scores}, with the query prepared once per tile and format); scores are scaled and
 *       written in retained order, {@code −∞} for tokens after the row's position (a block wholly
 *       after it is skipped);
 *   <li>softmax per row over its retained tokens ({@link AttentionKernels#softmaxWeights});
 *   <li>values: the value format adds each slot with its weight ({@link KvFormat#accumulateBlock};
 *       a block whose values are partly in KIVI's residual window adds its two parts in slot
 *       order), then the row is normalized (blocks whose format {@link
 *       KvFormat#accumulatesProbabilities() takes probabilities}, f16, get normalized weights and a
 *       sum of their own, added after the normalization).
 * </ol>
 *
 * The arithmetic is {@link DenseLayerKv}'s, in the same order, so with F32 keys and values the two
 * agree bit for bit; dead tokens are skipped. With {@link AttentionOrder#LLAMA_CPP} ({@link
 * #attend(int, int[], int, float[], float, float[], AttentionObserver, Parallel, AttentionOrder)})
 * attention instead follows llama.cpp's order (normalized probabilities, ggml's {@code expf}, its
 * lane sums) over an F32 cache, to reproduce llama.cpp's output bit for bit.
 *
 * <p>With a residual window (KIVI), an attention call reads the tokens appended for it as they were
 * appended, exact, and then quantizes what they pushed out of the window ({@link
 * LayerStore#flushResidual}), as the authors' code does (see {@link LayerStore}).
 *
 * <p>Tiles of distinct KV heads and rows are independent: given the engine's {@link Parallel} pool
 * they run on its threads, each thread with its own scratch (per chunk index) claiming tiles one at
 * a time from a shared counter (so a thread the OS schedules late takes fewer), and a row's result
 * does not depend on which thread computed it. With an observer, queries go in chunks that fill a
 * tile (the KV heads in parallel) and the observer is called on the calling thread after each
 * chunk, in the order of the serial loop, with {@code exp(s_t − M)/S} over the head's retained
 * tokens (0 for tokens after the query).
 *
 * <p>The tiles' arithmetic is in {@link OwnTileAttention} and {@link LlamaCppTileAttention}, their
 * buffers in {@link AttentionTile}.
 *
 * <p>Not thread-safe: one attention call at a time per layer (and per {@link Scratch}, which the
 * layers of one cache may share).
 */
public final class PagedLayerKv implements LayerKv {
  /** Query rows that share one pass over a head's blocks. */
  static final int TILE_ROWS = 16;

  private final LayerStore store;
  private final int headDim;
  private final Scratch scratch;
  private final boolean cacheRelative;
  private final boolean keysBeforeRope; // the key format wants keys before RoPE (KVQuant)
  private final long tableBytes; // the formats' tables, once per layer
  private final OwnTileAttention own;
  private final LlamaCppTileAttention llamaCpp;
  private final LlamaCppFlashAttention flash;
  private Rotary rope; // with cache-relative positions: the model's RoPE, applied at read time
  private float[][] observed = new float[0][];
  private BitSet[] selected; // per KV head, the retained tokens the next call reads (Quest)
  private boolean restricted;

  public PagedLayerKv(LayerStore store) {
    this(store, new Scratch());
  }

  /** A layer using {@code scratch}, which other layers attended from the same thread may share. */
  public PagedLayerKv(LayerStore store, Scratch scratch) {
    this(store, scratch, false);
  }

  /**
   * A layer using {@code scratch}; with {@code cacheRelative}, it stores keys before RoPE and
   * attends at cache-relative positions (StreamingLLM's rolling positions, {@link #appliesRope}).
   */
  public PagedLayerKv(LayerStore store, Scratch scratch, boolean cacheRelative) {
    this.store = store;
    this.headDim = store.headDim();
    this.scratch = scratch;
    this.cacheRelative = cacheRelative;
    this.keysBeforeRope = store.format().keys().keysBeforeRope();
    this.tableBytes = store.format().tableBytes();
    this.own = new OwnTileAttention(store);
    this.llamaCpp = new LlamaCppTileAttention(store);
    this.flash = new LlamaCppFlashAttention(store);
  }

  /** Per-thread attention buffers, grown on demand and reused: nothing is allocated per token. */
  public static final class Scratch {
    private AttentionTile[] tiles = new AttentionTile[0];
    private final CacheRelativeRope relative = new CacheRelativeRope();

    AttentionTile tile(int chunk) {
      return tiles[chunk];
    }

    void ensureThreads(int threads) {
      if (tiles.length < threads) {
        AttentionTile[] grown = Arrays.copyOf(tiles, threads);
        for (int t = tiles.length; t < threads; t++) {
          grown[t] = new AttentionTile();
        }
        tiles = grown;
      }
    }
  }

  /** The store, for policies: sizes, positions, eviction, formats, budgets per head. */
  public LayerStore store() {
    return store;
  }

  public HeadStore head(int kvHead) {
    return store.head(kvHead);
  }

  @Override
  public int kvHeads() {
    return store.kvHeads();
  }

  @Override
  public int headDim() {
    return headDim;
  }

  /**
   * Appends {@code n} tokens; with a residual window (KIVI) they stay exact until the next
   * attention call has read them, which then quantizes what left the window ({@link
   * LayerStore#flushResidual}).
   */
  @Override
  public void append(int n, int[] positions, float[] keys, float[] values) {
    store.append(n, positions, keys, values);
  }

  /** Appends {@code n} tokens to {@code kvHead} alone ({@link LayerStore#appendHead}). */
  public void appendHead(int kvHead, int n, int[] positions, float[] keys, float[] values) {
    store.appendHead(kvHead, n, positions, keys, values);
  }

  /**
   * Quantizes what the last append pushed out of the residual window, as an attention call does
   * when it ends; for callers that append without attending.
   */
  public void flushResidual() {
    store.flushResidual();
  }

  /**
   * With cache-relative positions (StreamingLLM's rolling positions, METHODS.md E1), true: this
   * layer keeps keys as appended, before RoPE, and attention rotates each retained key by its index
   * in its head's cache (sinks 0..S−1, then the window in cache order) and each query by the index
   * of its own token, so the largest position RoPE ever sees is the cache's size minus one (the
   * reference does the same: {@code streaming_llm/pos_shift/modify_llama.py}, lines 89–103 of
   * mit-han-lab/streaming-llm @2e50426, keys cached before RoPE at line 99 and rotated by {@code
   * arange(kv_seq_len)} at lines 102–103). Keys and values are stored in the layer's formats as
   * usual (quantized formats quantize the key before RoPE); a key is decoded, rotated and scored in
   * F32 at each attention call. With nothing evicted and tokens at positions 0, 1, 2, … the cache
   * index of every token is its position, so an F32 cache attends bit for bit as the model would
   * with RoPE applied before append.
   */
  @Override
  public boolean appliesRope(Rotary rope) {
    if (!cacheRelative && !keysBeforeRope) {
      return false;
    }
    this.rope = rope;
    if (!cacheRelative) {
      // keys before RoPE at their own positions: what policies read is rotated as the model would
      store.rotateKeysOnRead(rope);
    }
    return true;
  }

  /**
   * Whether this layer stores keys before RoPE at their own positions (its key format asks for it,
   * KVQuant) and rotates each at its position when it attends: with an F32 cache and nothing
   * evicted that attends bit for bit as the model with RoPE applied before append.
   */
  public boolean keysBeforeRope() {
    return keysBeforeRope && !cacheRelative;
  }

  /** The model's RoPE this layer applies at read time, or null when it stores rotated keys. */
  public Rotary rope() {
    return rope;
  }

  /**
   * Whether this layer stores keys before RoPE and attends at cache-relative positions (without
   * handing the model's rotary embedding over, as {@link #appliesRope} does).
   */
  public boolean cacheRelative() {
    return cacheRelative;
  }

  /**
   * Restricts the next attention call's reads of {@code kvHead} to the retained tokens whose
   * indices are set in {@code tokens} (query-aware page selection, Quest: METHODS.md N7): the
   * blocks holding none of them are not read at all, the other tokens of the blocks read get weight
   * 0, so each query attends exactly over the selected tokens (and a compensation entry, if any).
   * The selection must hold every token a query of that call should see; it lasts for one call and
   * is dropped when the call ends. Such a head attends in this class's own order ({@link
   * AttentionOrder#OWN}). The caller must not change {@code tokens} before the call ends.
   */
  public void restrictNextAttention(int kvHead, BitSet tokens) {
    if (selected == null) {
      selected = new BitSet[store.kvHeads()];
    }
    selected[kvHead] = tokens;
    restricted = true;
  }

  /**
   * The tokens the next attention call reads of {@code kvHead} ({@link #restrictNextAttention}), or
   * null for all.
   */
  public BitSet nextAttention(int kvHead) {
    return restricted ? selected[kvHead] : null;
  }

  /** Evicts the tokens of {@code kvHead} whose retained indices are set. */
  public void evict(int kvHead, BitSet indices) {
    store.evict(kvHead, indices);
  }

  /**
   * Evicts the tokens of {@code kvHead} whose retained indices are set and folds them into the
   * head's compensation entry ({@link HeadStore#fold}), which attention then counts as that many
   * copies of their mean (METHODS.md M2: its logit gets {@code + ln |D|}).
   */
  public void fold(int kvHead, BitSet indices) {
    store.fold(kvHead, indices);
  }

  /**
   * Evicts the tokens of {@code kvHead} whose retained indices are set in {@code evicted} and
   * rewrites kept entries {@code targets[0..n)} as merged entries: new key and value rows and a
   * weight each, which attention counts as that many copies (METHODS.md M2: logit {@code + ln w});
   * see {@link HeadStore#merge}.
   */
  public void merge(
      int kvHead, int[] targets, int n, float[] keys, float[] values, float[] w, BitSet evicted) {
    store.merge(kvHead, targets, n, keys, values, w, evicted);
  }

  /** Evicts the tokens of {@code kvHead} at retained indices {@code indices[0..count)}. */
  public void evict(int kvHead, int[] indices, int count) {
    store.evict(kvHead, indices, count);
  }

  /** Positions of the retained tokens of {@code kvHead}, in order. */
  public int[] positions(int kvHead) {
    int[] dst = new int[size(kvHead)];
    store.head(kvHead).positions(dst);
    return dst;
  }

  @Override
  public void attend(
      int n,
      int[] positions,
      int heads,
      float[] queries,
      float scale,
      float[] out,
      AttentionObserver observer) {
    attend(n, positions, heads, queries, scale, out, observer, null);
  }

  @Override
  public void attend(
      int n,
      int[] positions,
      int heads,
      float[] queries,
      float scale,
      float[] out,
      AttentionObserver observer,
      Parallel pool) {
    attend(n, positions, heads, queries, scale, out, observer, pool, AttentionOrder.OWN);
  }

  /**
   * Attention in {@code order}; with {@link AttentionOrder#LLAMA_CPP}, in the order of llama.cpp's
   * CPU backend without flash attention, over an F32 cache (heads with a block in another format
   * use this class's order). For each query head, as ggml computes {@code KQ}, {@code soft_max_ext}
   * and {@code KQV} (AVX-512 build):
   *
   * <ol>
   *   <li>score of each visible token: {@link LlamaCppMath#dot} of query and key ({@code
   *       ggml_vec_dot_f32}), times {@code scale}; other tokens {@code −∞};
   *   <li>{@code M} the largest score; {@code e_t = exp(s_t − M)} with {@link LlamaCppMath#exp};
   *       {@code S} the double sum, over groups of 16 consecutive tokens (retained order, from the
   *       first), of each group's {@link LlamaCppMath#sum16}; probabilities {@code p_t = e_t ·
   *       (float) (1/S)};
   *   <li>output element d: with two or more queries in the call (llama.cpp's prompt processing,
   *       tinyBLAS), 16 partial sums, token t added to sum {@code t mod 16} by fused multiply-add,
   *       then {@link LlamaCppMath#sum16}; with one query ({@code ggml_vec_dot_f32} over the cache
   *       length padded to 32, as llama.cpp pads it), 64 partial sums over the tokens before the
   *       last multiple of 64 of that length, folded as {@link LlamaCppMath#dot} does, then the
   *       remaining tokens added one by one.
   * </ol>
   *
   * With a full cache the retained tokens are llama.cpp's KV cells, so the result equals
   * llama.cpp's bit for bit. With {@link AttentionOrder#OWN}, this class's order (see the class
   * comment).
   */
  @Override
  public void attend(
      int n,
      int[] positions,
      int heads,
      float[] queries,
      float scale,
      float[] out,
      AttentionObserver observer,
      Parallel pool,
      AttentionOrder order) {
    try {
      attendStored(n, positions, heads, queries, scale, out, observer, pool, order);
    } finally {
      if (restricted) {
        Arrays.fill(selected, null);
        restricted = false;
      }
    }
    // KIVI: the step's attention has read its tokens exact; now what left the window is quantized
    store.flushResidual(pool);
  }

  private void attendStored(
      int n,
      int[] positions,
      int heads,
      float[] queries,
      float scale,
      float[] out,
      AttentionObserver observer,
      Parallel pool,
      AttentionOrder order) {
    int kvHeads = store.kvHeads();
    if (heads % kvHeads != 0) {
      throw new IllegalArgumentException(
          heads + " query heads do not share " + kvHeads + " KV heads");
    }
    Call c = call;
    c.group = heads / kvHeads;
    c.positions = positions;
    c.heads = heads;
    c.queries = queries;
    c.scale = scale;
    c.out = out;
    c.order = order;
    c.queries1 = n == 1;
    c.n = n;
    c.relative = null;
    c.selected = restricted ? selected : null;
    if (cacheRelative || keysBeforeRope) {
      if (rope == null) {
        throw new IllegalStateException(
            "this layer stores keys before RoPE (cache-relative positions) and attends only"
                + " through the model, which hands it its RoPE");
      }
      int largest = 0;
      if (cacheRelative) {
        for (int g = 0; g < kvHeads; g++) {
          largest = Math.max(largest, store.head(g).size());
        }
      } else {
        for (int i = 0; i < n; i++) {
          largest = Math.max(largest, positions[i] + 1);
        }
      }
      scratch.relative.ensure(rope, largest, !cacheRelative);
      c.relative = scratch.relative;
    }
    scratch.ensureThreads(pool == null ? 1 : pool.threads());
    try {
      if (observer == null) {
        c.rows = n * c.group; // per KV head: query i, head-in-group j is row i·group + j
        c.tiles = (c.rows + TILE_ROWS - 1) / TILE_ROWS;
        c.observed = null;
        if (pool != null && split.plan(store, c, pool.threads(), false) > 1) {
          c.items = split.slots(); // flash-decoding: each head's blocks in parts, merged after
          c.next.set(0);
          run(pool, c.items, splitTask);
          split.merge(c);
          return;
        }
        c.items = kvHeads * c.tiles;
        c.next.set(0);
        run(pool, c.items, tilesTask);
        return;
      }
      // queries go in chunks that fill a tile; the observer then sees them in serial order
      int perChunk = Math.max(1, TILE_ROWS / c.group);
      int slots = Math.min(n, perChunk) * heads;
      if (observed.length < slots) {
        observed = Arrays.copyOf(observed, slots);
      }
      for (int k = 0; k < slots; k++) {
        int size = store.head((k % heads) / c.group).size();
        if (observed[k] == null || observed[k].length < size) {
          int old = observed[k] == null ? 0 : observed[k].length;
          observed[k] = new float[Math.max(size, 2 * old)];
        }
      }
      c.observed = observed;
      for (int i0 = 0; i0 < n; i0 += perChunk) {
        int i1 = Math.min(n, i0 + perChunk);
        c.observedQuery0 = i0;
        c.rows = i0 * c.group; // the chunk's rows in every KV head
        c.rowsEnd = i1 * c.group;
        c.items = kvHeads;
        c.next.set(0);
        run(pool, kvHeads, observedRowTask);
        for (int i = i0; i < i1; i++) {
          for (int h = 0; h < heads; h++) {
            observer.observe(
                i, h, h / c.group, observed[(i - i0) * heads + h], store.head(h / c.group).size());
          }
        }
      }
    } finally {
      c.positions = null;
      c.queries = null;
      c.out = null;
      c.observed = null;
      c.selected = null;
    }
  }

  /**
   * The arguments of the attention call in progress, read by the pool's threads (published to them
   * by the pool's dispatch), so the tasks are built once and a call allocates nothing.
   */
  static final class Call {
    int group;
    int rows;
    int tiles;
    int[] positions;
    int heads;
    float[] queries;
    float scale;
    float[] out;
    float[][] observed; // query (from observedQuery0) × heads + head
    int observedQuery0;
    int rowsEnd;
    int items;
    AttentionOrder order;
    boolean queries1; // one query in the call: llama.cpp's KQV is a dot product, not tinyBLAS
    int n; // queries in the call
    CacheRelativeRope relative; // non-null: keys before RoPE, rotated here by cache index
    BitSet[] selected; // non-null: per KV head, null or the only retained tokens read (Quest)

    /** The next item to claim: threads take items one at a time, so a late thread takes fewer. */
    final java.util.concurrent.atomic.AtomicInteger next =
        new java.util.concurrent.atomic.AtomicInteger();
  }

  private final Call call = new Call();

  private final Parallel.ChunkTask tilesTask = this::runTiles;
  private final Parallel.ChunkTask splitTask = this::runSplit;
  private final SplitAttention split = new SplitAttention();

  /** Parts per KV head of the last decode call without an observer (1: not split). */
  int splitParts() {
    return split.lastParts;
  }

  /** Items are {@link SplitAttention}'s (KV head, tile, part), claimed one at a time. */
  private void runSplit(int chunk, int start, int end) {
    Call c = call;
    AttentionTile tile = scratch.tile(chunk);
    for (int item; (item = c.next.getAndIncrement()) < c.items; ) {
      split.attend(own, tile, item, c);
    }
  }

  private final Parallel.ChunkTask observedRowTask = this::runObservedRow;

  /** Items are (KV head, tile of rows), KV head major, claimed one at a time. */
  private void runTiles(int chunk, int start, int end) {
    Call c = call;
    AttentionTile tile = scratch.tile(chunk);
    for (int item; (item = c.next.getAndIncrement()) < c.items; ) {
      int g = item / c.tiles;
      int first = (item % c.tiles) * TILE_ROWS;
      int last = Math.min(c.rows, first + TILE_ROWS);
      attend(tile, g, first, last, c);
    }
  }

  /**
   * Items are KV heads, claimed one at a time; the rows are those of a chunk of queries ({@code
   * [call.rows, call.rowsEnd)}), one per query and group head.
   */
  private void runObservedRow(int chunk, int start, int end) {
    Call c = call;
    AttentionTile tile = scratch.tile(chunk);
    for (int g; (g = c.next.getAndIncrement()) < c.items; ) {
      attend(tile, g, c.rows, c.rowsEnd, c);
    }
  }

  private void attend(AttentionTile tile, int g, int first, int last, Call c) {
    if (c.selected != null && c.selected[g] != null) {
      own.attendTile(tile, g, first, last, c);
    } else if (c.order == AttentionOrder.LLAMA_CPP
        && LlamaCppTileAttention.handles(store.head(g))) {
      llamaCpp.attendTile(tile, g, first, last, c);
    } else if (c.order == AttentionOrder.LLAMA_CPP
        && c.observed == null
        && c.relative == null
        && LlamaCppFlashAttention.handles(store.head(g))) {
      flash.attendTile(tile, g, first, last, c);
    } else {
      own.attendTile(tile, g, first, last, c);
    }
  }

  /** Runs {@code task} on up to {@code items} chunks; each chunk claims items from {@code call}. */
  private static void run(Parallel pool, int items, Parallel.ChunkTask task) {
    if (pool == null) {
      task.run(0, 0, 1);
    } else {
      pool.forChunks(Math.min(items, pool.threads()), 1, task);
    }
  }

  @Override
  public int size(int kvHead) {
    return store.head(kvHead).size();
  }

  /**
   * The blocks' bytes and, once, the layer's format tables ({@link #tableBytes}): what the layer
   * holds. {@link #bytes(int)} is a head's blocks only.
   */
  @Override
  public long bytes() {
    return store.bytes() + tableBytes;
  }

  /**
   * Bytes of the tables the layer's formats read (CQ's codebooks, Lexico's dictionaries, KVQuant's
   * per-channel tables; {@link io.kvslim.kv.format.KvFormat#tableBytes}), held outside the block
   * pool: part of {@link #bytes()}, 0 for formats without tables.
   */
  public long tableBytes() {
    return tableBytes;
  }

  @Override
  public long bytes(int kvHead) {
    return store.head(kvHead).bytes();
  }
}
