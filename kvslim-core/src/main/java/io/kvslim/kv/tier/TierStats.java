package io.kvslim.kv.tier;

import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Counters of a {@link PrefixCache}, safe to read from any thread (the server's {@code /metrics}):
 * blocks looked up, found, rejected (corrupt, foreign or malformed: recomputed, never used) and
 * stored; bytes read from and written to the tiers; prompt tokens restored instead of prefilled;
 * and per tier how often it was found unreachable and skipped.
 */
public final class TierStats {
  public final AtomicLong lookups = new AtomicLong();
  public final AtomicLong hits = new AtomicLong();
  public final AtomicLong misses = new AtomicLong();
  public final AtomicLong rejected = new AtomicLong();
  public final AtomicLong stored = new AtomicLong();
  public final AtomicLong bytesRead = new AtomicLong();
  public final AtomicLong bytesWritten = new AtomicLong();
  public final AtomicLong restoredTokens = new AtomicLong();
  public final AtomicLong restoredSequences = new AtomicLong();
  private final Map<String, AtomicLong> unavailable = new ConcurrentHashMap<>();

  /** The counter of times {@code tier} was unreachable (created at 0 when first asked). */
  public AtomicLong unavailable(String tier) {
    return unavailable.computeIfAbsent(tier, k -> new AtomicLong());
  }

  /** Every tier's unavailability counter so far. */
  public Map<String, AtomicLong> unavailable() {
    return Map.copyOf(unavailable);
  }

  @Override
  public String toString() {
    return "lookups="
        + lookups
        + " hits="
        + hits
        + " misses="
        + misses
        + " rejected="
        + rejected
        + " stored="
        + stored
        + " bytes_read="
        + bytesRead
        + " bytes_written="
        + bytesWritten
        + " restored_tokens="
        + restoredTokens;
  }
}
