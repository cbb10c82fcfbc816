package io.kvslim.engine.blend;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The chunk KV store of CacheBlend (METHODS.md H1 step 1): each chunk's KV computed on its own,
 * keyed by a SHA-256 of the model's identity, the KV spec the chunk was computed with and the
 * chunk's token ids. Least recently used entries go first once the stored bytes pass the capacity.
 * Counts hits and misses. Thread-safe.
 */
public final class ChunkKvStore {
  private final long capacityBytes;
  private final LinkedHashMap<String, ChunkKv> entries = new LinkedHashMap<>(16, 0.75f, true);
  private long bytes;
  private long hits;
  private long misses;

  /** A store holding at most {@code capacityBytes} of chunk KV. */
  public ChunkKvStore(long capacityBytes) {
    if (capacityBytes < 1) {
      throw new IllegalArgumentException(
          "chunk store capacity must be at least 1 byte, got " + capacityBytes);
    }
    this.capacityBytes = capacityBytes;
  }

  /** The key of {@code tokens} computed by model {@code model} with KV spec {@code kvSpec}. */
  public static String key(String model, String kvSpec, int[] tokens) {
    try {
      MessageDigest sha = MessageDigest.getInstance("SHA-256");
      sha.update(model.getBytes(StandardCharsets.UTF_8));
      sha.update((byte) 0);
      sha.update(kvSpec.getBytes(StandardCharsets.UTF_8));
      sha.update((byte) 0);
      ByteBuffer ids = ByteBuffer.allocate(4 * tokens.length);
      for (int t : tokens) {
        ids.putInt(t);
      }
      sha.update(ids.array());
      return HexFormat.of().formatHex(sha.digest());
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("SHA-256 is not available", e);
    }
  }

  /**
   * The entry under {@code key} for exactly {@code tokens} (a hit), or null (a miss); each call
   * counts one or the other.
   */
  public synchronized ChunkKv get(String key, int[] tokens) {
    ChunkKv kv = entries.get(key);
    if (kv != null && Arrays.equals(kv.tokens(), tokens)) {
      hits++;
      return kv;
    }
    misses++;
    return null;
  }

  /** Stores {@code kv} under {@code key}, evicting the least recently used entries to fit. */
  public synchronized void put(String key, ChunkKv kv) {
    ChunkKv old = entries.put(key, kv);
    if (old != null) {
      bytes -= old.bytes();
    }
    bytes += kv.bytes();
    Iterator<Map.Entry<String, ChunkKv>> it = entries.entrySet().iterator();
    while (bytes > capacityBytes && it.hasNext()) {
      Map.Entry<String, ChunkKv> e = it.next();
      if (e.getKey().equals(key)) {
        continue; // the newest entry stays, even alone over the capacity
      }
      bytes -= e.getValue().bytes();
      it.remove();
    }
  }

  public synchronized long hits() {
    return hits;
  }

  public synchronized long misses() {
    return misses;
  }

  public synchronized int size() {
    return entries.size();
  }

  public synchronized long bytes() {
    return bytes;
  }
}
