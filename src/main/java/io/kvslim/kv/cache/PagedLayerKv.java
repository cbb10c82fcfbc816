package io.kvslim.kv.cache;

import io.kvslim.kv.AttentionObserver;
import io.kvslim.kv.AttentionOrder;
import io.kvslim.kv.DenseLayerKv;
import io.kvslim.kv.LayerKv;
import io.kvslim.kv.Rotary;
import io.kvslim.kv.attention.AttentionKernels;
import io.kvslim.kv.format.KvFormat;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvBlock;
import io.kvslim.kv.store.LayerStore;
import io.kvslim.tensor.LlamaCppMath;
import io.kvslim.tensor.Parallel;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.BitSet;
import java.util.List;

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
  private Rotary rope; // with cache-relative positions: the model's RoPE, applied at read time
  private float[][] observed = new float[0][];

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
  }

  /** Per-thread attention buffers, grown on demand and reused: nothing is allocated per token. */
  public static final class Scratch {
    private Tile[] tiles = new Tile[0];
    private final CacheRelativeRope relative = new CacheRelativeRope();

    Tile tile(int chunk) {
      return tiles[chunk];
    }

    void ensureThreads(int threads) {
      if (tiles.length < threads) {
        Tile[] grown = Arrays.copyOf(tiles, threads);
        for (int t = tiles.length; t < threads; t++) {
          grown[t] = new Tile();
        }
        tiles = grown;
      }
    }
  }

  /** One thread's buffers for a tile of rows. */
  static final class Tile {
    int touched; // sum of prefetching reads, kept so that they are not dropped
    float[] scores = new float[0]; // rows × stride, retained order
    int stride;
    float[] prepared = new float[0]; // rows × preparedStride
    int preparedStride;
    float[] slots = new float[0]; // one block's raw scores, or its weights by slot
    float[] acc = new float[0]; // rows × headDim
    float[] accOfProbabilities = new float[0]; // rows × headDim, blocks that take probabilities
    float[] sums = new float[TILE_ROWS];
    float[] work = new float[0];
    int[] rowList = new int[0];
    float[] rowScores = new float[0]; // one block's raw scores of each row that sees it
    float[] rowWeights = new float[0]; // one block part's weights by slot, row r at r × slots
    int[] rowOffsets = new int[TILE_ROWS];
    int[] rowPositions = new int[TILE_ROWS];
    float[] blockRows = new float[0]; // llama.cpp order: one block's keys or values as floats
    float[] lanes = new float[0]; // llama.cpp order: rows × lanes × headDim partial sums
    final float[] dotLanes = new float[64];

    void ensureLlamaCpp(int rows, int lanes, int headDim, int blockCapacity) {
      if (blockRows.length < blockCapacity * headDim) {
        blockRows = new float[blockCapacity * headDim];
      }
      if (this.lanes.length < rows * lanes * headDim) {
        this.lanes = new float[Math.max(TILE_ROWS * 16, rows * 64) * headDim];
      }
    }

    int[] slotPositions = new int[0]; // one block's positions, read when a row needs the mask
    // cache-relative positions: the rows' queries and one block's keys, rotated by cache index
    float[] rolledQueries = new float[0];
    final int[] rolledOffsets = new int[TILE_ROWS];
    float[] rolledKeys = new float[0];
    MemorySegment rolledKeySegment = MemorySegment.NULL;
    boolean probabilities; // whether some block of the tile added normalized probabilities

    void ensure(int rows, int size, int headDim, int blockCapacity) {
      if (stride < size) {
        stride = Math.max(size, stride + stride / 2 + 64); // grows geometrically with the cache
        scores = new float[TILE_ROWS * stride];
      }
      if (acc.length < rows * headDim) {
        acc = new float[TILE_ROWS * headDim];
        accOfProbabilities = new float[TILE_ROWS * headDim];
        work = new float[KvFormat.workLength(headDim)];
      }
      if (slots.length < blockCapacity) {
        slots = new float[blockCapacity];
      }
      if (slotPositions.length < blockCapacity) {
        slotPositions = new int[blockCapacity];
      }
    }

    void ensurePrepared(int rows, int length) {
      preparedStride = length;
      if (prepared.length < rows * length) {
        prepared = new float[TILE_ROWS * length];
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
    if (!cacheRelative) {
      return false;
    }
    this.rope = rope;
    return true;
  }

  /** Evicts the tokens of {@code kvHead} whose retained indices are set. */
  public void evict(int kvHead, BitSet indices) {
    store.evict(kvHead, indices);
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
    attendStored(n, positions, heads, queries, scale, out, observer, pool, order);
    // KIVI: the step's attention has read its tokens exact; now what left the window is quantized
    store.flushResidual();
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
    if (cacheRelative) {
      if (rope == null) {
        throw new IllegalStateException(
            "this layer stores keys before RoPE (cache-relative positions) and attends only"
                + " through the model, which hands it its RoPE");
      }
      int largest = 0;
      for (int g = 0; g < kvHeads; g++) {
        largest = Math.max(largest, store.head(g).size());
      }
      scratch.relative.ensure(rope, largest);
      c.relative = scratch.relative;
    }
    scratch.ensureThreads(pool == null ? 1 : pool.threads());
    try {
      if (observer == null) {
        c.rows = n * c.group; // per KV head: query i, head-in-group j is row i·group + j
        c.tiles = (c.rows + TILE_ROWS - 1) / TILE_ROWS;
        c.observed = null;
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
    }
  }

  /**
   * The arguments of the attention call in progress, read by the pool's threads (published to them
   * by the pool's dispatch), so the tasks are built once and a call allocates nothing.
   */
  private static final class Call {
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

    /** The next item to claim: threads take items one at a time, so a late thread takes fewer. */
    final java.util.concurrent.atomic.AtomicInteger next =
        new java.util.concurrent.atomic.AtomicInteger();
  }

  private final Call call = new Call();

  private final Parallel.ChunkTask tilesTask = this::runTiles;
  private final Parallel.ChunkTask observedRowTask = this::runObservedRow;

  /** Items are (KV head, tile of rows), KV head major, claimed one at a time. */
  private void runTiles(int chunk, int start, int end) {
    Call c = call;
    Tile tile = scratch.tile(chunk);
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
    Tile tile = scratch.tile(chunk);
    for (int g; (g = c.next.getAndIncrement()) < c.items; ) {
      attend(tile, g, c.rows, c.rowsEnd, c);
    }
  }

  private void attend(Tile tile, int g, int first, int last, Call c) {
    if (c.order == AttentionOrder.LLAMA_CPP && allF32(store.head(g))) {
      attendTileLlamaCpp(tile, g, first, last, c);
    } else {
      attendTile(tile, g, first, last, c);
    }
  }

  private static boolean allF32(HeadStore head) {
    for (KvBlock block : head.blocks()) {
      if (block.keyFormat() != KvFormats.F32 || block.valueFormat() != KvFormats.F32) {
        return false;
      }
    }
    return true;
  }

  /** Runs {@code task} on up to {@code items} chunks; each chunk claims items from {@code call}. */
  private static void run(Parallel pool, int items, Parallel.ChunkTask task) {
    if (pool == null) {
      task.run(0, 0, 1);
    } else {
      pool.forChunks(Math.min(items, pool.threads()), 1, task);
    }
  }

  /**
   * Attention of rows {@code [first, last)} of KV head {@code g} (row {@code r} is query {@code r /
   * group}, head {@code g·group + r % group}); with {@code observed}, each row's probabilities go
   * to {@code observed[head]}.
   */
  private void attendTile(Tile tile, int g, int first, int last, Call c) {
    int group = c.group;
    float[] queries = c.queries;
    float scale = c.scale;
    float[] out = c.out;
    float[][] observed = c.observed;
    HeadStore head = store.head(g);
    List<KvBlock> blocks = head.blocks();
    int size = head.size();
    int rows = last - first;
    tile.ensure(rows, size, headDim, store.format().blockTokens());
    setUpRows(tile, g, first, last, c);
    int[] rowPositions = tile.rowPositions;
    int[] rowOffsets = tile.rowOffsets;
    int[] queryOffsets = rowOffsets;
    if (c.relative != null) {
      queries = c.relative.queries(tile, c.queries, headDim, size - c.n, c.group, first, rows);
      queryOffsets = tile.rolledOffsets;
    }
    float[] scores = tile.scores;
    int stride = tile.stride;
    float[] slots = tile.slots;
    KvFormat prepared = null;
    int retained = 0;
    if (PREFETCH) {
      tile.touched += touchBlocks(blocks);
    }
    for (int b = 0, count = blocks.size(); b < count; b++) {
      KvBlock block = blocks.get(b);
      int live = block.liveCount();
      int filled = block.filled();
      if (live == 0) {
        continue;
      }
      if (slots.length < block.capacity()) {
        tile.slots = slots = new float[block.capacity()];
      }
      KvFormat keyFormat = block.keyFormat();
      MemorySegment keys = block.keys();
      if (c.relative != null) {
        keys = c.relative.keys(tile, block, retained, headDim);
        keyFormat = KvFormats.F32;
      }
      if (keyFormat != prepared) {
        tile.ensurePrepared(rows, keyFormat.preparedQueryLength(headDim));
        for (int r = 0; r < rows; r++) {
          keyFormat.prepareQuery(
              queries, queryOffsets[r], headDim, tile.prepared, r * tile.preparedStride);
        }
        prepared = keyFormat;
      }
      boolean dense = live == filled;
      boolean positionsRead = false;
      int[] slotPositions = tile.slotPositions;
      // the rows that see some of the block score it together (a format may decode keys once)
      int[] list = tile.rowList;
      if (list.length < rows) {
        tile.rowList = list = new int[rows];
      }
      int seeing = 0;
      for (int r = 0; r < rows; r++) {
        if (block.minPosition() > rowPositions[r]) {
          int at = r * stride + retained;
          Arrays.fill(scores, at, at + live, Float.NEGATIVE_INFINITY);
        } else {
          list[seeing++] = r;
        }
      }
      int capacity = block.capacity();
      if (tile.rowScores.length < seeing * capacity) {
        tile.rowScores = new float[Math.max(rows, TILE_ROWS) * capacity];
      }
      if (tile.blockRows.length < capacity * headDim) {
        tile.blockRows = new float[capacity * headDim];
      }
      float[] rowScores = tile.rowScores;
      keyFormat.scoresRows(
          keys,
          filled,
          capacity,
          headDim,
          tile.prepared,
          tile.preparedStride,
          list,
          seeing,
          rowScores,
          capacity,
          tile.work,
          tile.blockRows);
      for (int i = 0; i < seeing; i++) {
        int r = list[i];
        int position = rowPositions[r];
        int at = r * stride + retained;
        int raw = i * capacity;
        if (dense && block.maxPosition() <= position) {
          AttentionKernels.scale(rowScores, raw, scale, scores, at, filled);
        } else {
          if (!positionsRead) {
            block.positions(slotPositions, 0);
            positionsRead = true;
          }
          for (int s = 0; s < filled; s++) {
            if (block.isLive(s)) {
              scores[at++] =
                  slotPositions[s] > position
                      ? Float.NEGATIVE_INFINITY
                      : rowScores[raw + s] * scale;
            }
          }
        }
      }
      retained += live;
    }
    assert retained == size : "live counts are inconsistent";
    float[] sums = tile.sums;
    for (int r = 0; r < rows; r++) {
      sums[r] = AttentionKernels.softmaxWeights(scores, r * stride, size);
    }
    float[] acc = tile.acc;
    Arrays.fill(acc, 0, rows * headDim, 0f);
    tile.probabilities = false;
    retained = 0;
    for (int b = 0, count = blocks.size(); b < count; b++) {
      KvBlock block = blocks.get(b);
      int live = block.liveCount();
      if (live == 0) {
        continue;
      }
      int filled = block.filled();
      int split = Math.min(block.split(), filled);
      if (split > 0) {
        accumulatePart(
            tile,
            block,
            rows,
            stride,
            retained,
            block.valueFormat(),
            block.values(),
            0,
            split,
            split);
      }
      if (split < filled) {
        accumulatePart(
            tile,
            block,
            rows,
            stride,
            retained,
            block.residualValueFormat(),
            block.residualValues(),
            split,
            filled,
            block.capacity() - block.split());
      }
      retained += live;
    }
    boolean probabilities = tile.probabilities;
    for (int r = 0; r < rows; r++) {
      float inverse = sums[r] == 0f ? 0f : 1f / sums[r];
      AttentionKernels.scale(acc, r * headDim, inverse, out, rowOffsets[r], headDim);
      if (probabilities) {
        for (int j = 0; j < headDim; j++) {
          out[rowOffsets[r] + j] += tile.accOfProbabilities[r * headDim + j];
        }
      }
      if (observed != null) {
        int h = g * group + (first + r) % group;
        int slot = ((first + r) / group - c.observedQuery0) * c.heads + h;
        AttentionKernels.scale(scores, r * stride, inverse, observed[slot], 0, size);
      }
    }
  }

  static final boolean PREFETCH = !Boolean.getBoolean("kvslim.noprefetch");

  /** Arrays up to this size are touched ahead; larger ones stream well by themselves (F32). */
  private static final long TOUCHED_BYTES = 4096;

  /**
   * Reads one byte of every cache line of a head's small block arrays before the attention reads
   * them: compressed blocks are many small arrays reached through a chain of objects, and a pass
   * that only loads lets the core overlap all of their misses instead of meeting them one block at
   * a time (eleven KIVI-2 caches at depth 384: attention 20% faster, `DecodeStepMain`).
   */
  static int touchBlocks(List<KvBlock> blocks) {
    int sum = 0;
    for (int b = 0, count = blocks.size(); b < count; b++) {
      KvBlock block = blocks.get(b);
      sum += touch(block.keys()) + touch(block.values());
      MemorySegment residual = block.residualValues();
      if (residual != null) {
        sum += touch(residual);
      }
    }
    return sum;
  }

  private static int touch(MemorySegment segment) {
    if (segment.byteSize() > TOUCHED_BYTES
        || !(segment.heapBase().orElse(null) instanceof byte[] array)) {
      return 0;
    }
    int sum = 0;
    for (int i = 0; i < array.length; i += 64) {
      sum += array[i];
    }
    return sum;
  }

  /** Query offset and position of each row of the tile. */
  private void setUpRows(Tile tile, int g, int first, int last, Call c) {
    for (int r = 0; r < last - first; r++) {
      int query = (first + r) / c.group;
      int h = g * c.group + (first + r) % c.group;
      tile.rowOffsets[r] = (query * c.heads + h) * headDim;
      tile.rowPositions[r] = c.positions[query];
    }
  }

  private static final ValueLayout.OfFloat FLOAT_LE =
      ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

  /** Copies the {@code filled} F32 rows of a block's keys or values to {@code dst}. */
  private void readRows(MemorySegment rows, int filled, float[] dst) {
    MemorySegment.copy(rows, FLOAT_LE, 0, dst, 0, filled * headDim);
  }

  /**
   * {@link AttentionOrder#LLAMA_CPP}'s arithmetic for rows {@code [first, last)} of KV head {@code
   * g}.
   */
  private void attendTileLlamaCpp(Tile tile, int g, int first, int last, Call c) {
    HeadStore head = store.head(g);
    List<KvBlock> blocks = head.blocks();
    int size = head.size();
    int rows = last - first;
    int blockCapacity = store.format().blockTokens();
    for (KvBlock block : blocks) {
      blockCapacity = Math.max(blockCapacity, block.capacity());
    }
    // tinyBLAS: 16 partial sums over all tokens; vec_dot: 64 over the tokens before the last
    // multiple of 64 of the length llama.cpp pads the cache to (32), then one by one
    int laneCount = c.queries1 ? 64 : 16;
    int laneEnd = c.queries1 ? ((size + 31) & ~31) & ~63 : size;
    tile.ensure(rows, size, headDim, blockCapacity);
    tile.ensureLlamaCpp(rows, laneCount, headDim, blockCapacity);
    setUpRows(tile, g, first, last, c);
    int[] rowPositions = tile.rowPositions;
    int[] rowOffsets = tile.rowOffsets;
    float[] scores = tile.scores;
    int stride = tile.stride;
    float[] keys = tile.blockRows;
    float[] queries = c.queries;
    int[] queryOffsets = rowOffsets;
    if (c.relative != null) {
      queries = c.relative.queries(tile, c.queries, headDim, size - c.n, c.group, first, rows);
      queryOffsets = tile.rolledOffsets;
    }
    int retained = 0;
    for (KvBlock block : blocks) {
      int live = block.liveCount();
      int filled = block.filled();
      if (live == 0) {
        continue;
      }
      readRows(block.keys(), filled, keys);
      if (c.relative != null) {
        c.relative.rotateLive(block, retained, keys, headDim);
      }
      for (int r = 0; r < rows; r++) {
        int position = rowPositions[r];
        int at = r * stride + retained;
        for (int s = 0; s < filled; s++) {
          if (block.isLive(s)) {
            scores[at++] =
                block.position(s) > position
                    ? Float.NEGATIVE_INFINITY
                    : LlamaCppMath.dot(
                            queries, queryOffsets[r], keys, s * headDim, headDim, tile.dotLanes)
                        * c.scale;
          }
        }
      }
      retained += live;
    }
    for (int r = 0; r < rows; r++) {
      softmax(scores, r * stride, size, tile.dotLanes);
    }
    float[] values = tile.blockRows;
    float[] lanes = tile.lanes;
    int laneRow = laneCount * headDim;
    Arrays.fill(lanes, 0, rows * laneRow, 0f);
    retained = 0;
    for (KvBlock block : blocks) {
      int live = block.liveCount();
      int filled = block.filled();
      if (live == 0) {
        continue;
      }
      int blockFirst = retained;
      retained += live;
      if (blockFirst >= laneEnd) {
        continue;
      }
      readRows(block.values(), filled, values);
      for (int r = 0; r < rows; r++) {
        int k = blockFirst;
        for (int s = 0; s < filled && k < laneEnd; s++) {
          if (!block.isLive(s)) {
            continue;
          }
          float p = scores[r * stride + k];
          if (p != 0f) { // fma(0, v, sum) = sum
            int lane = k % laneCount;
            AttentionKernels.addWeighted(
                p, values, s * headDim, lanes, r * laneRow + lane * headDim, headDim);
          }
          k++;
        }
      }
    }
    float[] out = c.out;
    for (int r = 0; r < rows; r++) {
      int base = r * laneRow;
      if (laneCount == 64) {
        for (int d = 0; d < headDim; d++) {
          for (int l = 0; l < 16; l++) {
            int at = base + l * headDim + d;
            lanes[at] =
                (lanes[at] + lanes[at + 32 * headDim])
                    + (lanes[at + 16 * headDim] + lanes[at + 48 * headDim]);
          }
        }
      }
      for (int d = 0; d < headDim; d++) {
        out[rowOffsets[r] + d] = LlamaCppMath.sum16(lanes, base + d, headDim);
      }
    }
    if (laneEnd < size) {
      addRemaining(tile, blocks, rows, laneEnd, c);
    }
    if (c.observed != null) {
      for (int r = 0; r < rows; r++) {
        int h = g * c.group + (first + r) % c.group;
        int slot = ((first + r) / c.group - c.observedQuery0) * c.heads + h;
        System.arraycopy(scores, r * stride, c.observed[slot], 0, size);
      }
    }
  }

  /**
   * The tokens from retained index {@code from} on, added one at a time to the output ({@code
   * ggml_vec_dot_f32}'s leftovers: product rounded, then sum).
   */
  private void addRemaining(Tile tile, List<KvBlock> blocks, int rows, int from, Call c) {
    float[] values = tile.blockRows;
    float[] scores = tile.scores;
    int retained = 0;
    for (KvBlock block : blocks) {
      int live = block.liveCount();
      int filled = block.filled();
      int blockFirst = retained;
      retained += live;
      if (live == 0 || retained <= from) {
        continue;
      }
      readRows(block.values(), filled, values);
      for (int r = 0; r < rows; r++) {
        int o = tile.rowOffsets[r];
        int k = blockFirst;
        for (int s = 0; s < filled; s++) {
          if (!block.isLive(s)) {
            continue;
          }
          if (k >= from) {
            float p = scores[r * tile.stride + k];
            for (int d = 0; d < headDim; d++) {
              c.out[o + d] += p * values[s * headDim + d];
            }
          }
          k++;
        }
      }
    }
  }

  /**
   * Replaces the scores {@code x[off..+n)} by their probabilities as ggml's {@code soft_max}
   * computes them (see {@link AttentionOrder#LLAMA_CPP}); all 0 when no token is visible.
   */
  private static void softmax(float[] x, int off, int n, float[] group) {
    float max = AttentionKernels.max(x, off, n);
    if (max == Float.NEGATIVE_INFINITY) {
      Arrays.fill(x, off, off + n, 0f);
      return;
    }
    double sum = 0;
    for (int k0 = 0; k0 < n; k0 += 16) {
      for (int l = 0; l < 16; l++) {
        int k = k0 + l;
        float e = k < n ? LlamaCppMath.exp(x[off + k] - max) : 0f;
        group[l] = e;
        if (k < n) {
          x[off + k] = e;
        }
      }
      sum += LlamaCppMath.sum16(group, 0);
    }
    float inverse = (float) (1.0 / sum);
    for (int k = 0; k < n; k++) {
      x[off + k] *= inverse;
    }
  }

  /**
   * Adds the values of slots {@code [from, to)} of a block, stored in {@code format} at {@code
   * segment} (slot {@code s} is row {@code s − from}), weighted by the rows' softmax weights, whose
   * first live slot of the block sits at {@code retained} in each row's scores.
   */
  private void accumulatePart(
      Tile tile,
      KvBlock block,
      int rows,
      int stride,
      int retained,
      KvFormat format,
      MemorySegment segment,
      int from,
      int to,
      int capacity) {
    float[] scores = tile.scores;
    float[] sums = tile.sums;
    int filled = block.filled();
    boolean dense = block.liveCount() == filled;
    boolean normalized = format.accumulatesProbabilities();
    if (normalized && !tile.probabilities) {
      Arrays.fill(tile.accOfProbabilities, 0, rows * headDim, 0f);
      tile.probabilities = true;
    }
    // live slots before `from` shift where this part's weights start in the row's scores
    int skipped = 0;
    if (!dense) {
      for (int s = 0; s < from; s++) {
        skipped += block.isLive(s) ? 1 : 0;
      }
    } else {
      skipped = from;
    }
    // the rows that see the block add it together (a format may decode each value once)
    int[] list = tile.rowList;
    if (list.length < rows) {
      tile.rowList = list = new int[rows];
    }
    int k = 0;
    for (int r = 0; r < rows; r++) {
      if (block.minPosition() <= tile.rowPositions[r]) {
        list[k++] = r;
      }
    }
    float[] weights = scores;
    int wOff = retained + skipped;
    int wStride = stride;
    int n = to - from;
    if (normalized || !dense) {
      // each row's weights by slot (0 for dead slots), normalized where the format asks
      if (tile.rowWeights.length < rows * n) {
        tile.rowWeights = new float[Math.max(rows, TILE_ROWS) * Math.max(n, block.capacity())];
      }
      weights = tile.rowWeights;
      for (int i = 0; i < k; i++) {
        int r = list[i];
        float inverse = !normalized ? 1f : sums[r] == 0f ? 0f : 1f / sums[r];
        int kk = r * stride + retained + skipped;
        for (int s = from; s < to; s++) {
          float w = dense || block.isLive(s) ? scores[kk++] : 0f;
          weights[r * n + s - from] = normalized ? w * inverse : w;
        }
      }
      wOff = 0;
      wStride = n;
    }
    format.accumulateBlockRows(
        segment,
        n,
        capacity,
        headDim,
        weights,
        wOff,
        wStride,
        list,
        k,
        normalized ? tile.accOfProbabilities : tile.acc,
        headDim,
        tile.work);
  }

  @Override
  public int size(int kvHead) {
    return store.head(kvHead).size();
  }

  @Override
  public long bytes() {
    return store.bytes();
  }

  @Override
  public long bytes(int kvHead) {
    return store.head(kvHead).bytes();
  }
}
