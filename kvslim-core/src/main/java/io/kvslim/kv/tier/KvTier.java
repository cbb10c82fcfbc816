package io.kvslim.kv.tier;

/**
 * A store of KV blocks below RAM, keyed by strings ({@link PrefixCache}'s hash chain). What it
 * returns is checked by the caller ({@link TierBlock#decode}); a tier only moves bytes.
 * Implementations are used from one thread at a time.
 */
public interface KvTier extends AutoCloseable {
  /** How the tier was configured, e.g. {@code disk:/var/cache/kvslim} or {@code redis://h:6379}. */
  String name();

  /**
   * The bytes stored under {@code key}, or null if there are none.
   *
   * @throws TierUnavailableException if the tier cannot be reached
   */
  byte[] get(String key);

  /**
   * Whether bytes are stored under {@code key}.
   *
   * @throws TierUnavailableException if the tier cannot be reached
   */
  boolean contains(String key);

  /**
   * Stores {@code value} under {@code key}, replacing what was there.
   *
   * @throws TierUnavailableException if the tier cannot be reached
   */
  void put(String key, byte[] value);

  @Override
  void close();
}
