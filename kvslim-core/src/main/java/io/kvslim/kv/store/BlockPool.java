package io.kvslim.kv.store;

/**
 * Counts every byte the KV blocks hold (codes, scales, zero points, positions, live masks), with an
 * optional limit (DESIGN.md §3.2). Several sequences may share one pool; each returns its bytes
 * when closed, so the pool goes back to its baseline. Thread-safe.
 *
 * <p>Blocks hold their memory in heap arrays; the pool is the single place that decides whether an
 * allocation may happen, and callers reserve before they allocate so a refusal leaves no trace.
 */
public final class BlockPool {
  /** No limit. */
  public static final long UNLIMITED = Long.MAX_VALUE;

  private final long limitBytes;
  private long usedBytes;
  private long peakBytes;
  private volatile ColdStorage coldStorage; // null: spilling caches use temporary spill files

  public BlockPool() {
    this(UNLIMITED);
  }

  public BlockPool(long limitBytes) {
    if (limitBytes < 0) {
      throw new IllegalArgumentException("pool limit must be >= 0 bytes, got " + limitBytes);
    }
    this.limitBytes = limitBytes;
  }

  /**
   * Where the spilling caches drawing from this pool put their cold blocks ({@code spill=true}
   * methods with {@code --kv-tier}); null, the default, for a temporary spill file per cache.
   * Returns this pool.
   */
  public BlockPool withColdStorage(ColdStorage storage) {
    this.coldStorage = storage;
    return this;
  }

  /** The cold storage of this pool's spilling caches, or null for temporary spill files. */
  public ColdStorage coldStorage() {
    return coldStorage;
  }

  /**
   * Counts {@code bytes} more as held.
   *
   * @throws KvMemoryExhaustedException if that passes the limit (nothing is counted then)
   */
  public synchronized void reserve(long bytes) {
    if (bytes < 0) {
      throw new IllegalArgumentException("cannot reserve " + bytes + " bytes");
    }
    if (bytes > limitBytes - usedBytes) {
      throw new KvMemoryExhaustedException(bytes, usedBytes, limitBytes);
    }
    usedBytes += bytes;
    peakBytes = Math.max(peakBytes, usedBytes);
  }

  /** Counts {@code bytes} as given back. */
  public synchronized void release(long bytes) {
    if (bytes < 0 || bytes > usedBytes) {
      throw new IllegalStateException(
          "releasing " + bytes + " bytes but only " + usedBytes + " are held");
    }
    usedBytes -= bytes;
  }

  /** Replaces a holding of {@code fromBytes} by one of {@code toBytes}, atomically. */
  public synchronized void resize(long fromBytes, long toBytes) {
    if (toBytes > fromBytes) {
      reserve(toBytes - fromBytes);
    } else {
      release(fromBytes - toBytes);
    }
  }

  public synchronized long usedBytes() {
    return usedBytes;
  }

  public synchronized long peakBytes() {
    return peakBytes;
  }

  public long limitBytes() {
    return limitBytes;
  }
}
