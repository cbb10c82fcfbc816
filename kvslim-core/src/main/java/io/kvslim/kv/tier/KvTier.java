package io.kvslim.kv.tier;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

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

  /**
   * The bytes under each of {@code keys} (null where none), in one round trip where the tier can.
   *
   * @throws TierUnavailableException if the tier cannot be reached
   */
  default List<byte[]> getAll(List<String> keys) {
    List<byte[]> out = new ArrayList<>(keys.size());
    for (String k : keys) {
      out.add(get(k));
    }
    return out;
  }

  /**
   * Whether {@link #getRanges} reads byte ranges of stored values without the rest (Redis {@code
   * GETRANGE}); false (the default) for a tier that reads values whole.
   */
  default boolean readsRanges() {
    return false;
  }

  /**
   * Bytes {@code [from[i], from[i] + count[i])} of the value under each of {@code keys} (shorter
   * where the value ends sooner, empty where there is none), in one round trip where the tier can.
   * Only where {@link #readsRanges}.
   *
   * @throws TierUnavailableException if the tier cannot be reached
   * @throws UnsupportedOperationException if the tier reads values whole
   */
  default List<byte[]> getRanges(List<String> keys, long[] from, long[] count) {
    throw new UnsupportedOperationException("the KV tier " + name() + " reads values whole");
  }

  /**
   * Stores {@code values.get(i)} under {@code keys.get(i)} where nothing is stored yet, in as few
   * round trips as the tier can; returns which were written.
   *
   * @throws TierUnavailableException if the tier cannot be reached
   */
  default boolean[] putMissing(List<String> keys, List<byte[]> values) {
    boolean[] written = new boolean[keys.size()];
    for (int i = 0; i < keys.size(); i++) {
      if (!contains(keys.get(i))) {
        put(keys.get(i), values.get(i));
        written[i] = true;
      }
    }
    return written;
  }

  /**
   * Stores {@code values.get(i)} under {@code keys.get(i)}, replacing what was there, in as few
   * round trips as the tier can; a tier that can expire entries drops them after {@code expiry}
   * (the spilled blocks of a process that died without deleting them), one that cannot keeps them.
   *
   * @throws TierUnavailableException if the tier cannot be reached
   */
  default void putAll(List<String> keys, List<byte[]> values, Duration expiry) {
    for (int i = 0; i < keys.size(); i++) {
      put(keys.get(i), values.get(i));
    }
  }

  /**
   * Deletes what is stored under each of {@code keys} (none there is fine).
   *
   * @throws TierUnavailableException if the tier cannot be reached
   * @throws UnsupportedOperationException if the tier cannot delete
   */
  default void deleteAll(List<String> keys) {
    throw new UnsupportedOperationException("the KV tier " + name() + " cannot delete blocks");
  }

  @Override
  void close();
}
