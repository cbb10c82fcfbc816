package io.kvslim.kv.store;

import java.lang.foreign.MemorySegment;
import java.util.List;

/**
 * Where one cache's spilled blocks go ({@link HeadStore#spill}): a memory-mapped {@link SpillFile}
 * or a {@link io.kvslim.kv.tier.TierColdStorage tier} below RAM. Each block's key and value bytes
 * are written once, with a CRC32C of them; {@link #read} copies them back and checks them, so a
 * byte the store lost or changed, or a block it no longer has, is detected ({@link Corrupt}), never
 * attended over; the generation then recomputes the sequence ({@link
 * io.kvslim.engine.KvRecompute}). A store belongs to one cache and is used from one thread at a
 * time.
 */
public interface ColdStore extends AutoCloseable {
  /**
   * One written block: the store's handle for it ({@code id}), its key and value byte counts and
   * the CRC32C of the key bytes followed by the value bytes.
   */
  record Slot(long id, long keyBytes, long valueBytes, int crc) {
    public long bytes() {
      return keyBytes + valueBytes;
    }
  }

  /** A spilled block whose bytes no longer match their checksum, or that the store lost. */
  final class Corrupt extends RuntimeException {
    public Corrupt(String message) {
      super(message);
    }

    public Corrupt(String message, Throwable cause) {
      super(message, cause);
    }
  }

  /** Stores {@code keys} then {@code values}; returns where they are. */
  Slot write(MemorySegment keys, MemorySegment values);

  /**
   * Copies the bytes of {@code s} into {@code keys} and {@code values} (of the slot's sizes) and
   * checks them against the slot's checksum.
   *
   * @throws Corrupt if they do not match or cannot be had (the copies are then not to be used)
   */
  void read(Slot s, MemorySegment keys, MemorySegment values);

  /**
   * Whether {@link #readPart} reads a byte range of a slot without the rest (a memory-mapped file,
   * a tier that reads byte ranges); false (the default) for a store that reads blocks whole, whose
   * blocks are then fetched whole.
   */
  default boolean readsParts() {
    return false;
  }

  /**
   * Copies bytes {@code [from, from + count)} of slot {@code s} (its key bytes then its value
   * bytes) into {@code dst} at {@code dstOffset}, unchecked: the caller checks them against
   * checksums of its own (a spilled block's sub-blocks, {@link SpilledRows}). Only where {@link
   * #readsParts}.
   */
  default void readPart(Slot s, long from, MemorySegment dst, long dstOffset, long count) {
    throw new UnsupportedOperationException(where() + " reads spilled blocks whole");
  }

  /**
   * Names the block the next {@link #write} stores, e.g. {@code l3-h1-b12} (layer, KV head, block),
   * for a store whose keys carry it (null: none); ignored by the others.
   */
  default void label(String block) {}

  /** Announces the slots about to be {@link #read}, so a remote store fetches them at once. */
  default void prefetch(List<Slot> slots) {}

  /**
   * Announces the byte ranges about to be read with {@link #readPart}: {@code ranges.get(i)} holds
   * {@code from, count} pairs of {@code slots.get(i)}, so a remote store fetches them at once. Only
   * where {@link #readsParts}.
   */
  default void prefetchParts(List<Slot> slots, List<long[]> ranges) {}

  /** Sends the writes a store batches (a step ends). */
  default void flush() {}

  /** Bytes of keys and values written so far. */
  long bytesWritten();

  /** Where the blocks are, for messages (a file, a tier). */
  String where();

  /** Deletes what the store holds; later reads and writes fail. Closing twice does nothing. */
  @Override
  void close();
}
