package io.kvslim.kv.store;

import java.util.concurrent.atomic.AtomicLong;

/**
 * Counters of the spilling caches of one {@link ColdStorage}, safe to read from any thread (the
 * server's {@code /metrics}): bytes the open caches hold in cold stores, bytes and blocks fetched
 * back, blocks spilled (written once each), how often a remote tier was unreachable so a cache
 * spilled to a local file instead, and how often a sequence whose spilled block was lost (a tier
 * gone, a key missing, a checksum failed) was recomputed from its token ids ({@link
 * io.kvslim.engine.KvRecompute}).
 */
public final class SpillStats {
  /** Bytes of keys and values in the cold stores of the caches still open. */
  public final AtomicLong coldBytes = new AtomicLong();

  public final AtomicLong bytesFetched = new AtomicLong();
  public final AtomicLong blocksFetched = new AtomicLong();
  public final AtomicLong blocksSpilled = new AtomicLong();
  public final AtomicLong bytesSpilled = new AtomicLong();
  public final AtomicLong fallbacks = new AtomicLong();
  public final AtomicLong recomputes = new AtomicLong();

  @Override
  public String toString() {
    return "cold_bytes="
        + coldBytes
        + " bytes_fetched="
        + bytesFetched
        + " blocks_fetched="
        + blocksFetched
        + " blocks_spilled="
        + blocksSpilled
        + " fallbacks="
        + fallbacks
        + " recomputes="
        + recomputes;
  }
}
