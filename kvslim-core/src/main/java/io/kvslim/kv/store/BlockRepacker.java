package io.kvslim.kv.store;

import java.util.ArrayList;
import java.util.List;

/**
 * Compaction after an eviction (DESIGN.md §3.2): blocks left without live tokens are dropped, and
 * each run of consecutive blocks that can move rows (per-token keys, values in one per-token
 * format) and share a layout is repacked so its live tokens fill the fewest slots, in order; the
 * last block used is cut to its tokens. The same walk either works out the bytes the blocks would
 * hold afterwards, so the pool can be asked first, or does it.
 */
final class BlockRepacker {
  private final int headDim;
  private final int[] slotPositions;

  BlockRepacker(int headDim, int[] slotPositions) {
    this.headDim = headDim;
    this.slotPositions = slotPositions;
  }

  private static boolean movable(KvBlock b) {
    return b.keyFormat().perToken()
        && b.uniformValueFormat() != null
        && b.uniformValueFormat().perToken();
  }

  private static boolean sameLayout(KvBlock a, KvBlock b) {
    return a.keyFormat().equals(b.keyFormat())
        && a.valueFormat().equals(b.valueFormat())
        && a.uniformValueFormat().equals(b.uniformValueFormat())
        && (a.split() == a.capacity()) == (b.split() == b.capacity());
  }

  /**
   * Frees the blocks without live tokens and repacks each run of movable blocks with the same
   * layout that has holes. With {@code apply} false nothing changes: returns the bytes the blocks
   * would hold afterwards; with {@code apply} true does it.
   */
  long compact(ArrayList<KvBlock> blocks, boolean apply) {
    List<KvBlock> kept = new ArrayList<>(blocks.size());
    for (KvBlock b : blocks) {
      if (b.liveCount() > 0) {
        kept.add(b);
      }
    }
    List<KvBlock> result = apply ? new ArrayList<>(kept.size()) : null;
    long total = 0;
    int start = 0;
    while (start < kept.size()) {
      KvBlock first = kept.get(start);
      int end = start + 1;
      if (movable(first)) {
        while (end < kept.size() && movable(kept.get(end)) && sameLayout(first, kept.get(end))) {
          end++;
        }
      }
      total += repack(kept.subList(start, end), result);
      start = end;
    }
    if (apply) {
      blocks.clear();
      blocks.addAll(result);
    }
    return total;
  }

  /**
   * Repacks one run (a single unmovable block is a run of one): the live tokens go, in order, into
   * the run's blocks from the first, each up to its capacity; the last block used is cut to its
   * tokens and the rest are dropped. Runs without holes stay as they are. Returns the bytes of the
   * run afterwards; adds its blocks to {@code out} when it is not null (and then moves the rows).
   */
  private long repack(List<KvBlock> run, List<KvBlock> out) {
    // leading full blocks without holes keep their place whatever follows: leave them as they are
    // (an eviction near the end of a long run then moves only the rows after it)
    int dense = 0;
    long prefix = 0;
    while (dense < run.size() - 1
        && run.get(dense).isFull()
        && run.get(dense).liveCount() == run.get(dense).filled()) {
      KvBlock b = run.get(dense);
      prefix += b.bytes();
      if (out != null) {
        out.add(b);
      }
      dense++;
    }
    if (dense > 0) {
      return prefix + repackAll(run.subList(dense, run.size()), out);
    }
    return repackAll(run, out);
  }

  /** {@link #repack} without the dense-prefix shortcut. */
  private long repackAll(List<KvBlock> run, List<KvBlock> out) {
    int live = 0;
    boolean holes = false;
    for (int i = 0; i < run.size(); i++) {
      KvBlock b = run.get(i);
      live += b.liveCount();
      holes |= b.liveCount() < b.filled() || (i < run.size() - 1 && !b.isFull());
    }
    if (!holes || !movable(run.getFirst())) {
      long total = 0;
      for (KvBlock b : run) {
        total += b.bytes();
        if (out != null) {
          out.add(b);
        }
      }
      return total;
    }
    int[] positions = new int[live];
    int at = 0;
    for (KvBlock b : run) {
      b.positions(slotPositions, 0);
      for (int s = 0; s < b.filled(); s++) {
        if (b.isLive(s)) {
          positions[at++] = slotPositions[s];
        }
      }
    }
    long total = 0;
    int placed = 0;
    for (int i = 0; i < run.size() && placed < live; i++) {
      KvBlock b = run.get(i);
      int count = Math.min(b.capacity(), live - placed);
      total +=
          (count == b.capacity() ? b.fixedBytes() : trimmedFixedBytes(b, count))
              + PositionCodes.bytes(positions, placed, count);
      placed += count;
    }
    if (out == null) {
      return total;
    }
    int writeBlock = 0;
    int writeSlot = 0;
    for (KvBlock from : run) {
      for (int s = 0; s < from.filled(); s++) {
        if (!from.isLive(s)) {
          continue;
        }
        KvBlock to = run.get(writeBlock);
        if (to != from || writeSlot != s) {
          to.moveRowFrom(from, s, writeSlot);
        }
        if (++writeSlot == to.capacity()) {
          writeBlock++;
          writeSlot = 0;
        }
      }
    }
    placed = 0;
    for (int i = 0; i < run.size() && placed < live; i++) {
      KvBlock b = run.get(i);
      int count = Math.min(b.capacity(), live - placed);
      if (count == b.capacity()) {
        b.resetToDense(count, positions, placed);
        out.add(b);
      } else {
        out.add(b.trimmed(count, positions, placed));
      }
      placed += count;
    }
    return total;
  }

  private long trimmedFixedBytes(KvBlock b, int count) {
    return KvBlock.HEADER_BYTES
        + b.keyFormat().blockBytes(count, headDim)
        + b.uniformValueFormat().blockBytes(count, headDim);
  }
}
