package io.kvslim.kv.store;

import io.kvslim.kv.format.KvFormat;
import io.kvslim.kv.format.KvFormats;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.Collections;
import java.util.List;
import java.util.Objects;

/**
 * The retained tokens of one (layer, KV head): an ordered list of {@link KvBlock}s from a {@link
 * BlockPool} (DESIGN.md §3.2, METHODS.md M1). Tokens stay in the order they were appended, so
 * attention sums in the same order as an uncompressed cache.
 *
 * <p>What a policy can do here: read sizes, bytes and positions ({@link #size}, {@link #bytes},
 * {@link #positions}), read a token's key or value ({@link #readKey}, {@link #readValue}), evict
 * any set of tokens ({@link #evict}), change the format of a block ({@link #convertBlock}), and
 * keep a token budget ({@link #setTokenBudget}; enforcing it is the policy's job).
 *
 * <p>With a residual window ({@link KvCacheFormat#hasResidual()}), {@link #flushResidual} follows
 * KIVI (METHODS.md Q3): keys wait in the residual format until it holds R tokens, then all R are
 * quantized at once (R/G groups of G tokens per channel, one block each); values stay in the
 * residual format for exactly the latest R tokens, the oldest being quantized when a new token
 * pushes the window past R. {@link LayerStore} flushes after the step's attention, which so reads
 * the step's tokens exact (up to R + 1 values and R keys in a decode step).
 *
 * <p>Not thread-safe; distinct heads may be used from distinct threads.
 */
public final class HeadStore {
  private final BlockPool pool;
  private final KvCacheFormat format;
  private final int headDim;
  private final ArrayList<KvBlock> blocks = new ArrayList<>();
  private final int[] slotPositions;
  private final BlockRepacker repacker;
  private int size;
  private long removals; // tokens removed so far (removals())
  private long bytes;
  private int tokenBudget = Integer.MAX_VALUE;
  private final EntryWeights weights = new EntryWeights();
  // the format's derived parts, computed once: each call compares records (a per-step cost)
  private final boolean hasResidual;
  private final KvFormat appendKeys;
  private final KvFormat values;
  private final KvFormat valueResidual;
  private final boolean blockValues; // values re-encoded with the keys, a block at a time (GEAR)
  private final int sinkTokens; // the first tokens kept in F16 in a block of their own (KVQuant)
  private boolean started; // a token was appended (the sink block, if any, is made)

  HeadStore(BlockPool pool, KvCacheFormat format, int headDim) {
    this.pool = pool;
    this.format = format;
    this.hasResidual = format.hasResidual();
    this.appendKeys = format.appendKeys();
    this.blockValues = format.blockValues();
    this.values = blockValues ? format.residualValues() : format.values();
    this.valueResidual = format.valueResidual();
    this.sinkTokens = hasResidual ? 0 : format.keys().fullPrecisionTokens();
    this.headDim = headDim;
    this.slotPositions = new int[format.blockTokens()];
    this.repacker = new BlockRepacker(headDim, slotPositions);
  }

  /** Live tokens. */
  public int size() {
    return size;
  }

  /**
   * Exact bytes held: the sum of {@link KvBlock#bytes()} over the blocks, plus the compensation
   * entry's ({@link #compensationBytes()}) and the entry weights' ({@link #weightBytes()}).
   */
  public long bytes() {
    return bytes + compensationBytes() + weights.bytes();
  }

  /** Bytes the per-entry merge weights hold ({@link EntryWeights#bytes()}), 0 without any. */
  public long weightBytes() {
    return weights.bytes();
  }

  /**
   * The merge weights of the retained entries (read-only use): attention adds {@code ln w} to each
   * entry's logit (METHODS.md M2).
   */
  public EntryWeights weights() {
    return weights;
  }

  public int headDim() {
    return headDim;
  }

  public KvCacheFormat format() {
    return format;
  }

  private final List<KvBlock> blockView = Collections.unmodifiableList(blocks);

  /** The blocks in token order (read-only view, the same object each time). */
  public List<KvBlock> blocks() {
    return blockView;
  }

  public int tokenBudget() {
    return tokenBudget;
  }

  /** Records how many tokens this head may keep; policies read it and evict down to it. */
  public void setTokenBudget(int tokens) {
    if (tokens < 0) {
      throw new IllegalArgumentException("token budget must be >= 0, got " + tokens);
    }
    tokenBudget = tokens;
  }

  /**
   * How many times tokens were removed from this head (evicted, folded, merged away or released).
   * While it stays the same, the retained tokens change only by appends at the end: the positions
   * of the first {@code k} retained tokens stay those read before.
   */
  public long removals() {
    return removals;
  }

  /**
   * Copies the positions of the live tokens from retained index {@code from} on, in order, into
   * {@code dst[from..size())}; returns the count ({@code size()}).
   */
  public int positionsFrom(int from, int[] dst) {
    int i = 0;
    for (int k = 0; k < blocks.size(); k++) {
      KvBlock b = blocks.get(k);
      int live = b.liveCount();
      if (i + live <= from) {
        i += live; // wholly before: not read
        continue;
      }
      if (live == b.filled() && i >= from) {
        b.positions(dst, i); // every slot live: straight into place
        i += live;
        continue;
      }
      b.positions(slotPositions, 0);
      for (int s = 0; s < b.filled(); s++) {
        if (b.isLive(s)) {
          if (i >= from) {
            dst[i] = slotPositions[s];
          }
          i++;
        }
      }
    }
    return i;
  }

  /** Copies the positions of the live tokens, in order, into {@code dst}; returns the count. */
  public int positions(int[] dst) {
    int i = 0;
    for (int k = 0; k < blocks.size(); k++) { // no iterator: policies call this every step
      KvBlock b = blocks.get(k);
      if (b.liveCount() == b.filled()) {
        b.positions(dst, i); // every slot live: straight into place
        i += b.filled();
        continue;
      }
      b.positions(slotPositions, 0);
      for (int s = 0; s < b.filled(); s++) {
        if (b.isLive(s)) {
          dst[i++] = slotPositions[s];
        }
      }
    }
    return i;
  }

  /**
   * Decodes the keys of all live tokens, in retained order, into {@code dst[0..size·headDim)}, one
   * pass over the blocks; returns the count.
   */
  public int readKeys(float[] dst) {
    int i = 0;
    for (KvBlock b : blocks) {
      for (int s = 0; s < b.filled(); s++) {
        if (b.isLive(s)) {
          b.decodeKey(s, dst, i * headDim);
          if (keyRope != null) {
            rotateAt(dst, i * headDim, b.position(s));
          }
          i++;
        }
      }
    }
    return i;
  }

  private io.kvslim.kv.Rotary keyRope; // non-null: keys stored before RoPE, rotated when read
  private float[] ropeCos = new float[0];
  private float[] ropeSin = new float[0];

  /** Rotates the keys {@link #readKeys} returns at their positions with {@code rope} (KVQuant). */
  void rotateKeysOnRead(io.kvslim.kv.Rotary rope) {
    if (rope != keyRope) {
      keyRope = rope;
      ropeCos = new float[rope.dims() / 2];
      ropeSin = new float[rope.dims() / 2];
    }
  }

  private void rotateAt(float[] x, int off, int position) {
    keyRope.angles(position, ropeCos, ropeSin, 0);
    keyRope.rotate(x, off, 1, headDim, ropeCos, ropeSin, 0);
  }

  /**
   * Decodes the values of all live tokens, in retained order, into {@code dst[0..size·headDim)},
   * one pass over the blocks; returns the count.
   */
  public int readValues(float[] dst) {
    int i = 0;
    for (KvBlock b : blocks) {
      for (int s = 0; s < b.filled(); s++) {
        if (b.isLive(s)) {
          b.decodeValue(s, dst, i++ * headDim);
        }
      }
    }
    return i;
  }

  /** Decodes the key of live token {@code index} (in retained order) into {@code dst}. */
  public void readKey(int index, float[] dst) {
    read(index, dst, true);
  }

  public void readValue(int index, float[] dst) {
    read(index, dst, false);
  }

  private void read(int index, float[] dst, boolean key) {
    if (index < 0 || index >= size) {
      throw new IndexOutOfBoundsException("token " + index + " of " + size);
    }
    for (KvBlock b : blocks) {
      if (index >= b.liveCount()) {
        index -= b.liveCount();
        continue;
      }
      for (int s = 0; s < b.filled(); s++) {
        if (b.isLive(s) && index-- == 0) {
          if (key) {
            b.decodeKey(s, dst, 0);
          } else {
            b.decodeValue(s, dst, 0);
          }
          return;
        }
      }
    }
    throw new IllegalStateException("live counts are inconsistent");
  }

  // ---- appending -------------------------------------------------------------------------------

  private KvBlock appendableTail() {
    if (blocks.isEmpty()) {
      return null;
    }
    KvBlock tail = blocks.getLast();
    boolean sameFormats =
        same(tail.keyFormat(), appendKeys)
            && same(tail.valueFormat(), values)
            && same(tail.residualValueFormat(), valueResidual);
    return sameFormats && !tail.isFull() ? tail : null;
  }

  /** Equal formats, checked by identity first (formats are shared; records compare slowly). */
  private static boolean same(KvFormat a, KvFormat b) {
    return a == b || Objects.equals(a, b);
  }

  private KvBlock newBlock() {
    return new KvBlock(format.blockTokens(), headDim, appendKeys, values, valueResidual);
  }

  private long newBlockBytes() {
    return KvBlock.bytesFor(format.blockTokens(), headDim, appendKeys, values, valueResidual);
  }

  /**
   * The block of the head's first {@link KvFormat#fullPrecisionTokens} tokens, keys and values in
   * F16 (KVQuant's attention sink, {@code first_few_fp16}); filled by the head's first append.
   */
  private KvBlock sinkBlock() {
    return new KvBlock(sinkTokens, headDim, KvFormats.F16, KvFormats.F16, null);
  }

  /**
   * Bytes that appending {@code n} tokens at consecutive positions from {@code firstPosition}
   * allocates (new blocks, and the tail's position codes if the run breaks).
   */
  public long appendBytes(int n, int firstPosition) {
    KvBlock tail = appendableTail();
    if (tail != null
        && n <= tail.capacity() - tail.filled()
        && tail.runContinuesAt(firstPosition)) {
      return 0; // room in the tail, whose positions stay one run (the common decode step)
    }
    int[] pos = new int[n];
    for (int i = 0; i < n; i++) {
      pos[i] = firstPosition + i;
    }
    return appendBytes(n, pos, 0);
  }

  /** Bytes that appending {@code n} tokens at {@code positions[off..off+n)} allocates. */
  public long appendBytes(int n, int[] positions, int off) {
    KvBlock tail = appendableTail();
    long extra = 0;
    int done = 0;
    if (!started && sinkTokens > 0 && n > 0) {
      done = Math.min(n, sinkTokens);
      extra +=
          KvBlock.bytesFor(sinkTokens, headDim, KvFormats.F16, KvFormats.F16, null)
              + PositionCodes.bytes(positions, off, done);
      tail = null;
    }
    if (tail != null && n > 0) {
      done = Math.min(n, tail.capacity() - tail.filled());
      extra += tail.positionBytesAfter(positions, off, done) - tail.positionBytes();
    }
    while (done < n) {
      int count = Math.min(n - done, format.blockTokens());
      extra += newBlockBytes() + PositionCodes.bytes(positions, off + done, count);
      done += count;
    }
    return extra;
  }

  /**
   * Appends {@code n} tokens whose rows start at {@code off} with stride {@code stride}. The caller
   * has reserved {@code expected}, that is {@link #appendBytes(int, int[], int) appendBytes(n,
   * positions, 0)}, on the pool.
   */
  void appendReserved(
      int n, int[] positions, float[] keys, float[] values, int off, int stride, long expected) {
    int done = 0;
    long before = bytes;
    if (!started && sinkTokens > 0 && n > 0) {
      KvBlock sink = sinkBlock();
      blocks.add(sink);
      bytes += sink.bytes();
      long sinkBefore = sink.bytes();
      done = Math.min(n, sinkTokens);
      sink.append(done, positions, 0, keys, off, values, off, stride);
      bytes += sink.bytes() - sinkBefore;
    }
    started |= n > 0;
    while (done < n) {
      KvBlock tail = appendableTail();
      if (tail == null) {
        tail = newBlock();
        blocks.add(tail);
        bytes += tail.bytes();
      }
      long tailBefore = tail.bytes();
      int count = Math.min(n - done, tail.capacity() - tail.filled());
      int rows = off + done * stride;
      tail.append(count, positions, done, keys, rows, values, rows, stride);
      bytes += tail.bytes() - tailBefore;
      done += count;
    }
    size += n;
    if (bytes - before != expected) {
      throw new IllegalStateException(
          "append took " + (bytes - before) + " bytes but reserved " + expected);
    }
  }

  // ---- prefix blocks (KV tiers) ----------------------------------------------------------------

  /**
   * Whether block {@code index} is settled: full, every slot live, positions the run {@code
   * firstPosition..+blockTokens}, keys and values in the format's final formats (out of any
   * residual window). A settled block never changes again while no policy evicts, so its bytes are
   * what a KV tier stores.
   */
  public boolean settled(int index, int firstPosition) {
    KvBlock b = blocks.get(index);
    return b.capacity() == format.blockTokens()
        && b.isFull()
        && b.liveCount() == b.filled()
        && !b.hasMask()
        && b.minPosition() == firstPosition
        && b.maxPosition() == firstPosition + b.capacity() - 1
        && b.residualValueFormat() == null
        && same(b.keyFormat(), format.keys())
        && same(b.valueFormat(), format.values());
  }

  /** Bytes of one settled block ({@link #settled}): what {@link #restoreBlock} allocates. */
  public long settledBlockBytes() {
    return KvBlock.bytesFor(format.blockTokens(), headDim, format.keys(), format.values());
  }

  /**
   * Appends a settled block of {@code blockTokens} consecutive positions from {@code firstPosition}
   * whose key and value bytes are {@code keys} and {@code values} (read back from a KV tier). The
   * head must be empty or end with a full block.
   *
   * @throws KvMemoryExhaustedException if the pool cannot hold the block (nothing changes then)
   * @throws IllegalArgumentException if the sizes are not the format's
   */
  public void restoreBlock(int firstPosition, MemorySegment keys, MemorySegment values) {
    if (!blocks.isEmpty() && !blocks.getLast().isFull()) {
      throw new IllegalStateException("a block is restored only after full blocks");
    }
    KvBlock b =
        KvBlock.restored(
            format.blockTokens(),
            headDim,
            format.keys(),
            format.values(),
            firstPosition,
            keys,
            values);
    pool.reserve(b.bytes());
    blocks.add(b);
    bytes += b.bytes();
    size += b.filled();
  }

  // ---- spilling (spill-and-recall methods) -----------------------------------------------------

  /**
   * Whether block {@code index} can spill ({@link #spill}): full, its keys and values in the
   * format's final formats (out of any residual window), so they never change while no policy
   * evicts or converts it.
   */
  public boolean spillable(int index) {
    KvBlock b = blocks.get(index);
    return b.isFull()
        && b.residualValueFormat() == null
        && b.residualValues() == null
        && b.keyFormat() != io.kvslim.kv.format.DroppedKeys.INSTANCE
        && same(b.keyFormat(), format.keys())
        && same(b.valueFormat(), format.values());
  }

  /**
   * Moves the keys and values of block {@code index} out of RAM into {@code file} ({@link
   * #spillable} blocks only) and gives their bytes back to the pool; {@link #bytes()} then counts
   * only what stays in RAM (header, positions, mask), {@link #coldBytes()} the rest. Spilling a
   * cold block does nothing. Returns the bytes freed.
   */
  public long spill(int index, ColdStore file) {
    KvBlock b = blocks.get(index);
    if (b.cold()) {
      return 0;
    }
    if (!spillable(index)) {
      throw new IllegalStateException("block " + index + " is not settled and cannot spill");
    }
    long before = b.bytes();
    b.spill(file);
    long freed = before - b.bytes();
    bytes -= freed;
    cold += freed;
    pool.release(freed);
    return freed;
  }

  /**
   * Reads block {@code index} back from {@code file} into RAM (checked, {@link ColdStore#read}),
   * reserving its bytes on the pool; a block in RAM is left as it is (a partly fetched one gets its
   * other rows). Returns the bytes read.
   *
   * @throws KvMemoryExhaustedException if the pool cannot hold them (the block stays cold)
   * @throws ColdStore.Corrupt if the spilled bytes fail their checksum (the block stays cold)
   */
  public long fetch(int index, ColdStore file) {
    return fetch(index, file, null, 0);
  }

  /**
   * Like {@link #fetch(int, ColdStore)}, but reads only the rows of the tokens set in {@code
   * selected} (retained indices; the block's first live token is {@code retained}) where the
   * block's formats are per-token rows and the store reads byte ranges: the sub-blocks of 8 slots
   * holding one, each checked ({@link KvBlock#partial}; the others are zero in RAM and must not be
   * attended over). The pool holds the whole block either way. Returns the bytes read.
   */
  public long fetch(int index, ColdStore file, java.util.BitSet selected, int retained) {
    KvBlock b = blocks.get(index);
    if (!b.cold()) {
      return b.partial() ? b.fetch(file, selected, retained) : 0;
    }
    long n = b.spilledBytes();
    pool.reserve(n);
    long read;
    try {
      read = b.fetch(file, selected, retained);
    } catch (RuntimeException e) {
      pool.release(n);
      throw e;
    }
    if (b.cold()) { // nothing selected in it
      pool.release(n);
      return 0;
    }
    bytes += n;
    cold -= n;
    return read;
  }

  /**
   * The byte ranges of cold block {@code index}'s spilled bytes that {@link #fetch(int, ColdStore,
   * java.util.BitSet, int)} reads ({@code from, count} pairs; empty: none), or null when it reads
   * the block whole: what a remote store fetches ahead ({@link ColdStore#prefetchParts}).
   */
  public long[] fetchRanges(int index, ColdStore file, java.util.BitSet selected, int retained) {
    return blocks.get(index).fetchRanges(file, selected, retained);
  }

  /** Bytes of keys and values that are in a spill file only ({@link #spill}), not in RAM. */
  public long coldBytes() {
    return cold;
  }

  private long cold;

  // ---- the residual window (KIVI) --------------------------------------------------------------

  /**
   * Quantizes what has left the residual window: keys once the residual holds R tokens (all of
   * them, a whole block at a time), values beyond the latest R tokens (one token at a time). Never
   * grows the pool (checked by {@link KvCacheFormat#checkHeadDim}).
   *
   * @param scratch at least {@code blockTokens · headDim} floats
   */
  void flushResidual(float[] scratch) {
    if (!hasResidual) {
      return;
    }
    flushKeys(scratch);
    flushValues(scratch);
  }

  private void flushKeys(float[] scratch) {
    KvFormat residual = appendKeys;
    if (same(residual, format.keys())) {
      return;
    }
    int start = blocks.size();
    int waiting = 0;
    while (start > 0
        && same(blocks.get(start - 1).keyFormat(), residual)
        && !wouldGrow(blocks.get(start - 1))) {
      start--;
      waiting += blocks.get(start).liveCount();
    }
    int window = format.keyFlushTokens();
    int target = waiting / window * window;
    int converted = 0;
    for (int i = start; i < blocks.size() && target > 0; i++) {
      KvBlock b = blocks.get(i);
      boolean closed = b.isFull() || i < blocks.size() - 1;
      if (!closed || converted + b.liveCount() > target) {
        return;
      }
      converted += b.liveCount();
      if (wouldGrow(b)) {
        continue; // a block cut short by an eviction: smaller (and exact) as it is
      }
      long before = b.bytes();
      b.convertKeys(format.keys(), scratch);
      if (blockValues) {
        b.convertValues(format.values(), scratch);
      }
      shrink(before, b.bytes());
    }
  }

  /**
   * Whether flushing block {@code b} would take more bytes than its residual rows: a block of a few
   * slots (cut to its live tokens by an eviction) whose quantized form's per-block scales, factors
   * and tables outweigh its rows.
   */
  private boolean wouldGrow(KvBlock b) {
    int cap = b.capacity();
    long after = format.keys().blockBytes(cap, headDim);
    long before = b.keys().byteSize();
    if (blockValues) {
      after += format.values().blockBytes(cap, headDim);
      before += b.values().byteSize();
    }
    return after > before;
  }

  private void flushValues(float[] scratch) {
    if (valueResidual == null) {
      return;
    }
    int start = blocks.size();
    int waiting = 0;
    while (start > 0 && blocks.get(start - 1).residualValueFormat() != null) {
      start--;
      KvBlock b = blocks.get(start);
      if (b.liveCount() == b.filled()) {
        waiting += b.filled() - b.split();
      } else {
        for (int s = b.split(); s < b.filled(); s++) {
          waiting += b.isLive(s) ? 1 : 0;
        }
      }
    }
    int excess = waiting - format.residualTokens();
    for (int i = start; i < blocks.size() && excess > 0; i++) {
      KvBlock b = blocks.get(i);
      int upTo = b.split();
      while (upTo < b.filled() && excess > 0) {
        excess -= b.isLive(upTo++) ? 1 : 0;
      }
      long before = b.bytes();
      b.quantizeValues(upTo, scratch);
      shrink(before, b.bytes());
    }
  }

  /** A flush made a block smaller: count it and give the difference back. */
  private void shrink(long before, long after) {
    if (after > before) {
      throw new IllegalStateException("a residual flush grew a block from " + before + " bytes");
    }
    bytes -= before - after;
    pool.release(before - after);
  }

  // ---- conversion ------------------------------------------------------------------------------

  /**
   * Re-encodes the live tokens of block {@code index} in new formats (dead slots are dropped). The
   * block stays where it is in token order.
   *
   * @param scratch at least {@code 2 · blockTokens · headDim} floats
   * @throws KvMemoryExhaustedException if the new block does not fit (nothing changes then)
   */
  public void convertBlock(int index, KvFormat keys, KvFormat values, float[] scratch) {
    keys.checkHeadDim(headDim);
    values.checkHeadDim(headDim);
    KvBlock old = blocks.get(index);
    int live = old.liveCount();
    int[] positions = new int[live];
    old.positions(slotPositions, 0);
    int valueOff = old.capacity() * headDim;
    int t = 0;
    for (int s = 0; s < old.filled(); s++) {
      if (old.isLive(s)) {
        old.decodeKey(s, scratch, t * headDim);
        old.decodeValue(s, scratch, valueOff + t * headDim);
        positions[t++] = slotPositions[s];
      }
    }
    long newBytes =
        KvBlock.bytesFor(old.capacity(), headDim, keys, values)
            + PositionCodes.bytes(positions, 0, live);
    pool.resize(old.bytes(), newBytes);
    KvBlock converted = new KvBlock(old.capacity(), headDim, keys, values);
    converted.append(live, positions, 0, scratch, 0, scratch, valueOff, headDim);
    blocks.set(index, converted);
    bytes += converted.bytes() - old.bytes();
    if (converted.bytes() != newBytes) {
      throw new IllegalStateException("conversion holds " + converted.bytes() + " not " + newBytes);
    }
  }

  /**
   * Drops the keys of block {@code index} (its values, positions and tokens stay) and gives their
   * bytes back to the pool: POD's layers that read another layer's keys for these tokens
   * (METHODS.md S4). Only a full block without residual values can drop its keys (a tail block
   * still takes tokens); dropping twice does nothing.
   *
   * @return the bytes given back
   */
  public long dropKeys(int index) {
    KvBlock b = blocks.get(index);
    if (b.keyFormat() == io.kvslim.kv.format.DroppedKeys.INSTANCE) {
      return 0;
    }
    if (!b.isFull() || b.residualValueFormat() != null) {
      throw new IllegalStateException("only a full, settled block can drop its keys");
    }
    long before = b.bytes();
    b.dropKeys();
    long freed = before - b.bytes();
    bytes -= freed;
    pool.release(freed);
    return freed;
  }

  // ---- eviction --------------------------------------------------------------------------------

  /**
   * Evicts the live tokens whose indices (in retained order, before this call) are set in {@code
   * indices}: marks them dead, frees blocks left without live tokens, and repacks runs of per-token
   * blocks of the same formats so the live tokens fill as few slots as possible (the last block of
   * a repacked run is cut to its tokens). Blocks that cannot move rows (KIVI's per-channel keys, or
   * values in two formats) keep their dead slots under a live mask. The bytes after the eviction
   * are worked out first: if the position codes or masks it adds do not fit in the pool, nothing
   * changes.
   *
   * @throws KvMemoryExhaustedException if the eviction would need more bytes than the pool has
   */
  public void evict(BitSet indices) {
    if (indices.isEmpty()) {
      return;
    }
    removals++;
    if (indices.length() > size) {
      throw new IndexOutOfBoundsException(
          "evicting token " + (indices.length() - 1) + " but head holds " + size);
    }
    List<KvBlock> killedIn = new ArrayList<>();
    List<Integer> killedSlots = new ArrayList<>();
    int index = 0;
    for (KvBlock b : blocks) {
      for (int s = 0; s < b.filled(); s++) {
        if (b.isLive(s)) {
          if (indices.get(index)) {
            b.kill(s);
            killedIn.add(b);
            killedSlots.add(s);
          }
          index++;
        }
      }
    }
    long planned = repacker.compact(blocks, false);
    try {
      pool.resize(bytes, planned);
    } catch (KvMemoryExhaustedException e) {
      for (int i = killedIn.size() - 1; i >= 0; i--) {
        killedIn.get(i).revive(killedSlots.get(i));
      }
      throw e;
    }
    size -= killedIn.size();
    repacker.compact(blocks, true);
    long held = 0;
    for (KvBlock b : blocks) {
      held += b.bytes();
    }
    if (held != planned) {
      throw new IllegalStateException("eviction holds " + held + " bytes, planned " + planned);
    }
    bytes = held;
    if (weights.any()) {
      long before = weights.bytes();
      weights.evict(indices);
      pool.release(before - weights.bytes());
    }
  }

  /** Evicts the tokens at the given retained indices. */
  public void evict(int[] indices, int count) {
    BitSet set = new BitSet(size);
    for (int i = 0; i < count; i++) {
      set.set(indices[i]);
    }
    evict(set);
  }

  /** Gives every block and the compensation entry back to the pool. */
  void release() {
    removals++;
    cold = 0;
    for (int i = blocks.size() - 1; i >= 0; i--) {
      KvBlock b = blocks.remove(i);
      bytes -= b.bytes();
      pool.release(b.bytes());
    }
    size = 0;
    pool.release(weights.bytes());
    weights.clear();
    if (compensation != null) {
      pool.release(compensationBytes());
      compensation = null;
    }
  }

  // ---- the compensation entry (RazorAttention) -------------------------------------------------

  private CompensationEntry compensation; // null until tokens are folded in

  /** Bytes the compensation entry holds, 0 without one. */
  public long compensationBytes() {
    return compensation == null ? 0 : CompensationEntry.bytes(headDim);
  }

  /** Whether tokens have been folded into a compensation entry. */
  public boolean hasCompensation() {
    return compensation != null;
  }

  /** The compensation entry, or null. */
  public CompensationEntry compensation() {
    return compensation;
  }

  /**
   * Evicts the live tokens whose indices (in retained order) are set in {@code indices} and folds
   * them into this head's {@link CompensationEntry} (METHODS.md M7, RazorAttention's compensation
   * token), which attention counts as |D| copies of the mean token (METHODS.md M2; see {@link
   * io.kvslim.kv.cache.PagedLayerKv#fold}). The first fold takes {@link CompensationEntry#bytes}
   * from the pool.
   *
   * @throws KvMemoryExhaustedException if the pool cannot hold the entry (nothing changes then)
   */
  public void fold(BitSet indices) {
    if (indices.isEmpty()) {
      return;
    }
    if (indices.length() > size) {
      throw new IndexOutOfBoundsException(
          "folding token " + (indices.length() - 1) + " but head holds " + size);
    }
    CompensationEntry.Sum sum = new CompensationEntry.Sum(compensation, headDim);
    float[] key = new float[headDim];
    float[] value = new float[headDim];
    int index = 0;
    for (KvBlock b : blocks) {
      b.positions(slotPositions, 0);
      for (int s = 0; s < b.filled(); s++) {
        if (b.isLive(s) && indices.get(index++)) {
          b.decodeKey(s, key, 0);
          b.decodeValue(s, value, 0);
          sum.add(key, value, slotPositions[s]);
        }
      }
    }
    boolean fresh = compensation == null;
    long entryBytes = CompensationEntry.bytes(headDim);
    if (fresh) {
      pool.reserve(entryBytes);
    }
    try {
      evict(indices);
    } catch (RuntimeException e) {
      if (fresh) {
        pool.release(entryBytes);
      }
      throw e;
    }
    compensation = sum.entry();
  }

  // ---- merged entries (EMS, LOOK-M) ------------------------------------------------------------

  /**
   * Merges tokens into kept entries (METHODS.md M7, M2): evicts the live tokens whose retained
   * indices are set in {@code evicted}, then gives each kept entry {@code targets[i]} (a retained
   * index before this call, not evicted) the key {@code keys[i·headDim..+headDim)}, the value
   * {@code values[i·headDim..+headDim)} and the weight {@code w[i]}, for {@code i < n}. The entry
   * keeps its position; keys are written as given (post-RoPE, no re-rotation) in the block's own
   * formats ({@link KvBlock#rewriteRow}). Weights cost {@link EntryWeights#BYTES_PER_ENTRY} per
   * entry up to the last weighted one; bytes are reserved first, so a refused merge changes
   * nothing.
   *
   * @throws KvMemoryExhaustedException if the pool cannot hold the weights or the eviction
   */
  public void merge(int[] targets, int n, float[] keys, float[] values, float[] w, BitSet evicted) {
    int[] after = new int[n];
    int most = -1;
    for (int i = 0; i < n; i++) {
      if (!(w[i] > 0) || Float.isInfinite(w[i])) {
        throw new IllegalArgumentException("an entry weight must be positive, got " + w[i]);
      }
      int t = targets[i];
      if (t < 0 || t >= size || evicted.get(t)) {
        throw new IllegalArgumentException(
            "merge target " + t + " is not a kept entry of the " + size + " held");
      }
      after[i] = t - evicted.get(0, t).cardinality();
      most = Math.max(most, after[i]);
    }
    long kept = EntryWeights.bytesFor(weights.countAfterEvict(evicted));
    long extra = Math.max(0, EntryWeights.bytesFor(Math.max(most + 1, 0)) - kept);
    pool.reserve(extra);
    try {
      evict(evicted);
    } catch (RuntimeException e) {
      pool.release(extra);
      throw e;
    }
    rewriteRows(after, n, keys, values);
    long before = weights.bytes();
    weights.set(after, w, n);
    pool.release(before + extra - weights.bytes());
  }

  /** Overwrites the rows of live entries {@code indices[i]} with rows {@code i} of the arrays. */
  private void rewriteRows(int[] indices, int n, float[] keys, float[] values) {
    int[] rowOf = new int[size];
    java.util.Arrays.fill(rowOf, -1);
    for (int i = 0; i < n; i++) {
      rowOf[indices[i]] = i;
    }
    float[] scratch = new float[format.blockTokens() * headDim];
    int index = 0;
    for (KvBlock b : blocks) {
      if (scratch.length < b.filled() * headDim) {
        scratch = new float[b.filled() * headDim];
      }
      for (int s = 0; s < b.filled(); s++) {
        if (b.isLive(s)) {
          int r = rowOf[index++];
          if (r >= 0) {
            b.rewriteRow(s, keys, r * headDim, values, r * headDim, scratch);
          }
        }
      }
    }
  }
}
