package io.kvslim.kv.store;

import java.nio.file.Path;

/**
 * Where spilling caches put their cold blocks: each cache {@link #open opens} a {@link ColdStore}
 * of its own at its first spill and closes it with itself. {@link #local} is a memory-mapped {@link
 * SpillFile} per cache (in the system's temporary directory, or a {@code --kv-tier disk:DIR}
 * directory); {@link io.kvslim.kv.tier.TierColdStorage} puts the blocks in a KV tier. The counters
 * of every store opened are in {@link #stats}. Thread-safe.
 */
public interface ColdStorage extends AutoCloseable {
  /** A new, empty store for one cache. */
  ColdStore open();

  /** The counters of the stores opened here. */
  SpillStats stats();

  /** How the storage was configured, e.g. {@code disk:/tmp/kv}. */
  String name();

  /**
   * Where a cache recomputed after one of its spilled blocks was lost spills ({@link
   * io.kvslim.engine.KvRecompute}): a local spill file per cache, counted in these {@link #stats},
   * for a storage in a remote tier; this storage itself (the default) for one that is local.
   */
  default ColdStorage forRecompute() {
    return this;
  }

  /** Releases what the storage holds (a connection); the caches using it are closed first. */
  @Override
  default void close() {}

  /** One spill file per cache in {@code dir} (the system's temporary directory when null). */
  static ColdStorage local(Path dir) {
    return local(dir, new SpillStats(), dir == null ? "spill file" : "disk:" + dir);
  }

  /** One spill file per cache in {@code dir}, counted in {@code stats}, called {@code name}. */
  static ColdStorage local(Path dir, SpillStats stats, String name) {
    return new ColdStorage() {
      @Override
      public ColdStore open() {
        return new SpillFile(dir);
      }

      @Override
      public SpillStats stats() {
        return stats;
      }

      @Override
      public String name() {
        return name;
      }
    };
  }
}
