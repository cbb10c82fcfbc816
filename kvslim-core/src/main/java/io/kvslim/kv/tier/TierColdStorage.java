package io.kvslim.kv.tier;

import io.kvslim.kv.store.ColdStorage;
import io.kvslim.kv.store.ColdStore;
import io.kvslim.kv.store.SpillFile;
import io.kvslim.kv.store.SpillStats;
import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.function.Consumer;
import java.util.zip.CRC32C;

/**
 * Spilled blocks in a {@link KvTier} ({@code --kv-tier redis://HOST:PORT} with a {@code spill=true}
 * method): each cache's store writes its blocks under keys of its own, {@code spill-ID-lL-hG-bB-N}
 * (a random cache id, the layer, KV head and block index, and the block's number in the store), in
 * batches ({@link #BATCH_BLOCKS} blocks or the end of a step, one round trip), with an expiry, and
 * deletes them when the cache closes. The blocks a step reads come in one round trip ({@link
 * ColdStore#prefetch}); each is checked against the CRC32C taken when it was written, and a missing
 * or changed one fails the step ({@link ColdStore.Corrupt}), never attended over. Where the tier
 * reads byte ranges ({@link KvTier#readsRanges}, Redis {@code GETRANGE}), a block whose rows are
 * fetched in part has only its selected sub-blocks read, in one round trip per head and step
 * ({@link ColdStore#prefetchParts}), each checked against its own CRC32C by the caller.
 *
 * <p>A tier that cannot be reached when blocks are written is skipped: the cache's store switches
 * to a local {@link SpillFile} (the blocks not yet sent included), with one warning line and {@link
 * SpillStats#fallbacks} counted, and the stores opened in the next {@link #RETRY} go there
 * directly. Blocks the tier took before it went away cannot be fetched back: their step fails with
 * {@link ColdStore.Corrupt}, and the generation recomputes the sequence into a cache spilling to a
 * local file ({@link #forRecompute}, {@link io.kvslim.engine.KvRecompute}). A store closed while
 * the tier is known to be down does not try to delete its keys: they expire after {@link #EXPIRY}.
 *
 * <p>{@link #of} gives a {@link DiskTier} a spill file in its directory instead: a memory-mapped
 * file reads a block without copying it twice.
 */
public final class TierColdStorage implements ColdStorage {
  /** Blocks a store batches before it sends them. */
  public static final int BATCH_BLOCKS = 64;

  /** How long after a failure new stores go to a local file without trying the tier. */
  public static final Duration RETRY = Duration.ofSeconds(30);

  /** How long the tier keeps a spilled block that was never deleted (its process died). */
  public static final Duration EXPIRY = Duration.ofHours(6);

  private final KvTier tier;
  private final Consumer<String> warn;
  private final SpillStats stats = new SpillStats();
  private final ColdStorage local; // recomputed caches spill here
  private volatile long downUntil; // System.nanoTime() before which the tier is not tried

  /** Stores in {@code tier}, which it closes; {@code warn} gets the one line a fallback prints. */
  public TierColdStorage(KvTier tier, Consumer<String> warn) {
    this.tier = tier;
    this.warn = warn;
    this.local = ColdStorage.local(null, stats, tier.name() + " (local fallback)");
  }

  /**
   * The cold storage for {@code tier} (closed with it): a spill file per cache in a {@link
   * DiskTier}'s directory, blocks in the tier itself for any other.
   */
  public static ColdStorage of(KvTier tier, Consumer<String> warn) {
    if (tier instanceof DiskTier disk) {
      return ColdStorage.local(disk.dir());
    }
    return new TierColdStorage(tier, warn);
  }

  @Override
  public ColdStore open() {
    return new Store(down());
  }

  /** Whether the tier failed within the last {@link #RETRY}. */
  private boolean down() {
    return System.nanoTime() - downUntil < 0;
  }

  /**
   * A spill file per cache, counted here: a sequence recomputed after a lost block spills there.
   */
  @Override
  public ColdStorage forRecompute() {
    return local;
  }

  @Override
  public SpillStats stats() {
    return stats;
  }

  @Override
  public String name() {
    return tier.name();
  }

  @Override
  public void close() {
    tier.close();
  }

  /** The tier's calls, one at a time (several caches may spill at once). */
  private <T> T locked(java.util.function.Supplier<T> call) {
    synchronized (tier) {
      return call.get();
    }
  }

  /** Bytes {@code [from, from + data.length)} of a spilled block, fetched ahead of its read. */
  private record Part(long from, byte[] data) {}

  /** One cache's blocks: in the tier, not yet sent, or in a local file after a fallback. */
  private final class Store implements ColdStore {
    private final String id = UUID.randomUUID().toString().replace("-", "");
    private final Map<Long, byte[]> pending = new LinkedHashMap<>(); // written, not yet sent
    private final Map<Long, byte[]> fetched = new HashMap<>(); // prefetched, not yet read
    private final Map<Long, List<Part>> parts = new HashMap<>(); // prefetched byte ranges
    private final List<String> sent = new ArrayList<>(); // keys to delete on close
    private final Map<Long, ColdStore.Slot> local = new HashMap<>(); // blocks in the fallback file
    private final Map<Long, String> labels = new HashMap<>(); // "l3-h1-b12" of block n
    private String label; // of the next write
    private SpillFile fallback; // non-null: the tier was unreachable, blocks go here
    private long next;
    private long written;
    private boolean closed;

    Store(boolean down) {
      if (down) {
        fallback = new SpillFile(null);
        stats.fallbacks.incrementAndGet();
      }
    }

    private String key(long n) {
      String l = labels.get(n);
      return "spill-" + id + "-" + (l == null ? "" : l + "-") + n;
    }

    @Override
    public void label(String block) {
      this.label = block;
    }

    @Override
    public Slot write(MemorySegment keys, MemorySegment values) {
      check();
      long n = next++;
      if (label != null) {
        labels.put(n, label);
        label = null;
      }
      long kb = keys.byteSize();
      long vb = values.byteSize();
      written += kb + vb;
      if (fallback != null) {
        Slot s = fallback.write(keys, values);
        local.put(n, s);
        return new Slot(n, kb, vb, s.crc());
      }
      byte[] data = new byte[Math.toIntExact(kb + vb)];
      MemorySegment d = MemorySegment.ofArray(data);
      MemorySegment.copy(keys, 0, d, 0, kb);
      MemorySegment.copy(values, 0, d, kb, vb);
      CRC32C crc = new CRC32C();
      crc.update(data);
      pending.put(n, data);
      if (pending.size() >= BATCH_BLOCKS) {
        send();
      }
      return new Slot(n, kb, vb, (int) crc.getValue());
    }

    /** The step is over: the unsent blocks go, and prefetched ones no read took are dropped. */
    @Override
    public void flush() {
      fetched.clear();
      parts.clear();
      send();
    }

    private void send() {
      if (pending.isEmpty() || closed) {
        return;
      }
      List<String> keys = new ArrayList<>(pending.size());
      for (long n : pending.keySet()) {
        keys.add(key(n));
      }
      List<byte[]> values = new ArrayList<>(pending.values());
      try {
        locked(
            () -> {
              tier.putAll(keys, values, EXPIRY);
              return null;
            });
        sent.addAll(keys);
      } catch (TierUnavailableException e) {
        fallBack(e);
      }
      pending.clear();
    }

    /** The tier failed: the unsent blocks and every later one go to a local spill file. */
    private void fallBack(TierUnavailableException e) {
      downUntil = System.nanoTime() + RETRY.toNanos();
      stats.fallbacks.incrementAndGet();
      warn.accept(
          "kvslim: warning: the KV tier "
              + tier.name()
              + " is unreachable ("
              + e.getMessage()
              + "); spilled KV blocks go to a local spill file");
      fallback = new SpillFile(null);
      for (Map.Entry<Long, byte[]> p : pending.entrySet()) {
        MemorySegment d = MemorySegment.ofArray(p.getValue());
        // key/value split does not matter for the file: it checks the bytes as one run
        local.put(p.getKey(), fallback.write(d, MemorySegment.ofArray(new byte[0])));
      }
    }

    @Override
    public void prefetch(List<Slot> slots) {
      check();
      List<String> keys = new ArrayList<>();
      List<Long> ids = new ArrayList<>();
      for (Slot s : slots) {
        if (!pending.containsKey(s.id()) && !local.containsKey(s.id())) {
          keys.add(key(s.id()));
          ids.add(s.id());
        }
      }
      if (keys.isEmpty()) {
        return;
      }
      List<byte[]> got;
      try {
        got = locked(() -> tier.getAll(keys));
      } catch (TierUnavailableException e) {
        return; // each read asks again and fails with the reason
      }
      for (int i = 0; i < ids.size(); i++) {
        if (got.get(i) != null) {
          fetched.put(ids.get(i), got.get(i));
        }
      }
    }

    /** The tier reads byte ranges (Redis {@code GETRANGE}): sub-blocks are fetched alone. */
    @Override
    public boolean readsParts() {
      return tier.readsRanges();
    }

    /** The ranges of every slot not in RAM or the fallback file, in one round trip. */
    @Override
    public void prefetchParts(List<Slot> slots, List<long[]> ranges) {
      check();
      List<String> keys = new ArrayList<>();
      List<Long> ids = new ArrayList<>();
      List<Long> from = new ArrayList<>();
      List<Long> count = new ArrayList<>();
      for (int i = 0; i < slots.size(); i++) {
        Slot s = slots.get(i);
        if (pending.containsKey(s.id()) || local.containsKey(s.id())) {
          continue;
        }
        long[] r = ranges.get(i);
        for (int j = 0; j + 1 < r.length; j += 2) {
          keys.add(key(s.id()));
          ids.add(s.id());
          from.add(r[j]);
          count.add(r[j + 1]);
        }
      }
      if (keys.isEmpty()) {
        return;
      }
      long[] f = from.stream().mapToLong(Long::longValue).toArray();
      long[] c = count.stream().mapToLong(Long::longValue).toArray();
      List<byte[]> got;
      try {
        got = locked(() -> tier.getRanges(keys, f, c));
      } catch (TierUnavailableException e) {
        return; // each read asks again and fails with the reason
      }
      for (int i = 0; i < ids.size(); i++) {
        if (got.get(i) != null && got.get(i).length == c[i]) {
          parts.computeIfAbsent(ids.get(i), k -> new ArrayList<>()).add(new Part(f[i], got.get(i)));
        }
      }
    }

    /**
     * Bytes {@code [from, from + count)} of {@code s}, unchecked (the caller checks each
     * sub-block): from RAM, the fallback file, a prefetched range, or one {@code GETRANGE}.
     *
     * @throws Corrupt if the tier no longer has them or cannot be reached
     */
    @Override
    public void readPart(Slot s, long from, MemorySegment dst, long dstOffset, long count) {
      check();
      if (from < 0 || count < 0 || from + count > s.bytes()) {
        throw new IndexOutOfBoundsException(
            "bytes " + from + ".." + (from + count) + " of a spilled block of " + s.bytes());
      }
      Slot at = local.get(s.id());
      if (at != null) {
        fallback.readPart(at, from, dst, dstOffset, count); // keys then values, as in the tier
        return;
      }
      byte[] data = pending.get(s.id());
      if (data == null) {
        data = fetched.get(s.id());
      }
      if (data != null) {
        MemorySegment.copy(MemorySegment.ofArray(data), from, dst, dstOffset, count);
        return;
      }
      for (Part p : parts.getOrDefault(s.id(), List.of())) {
        if (p.from() <= from && from + count <= p.from() + p.data().length) {
          MemorySegment.copy(
              MemorySegment.ofArray(p.data()), from - p.from(), dst, dstOffset, count);
          return;
        }
      }
      String k = key(s.id());
      byte[] got;
      try {
        got =
            locked(() -> tier.getRanges(List.of(k), new long[] {from}, new long[] {count})).get(0);
      } catch (TierUnavailableException e) {
        throw unreachable(e);
      }
      if (got == null || got.length != count) {
        throw new Corrupt(
            "a spilled KV block is missing from the KV tier "
                + tier.name()
                + " (key "
                + k
                + ", "
                + (got == null ? 0 : got.length)
                + " of bytes "
                + from
                + ".."
                + (from + count)
                + "): the sequence must be recomputed");
      }
      MemorySegment.copy(MemorySegment.ofArray(got), 0, dst, dstOffset, count);
    }

    /** The tier failed a read: it is skipped for {@link #RETRY}, and the block is lost. */
    private Corrupt unreachable(TierUnavailableException e) {
      downUntil = System.nanoTime() + RETRY.toNanos();
      return new Corrupt(
          "a spilled KV block is in the KV tier "
              + tier.name()
              + ", which cannot be reached ("
              + e.getMessage()
              + "): the sequence must be recomputed",
          e);
    }

    @Override
    public void read(Slot s, MemorySegment keys, MemorySegment values) {
      check();
      Slot at = local.get(s.id());
      if (at != null) {
        readLocal(s, at, keys, values);
        return;
      }
      byte[] data = pending.get(s.id());
      if (data == null) {
        data = fetched.remove(s.id());
      }
      if (data == null) {
        String k = key(s.id());
        try {
          data = locked(() -> tier.get(k));
        } catch (TierUnavailableException e) {
          throw unreachable(e);
        }
      }
      if (data == null || data.length != s.bytes()) {
        throw new Corrupt(
            "a spilled KV block is missing from the KV tier "
                + tier.name()
                + " (key "
                + key(s.id())
                + (data == null ? "" : ", " + data.length + " bytes instead of " + s.bytes())
                + "): the sequence must be recomputed");
      }
      CRC32C crc = new CRC32C();
      crc.update(data);
      if ((int) crc.getValue() != s.crc()) {
        throw new Corrupt(
            "a spilled KV block failed its checksum (key "
                + key(s.id())
                + " in the KV tier "
                + tier.name()
                + "): the tier's copy was changed; the sequence must be recomputed");
      }
      MemorySegment d = MemorySegment.ofArray(data);
      MemorySegment.copy(d, 0, keys, 0, s.keyBytes());
      MemorySegment.copy(d, s.keyBytes(), values, 0, s.valueBytes());
    }

    /** A block of the fallback file, written there as one run or as keys then values. */
    private void readLocal(Slot s, Slot at, MemorySegment keys, MemorySegment values) {
      if (at.keyBytes() == s.keyBytes()) {
        fallback.read(at, keys, values);
        return;
      }
      byte[] data = new byte[Math.toIntExact(s.bytes())];
      MemorySegment d = MemorySegment.ofArray(data);
      fallback.read(at, d, MemorySegment.ofArray(new byte[0]));
      MemorySegment.copy(d, 0, keys, 0, s.keyBytes());
      MemorySegment.copy(d, s.keyBytes(), values, 0, s.valueBytes());
    }

    @Override
    public long bytesWritten() {
      return written;
    }

    @Override
    public String where() {
      return fallback != null ? fallback.where() : tier.name();
    }

    private void check() {
      if (closed) {
        throw new IllegalStateException("the KV spill store in " + tier.name() + " is closed");
      }
    }

    @Override
    public void close() {
      if (closed) {
        return;
      }
      closed = true;
      pending.clear();
      fetched.clear();
      parts.clear();
      try {
        if (!sent.isEmpty() && !down()) {
          locked(
              () -> {
                tier.deleteAll(sent);
                return null;
              });
        }
      } catch (TierUnavailableException | UnsupportedOperationException e) {
        warn.accept(
            "kvslim: warning: cannot delete "
                + sent.size()
                + " spilled KV blocks from "
                + tier.name()
                + " ("
                + e.getMessage()
                + "); they expire in "
                + EXPIRY.toHours()
                + " h");
      } finally {
        sent.clear();
        if (fallback != null) {
          fallback.close();
        }
      }
    }
  }
}
