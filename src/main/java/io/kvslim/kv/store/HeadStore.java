package io.kvslim.kv.store;

import io.kvslim.kv.quant.KvFormat;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.Collections;
import java.util.List;

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
 * <p>Not thread-safe; distinct heads may be used from distinct threads.
 */
public final class HeadStore {
  private final BlockPool pool;
  private final KvCacheFormat format;
  private final int headDim;
  private final ArrayList<KvBlock> blocks = new ArrayList<>();
  private int size;
  private long bytes;
  private int tokenBudget = Integer.MAX_VALUE;

  HeadStore(BlockPool pool, KvCacheFormat format, int headDim) {
    this.pool = pool;
    this.format = format;
    this.headDim = headDim;
  }

  /** Live tokens. */
  public int size() {
    return size;
  }

  /** Exact bytes held: the sum of {@link KvBlock#bytes()} over the blocks. */
  public long bytes() {
    return bytes;
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

  /** Copies the positions of the live tokens, in order, into {@code dst}; returns the count. */
  public int positions(int[] dst) {
    int i = 0;
    for (KvBlock b : blocks) {
      for (int s = 0; s < b.filled(); s++) {
        if (b.isLive(s)) {
          dst[i++] = b.position(s);
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
          KvFormat f = key ? b.keyFormat() : b.valueFormat();
          f.decode(key ? b.keys() : b.values(), s, b.capacity(), headDim, dst, 0);
          return;
        }
      }
    }
    throw new IllegalStateException("live counts are inconsistent");
  }

  private KvBlock appendableTail() {
    if (blocks.isEmpty()) {
      return null;
    }
    KvBlock tail = blocks.getLast();
    boolean sameFormats =
        tail.keyFormat().equals(format.appendKeys())
            && tail.valueFormat().equals(format.appendValues());
    return sameFormats && !tail.isFull() ? tail : null;
  }

  /** Bytes of the new blocks that appending {@code n} tokens allocates. */
  public long appendBytes(int n) {
    KvBlock tail = appendableTail();
    int extra = n - (tail == null ? 0 : tail.capacity() - tail.filled());
    if (extra <= 0) {
      return 0;
    }
    int newBlocks = (extra + format.blockTokens() - 1) / format.blockTokens();
    return newBlocks * newBlockBytes();
  }

  private long newBlockBytes() {
    return KvBlock.bytesFor(
        format.blockTokens(), headDim, format.appendKeys(), format.appendValues());
  }

  /**
   * Appends {@code n} tokens whose rows start at {@code off} with stride {@code stride}. The caller
   * has reserved {@link #appendBytes(int) appendBytes(n)} on the pool.
   */
  void appendReserved(int n, int[] positions, float[] keys, float[] values, int off, int stride) {
    int done = 0;
    while (done < n) {
      KvBlock tail = appendableTail();
      if (tail == null) {
        tail =
            new KvBlock(format.blockTokens(), headDim, format.appendKeys(), format.appendValues());
        blocks.add(tail);
        bytes += tail.bytes();
      }
      int count = Math.min(n - done, tail.capacity() - tail.filled());
      int rows = off + done * stride;
      tail.append(count, positions, done, keys, rows, values, rows, stride);
      done += count;
    }
    size += n;
  }

  /**
   * Converts residual blocks to the cache's formats while the oldest one is closed and at least
   * {@code residualTokens} live tokens follow it (KIVI's residual flush). Never grows the pool
   * (checked by {@link KvCacheFormat#checkHeadDim}).
   */
  void flushResidual(float[] scratch) {
    if (!format.hasResidual()) {
      return;
    }
    while (true) {
      int start = blocks.size();
      while (start > 0 && isResidual(blocks.get(start - 1))) {
        start--;
      }
      if (start == blocks.size()) {
        return;
      }
      KvBlock oldest = blocks.get(start);
      boolean closed = start < blocks.size() - 1 || oldest.isFull();
      int after = 0;
      for (int i = start + 1; i < blocks.size(); i++) {
        after += blocks.get(i).liveCount();
      }
      if (!closed || after < format.residualTokens()) {
        return;
      }
      convertBlock(start, format.keys(), format.values(), scratch);
    }
  }

  private boolean isResidual(KvBlock b) {
    return b.keyFormat().equals(format.residualKeys())
        && b.valueFormat().equals(format.residualValues());
  }

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
    long newBytes = KvBlock.bytesFor(old.capacity(), headDim, keys, values);
    pool.resize(old.bytes(), newBytes);
    int live = old.liveCount();
    int valueOff = old.capacity() * headDim;
    int[] positions = new int[live];
    int t = 0;
    for (int s = 0; s < old.filled(); s++) {
      if (old.isLive(s)) {
        old.keyFormat().decode(old.keys(), s, old.capacity(), headDim, scratch, t * headDim);
        old.valueFormat()
            .decode(old.values(), s, old.capacity(), headDim, scratch, valueOff + t * headDim);
        positions[t++] = old.position(s);
      }
    }
    KvBlock converted = new KvBlock(old.capacity(), headDim, keys, values);
    converted.append(live, positions, 0, scratch, 0, scratch, valueOff, headDim);
    blocks.set(index, converted);
    bytes += newBytes - old.bytes();
  }

  /**
   * Evicts the live tokens whose indices (in retained order, before this call) are set in {@code
   * indices}: marks them dead, frees blocks left without live tokens, and repacks runs of per-token
   * blocks of the same formats so the live tokens fill as few blocks as possible. Token-group
   * blocks (KIVI keys) keep their dead slots under the live mask.
   */
  public void evict(BitSet indices) {
    if (indices.isEmpty()) {
      return;
    }
    if (indices.length() > size) {
      throw new IndexOutOfBoundsException(
          "evicting token " + (indices.length() - 1) + " but head holds " + size);
    }
    int index = 0;
    for (KvBlock b : blocks) {
      for (int s = 0; s < b.filled(); s++) {
        if (b.isLive(s)) {
          if (indices.get(index)) {
            b.kill(s);
            size--;
          }
          index++;
        }
      }
    }
    for (int i = blocks.size() - 1; i >= 0; i--) {
      if (blocks.get(i).liveCount() == 0) {
        freeBlock(i);
      }
    }
    compact();
  }

  /** Evicts the tokens at the given retained indices. */
  public void evict(int[] indices, int count) {
    BitSet set = new BitSet(size);
    for (int i = 0; i < count; i++) {
      set.set(indices[i]);
    }
    evict(set);
  }

  private void freeBlock(int i) {
    KvBlock b = blocks.remove(i);
    bytes -= b.bytes();
    pool.release(b.bytes());
  }

  /** Repacks each run of consecutive per-token blocks with equal formats. */
  private void compact() {
    int start = 0;
    while (start < blocks.size()) {
      KvBlock first = blocks.get(start);
      int end = start + 1;
      if (first.keyFormat().perToken() && first.valueFormat().perToken()) {
        while (end < blocks.size() && sameFormats(first, blocks.get(end))) {
          end++;
        }
        end = repack(start, end);
      }
      start = end;
    }
  }

  private static boolean sameFormats(KvBlock a, KvBlock b) {
    return a.keyFormat().equals(b.keyFormat()) && a.valueFormat().equals(b.valueFormat());
  }

  /** Repacks blocks {@code [start, end)}; returns the new end of the run. */
  private int repack(int start, int end) {
    int live = 0;
    boolean holes = false;
    for (int i = start; i < end; i++) {
      KvBlock b = blocks.get(i);
      live += b.liveCount();
      holes |= b.liveCount() < b.filled() || (i < end - 1 && !b.isFull());
    }
    if (!holes) {
      return end;
    }
    int writeBlock = start;
    int writeSlot = 0;
    for (int i = start; i < end; i++) {
      KvBlock from = blocks.get(i);
      for (int s = 0; s < from.filled(); s++) {
        if (!from.isLive(s)) {
          continue;
        }
        KvBlock to = blocks.get(writeBlock);
        if (to != from || writeSlot != s) {
          to.moveRowFrom(from, s, writeSlot);
        }
        if (++writeSlot == to.capacity()) {
          writeBlock++;
          writeSlot = 0;
        }
      }
    }
    int capacity = format.blockTokens();
    int needed = (live + capacity - 1) / capacity;
    for (int i = 0; i < needed; i++) {
      blocks.get(start + i).resetToDense(Math.min(capacity, live - i * capacity));
    }
    for (int i = end - 1; i >= start + needed; i--) {
      freeBlock(i);
    }
    return start + needed;
  }

  /** Gives every block back to the pool. */
  void release() {
    for (int i = blocks.size() - 1; i >= 0; i--) {
      freeBlock(i);
    }
    size = 0;
  }
}
