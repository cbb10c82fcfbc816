package io.kvslim.kv.policy;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.store.ColdStorage;
import io.kvslim.kv.store.ColdStore;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvBlock;
import io.kvslim.kv.store.SpillStats;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.IdentityHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;

/**
 * The cold tier of a spill-and-recall policy (Quest, ShadowKV, PQCache with {@code spill=true}):
 * the blocks of a selecting head that are outside its always-resident part leave RAM for a {@link
 * ColdStore} of the cache's own (by default a temporary, memory-mapped {@link
 * io.kvslim.kv.store.SpillFile}; with {@code --kv-tier} the {@link ColdStorage} the engine gives
 * through {@link #use}: a spill file in the tier's directory or blocks in Redis), deleted by {@link
 * #close}, and each decode step fetches back only the blocks its selection reads, checked against
 * their checksum.
 *
 * <p>Per (layer, KV head) and decode step, {@link #sync} runs after the policy has chosen the
 * tokens the next attention reads: a settled block ({@link HeadStore#spillable}) holding a selected
 * token is fetched if cold; one holding none and no token of the resident set (the method's sinks
 * or recent window) is spilled. After the layer's attention ({@link #release}, or at the latest
 * after the step, {@link #afterStep}) the blocks fetched for it go cold again, except the {@code
 * cacheBlocks} most recently fetched of each head, kept in RAM as an LRU cache; in a prefill step
 * every settled block spills after its layer's attention ({@link #spillSettled}). So between steps
 * the cache holds in RAM its resident tokens, the LRU blocks and the policy's own structures (page
 * bounds, landmarks, codes); a step's working set adds one layer's selected blocks, fetched from
 * the store. Unselected blocks are never read: the attention skips them ({@link
 * io.kvslim.kv.cache.PagedLayerKv#restrictNextAttention}), so the results are bit-identical to the
 * same policy with everything in RAM. Without an LRU cache ({@code cacheBlocks} 0, the default) a
 * block whose formats are per-token rows is fetched in part, from a store that reads byte ranges (a
 * spill file, a Redis tier): only its sub-blocks of 8 slots that hold a selected token, each
 * checked against a checksum of its own ({@link HeadStore#fetch(int, ColdStore, BitSet, int)}; a
 * Redis tier reads them with pipelined {@code GETRANGE}s, announced per head and step by {@link
 * ColdStore#prefetchParts}); the attention gives the block's other tokens weight 0 (score −∞), so
 * their zeroed rows change nothing. The fetched-bytes counters count the bytes really read.
 *
 * <p>Used from the decode step's calling thread.
 */
public final class ColdSpill implements AutoCloseable {
  private final int cacheBlocks;
  private ColdStorage storage; // null: a spill file in the temporary directory
  private ColdStore file; // opened at the first spill
  private long counted; // bytes of the store already added to the storage's counters
  private final Map<HeadStore, LinkedHashSet<KvBlock>> recent = new IdentityHashMap<>();
  private final Map<HeadStore, String> names = new IdentityHashMap<>(); // "l3-h1"
  private final List<HeadStore> fetchedHeads = new ArrayList<>();
  private final List<KvBlock> fetchedBlocks = new ArrayList<>();
  private double stepFetched;
  private double fetched;
  private long fetchedCount;
  private long steps;
  private boolean closed;

  /** A spill keeping, per head, the {@code cacheBlocks} most recently fetched blocks in RAM. */
  public ColdSpill(int cacheBlocks) {
    if (cacheBlocks < 0) {
      throw new IllegalArgumentException("spill_cache must be >= 0, got " + cacheBlocks);
    }
    this.cacheBlocks = cacheBlocks;
  }

  /**
   * Spills into stores of {@code storage} instead of a temporary file; only before the first spill.
   *
   * @throws IllegalStateException if a block was spilled already
   */
  public void use(ColdStorage storage) {
    if (file != null) {
      throw new IllegalStateException("the KV spill has its store already");
    }
    this.storage = storage;
  }

  /**
   * Brings {@code head} in line with the next attention's reads: {@code selected} the retained
   * tokens it reads (null: all of them), {@code resident} those that always stay in RAM (null: none
   * beyond the unsettled tail).
   */
  public void sync(HeadStore head, BitSet selected, BitSet resident) {
    List<KvBlock> blocks = head.blocks();
    // with no LRU cache, a fetched block is back in the store after the layer's attention, which
    // reads only the selected tokens: only their rows are fetched (sub-blocks, where the formats
    // are per-token rows); a cached block would serve later selections and is fetched whole
    BitSet rows = cacheBlocks == 0 ? selected : null;
    if (file != null) {
      List<ColdStore.Slot> wanted = new ArrayList<>();
      List<ColdStore.Slot> partly = new ArrayList<>();
      List<long[]> ranges = new ArrayList<>();
      boolean parts = file.readsParts();
      int retained = 0;
      for (int i = 0, n = blocks.size(); i < n; i++) {
        KvBlock b = blocks.get(i);
        int live = b.liveCount();
        if (b.cold() && (selected == null || any(selected, retained, live))) {
          long[] r = parts ? head.fetchRanges(i, file, rows, retained) : null;
          if (r == null) {
            wanted.add(b.coldSlot());
          } else if (r.length > 0) {
            partly.add(b.coldSlot());
            ranges.add(r);
          }
        }
        retained += live;
      }
      if (!wanted.isEmpty()) {
        file.prefetch(wanted); // one round trip to a remote tier
      }
      if (!partly.isEmpty()) {
        file.prefetchParts(partly, ranges); // the selected sub-blocks' bytes, one round trip
      }
    }
    int retained = 0;
    for (int i = 0, n = blocks.size(); i < n; i++) {
      KvBlock b = blocks.get(i);
      int live = b.liveCount();
      boolean read = selected == null || any(selected, retained, live);
      if (b.cold() || b.partial()) {
        if (read) {
          fetch(head, i, b, rows, retained);
        }
      } else if (!read && !any(resident, retained, live) && !cached(head, b) && head.spillable(i)) {
        spill(head, i);
      }
      retained += live;
    }
  }

  /** Names the KV heads of {@code paged} (layer {@code layer}) in the keys of a tier's store. */
  public void name(io.kvslim.kv.cache.PagedLayerKv paged, int layer) {
    for (int g = 0; g < paged.kvHeads(); g++) {
      names.putIfAbsent(paged.head(g), "l" + layer + "-h" + g);
    }
  }

  private void spill(HeadStore head, int index) {
    ColdStore f = file();
    String name = names.get(head);
    if (name != null) {
      f.label(name + "-b" + index);
    }
    head.spill(index, f); // writes the block unless it was written before
    f.label(null);
    long written = f.bytesWritten();
    if (written > counted) {
      SpillStats st = stats();
      st.blocksSpilled.incrementAndGet();
      st.bytesSpilled.addAndGet(written - counted);
      st.coldBytes.addAndGet(written - counted);
      counted = written;
    }
  }

  private SpillStats stats() {
    return storage != null ? storage.stats() : LOCAL_STATS;
  }

  private static final SpillStats LOCAL_STATS = new SpillStats(); // of caches without a storage

  /**
   * During a prefill step, after a layer's attention (nothing reads the layer again in the step):
   * every settled block of {@code head} leaves RAM, the method's resident part included, since none
   * is known before the prompt ends (ShadowKV's outlier chunks, PQCache's index, Quest's page
   * bounds are built from all the prompt's keys at the first decode step, which fetches them, layer
   * by layer, and keeps its resident part). The next prefill chunk fetches the layer back for its
   * attention ({@link #fetchAll}), so a prompt's KV is in RAM one layer at a time.
   */
  public void spillSettled(HeadStore head) {
    List<KvBlock> blocks = head.blocks();
    for (int i = 0, n = blocks.size(); i < n; i++) {
      KvBlock b = blocks.get(i);
      if (!b.cold() && !cached(head, b) && head.spillable(i)) {
        spill(head, i);
      }
    }
  }

  /** Fetches every cold block of {@code head} (an attention over all its tokens follows). */
  public void fetchAll(HeadStore head) {
    sync(head, null, null);
  }

  private void fetch(HeadStore head, int index, KvBlock b, BitSet rows, int retained) {
    double n = head.fetch(index, file, rows, retained);
    stats().bytesFetched.addAndGet((long) n);
    stats().blocksFetched.incrementAndGet();
    stepFetched += n;
    fetchedCount++;
    fetchedHeads.add(head);
    fetchedBlocks.add(b);
  }

  private boolean cached(HeadStore head, KvBlock b) {
    LinkedHashSet<KvBlock> lru = recent.get(head);
    return lru != null && lru.contains(b);
  }

  private static boolean any(BitSet tokens, int from, int count) {
    if (tokens == null) {
      return false;
    }
    int next = tokens.nextSetBit(from);
    return next >= 0 && next < from + count;
  }

  private ColdStore file() {
    if (closed) {
      throw new IllegalStateException("the KV spill is closed");
    }
    if (file == null) {
      file = storage != null ? storage.open() : new io.kvslim.kv.store.SpillFile(null);
    }
    return file;
  }

  /**
   * After a step: the blocks fetched for it go cold again, but the {@code cacheBlocks} most
   * recently fetched of each head; a decode step's fetched bytes are added to the totals.
   */
  public void afterStep(KvCache.StepKind kind) {
    release();
    if (file != null) {
      file.flush(); // the step's spilled blocks leave in one batch
    }
    if (kind == KvCache.StepKind.DECODE) {
      fetched += stepFetched;
      steps++;
    }
    stepFetched = 0;
  }

  /**
   * After a layer's attention (nothing reads it again in the step) or a step: the blocks fetched
   * since go cold again, but the {@code cacheBlocks} most recently fetched of each head. So a
   * step's fetched blocks are in RAM one layer at a time.
   */
  public void release() {
    for (int i = 0; i < fetchedBlocks.size(); i++) {
      HeadStore head = fetchedHeads.get(i);
      KvBlock b = fetchedBlocks.get(i);
      LinkedHashSet<KvBlock> lru = recent.computeIfAbsent(head, h -> new LinkedHashSet<>());
      lru.remove(b);
      lru.add(b); // most recent last
      if (cacheBlocks == 0) {
        lru.clear();
        spillAgain(head, b);
      }
      while (lru.size() > cacheBlocks) {
        KvBlock oldest = lru.removeFirst();
        spillAgain(head, oldest);
      }
    }
    fetchedHeads.clear();
    fetchedBlocks.clear();
  }

  /** Drops the RAM copy of {@code b} if it is still one of {@code head}'s blocks. */
  private void spillAgain(HeadStore head, KvBlock b) {
    List<KvBlock> blocks = head.blocks();
    for (int i = 0; i < blocks.size(); i++) {
      if (blocks.get(i) == b) {
        if (!b.cold() && head.spillable(i)) {
          spill(head, i);
        }
        return;
      }
    }
  }

  /** Bytes fetched from the spill file by the decode steps so far. */
  public double bytesFetched() {
    return fetched;
  }

  /** Mean bytes fetched per decode step (0 before the first). */
  public double bytesFetchedPerStep() {
    return steps == 0 ? 0 : fetched / steps;
  }

  /** Blocks fetched so far (every step, decode or not). */
  public long blocksFetched() {
    return fetchedCount;
  }

  /** Bytes written to the cold store (each spilled block once). */
  public long bytesSpilled() {
    return file == null ? 0 : file.bytesWritten();
  }

  /** The cold store, or null before the first spill (for tests). */
  public ColdStore store() {
    return file;
  }

  /** The spill file, or null before the first spill or when the store is not a file. */
  public io.kvslim.kv.store.SpillFile spillFile() {
    return file instanceof io.kvslim.kv.store.SpillFile f ? f : null;
  }

  /** Deletes the cold store's blocks. The cache's blocks are released separately. */
  @Override
  public void close() {
    if (closed) {
      return;
    }
    closed = true;
    recent.clear();
    fetchedHeads.clear();
    fetchedBlocks.clear();
    if (file != null) {
      stats().coldBytes.addAndGet(-counted);
      file.close();
    }
  }
}
