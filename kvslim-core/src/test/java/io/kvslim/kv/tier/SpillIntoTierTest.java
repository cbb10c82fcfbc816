package io.kvslim.kv.tier;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.SharedData;
import io.kvslim.SpmEngineTest;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.ColdStorage;
import io.kvslim.kv.store.ColdStore;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Spill-and-recall into the configured KV tier ({@code spill=true} with {@code --kv-tier}): the
 * logits of every step equal those of the same method with everything in RAM, whether the cold
 * blocks go to a spill file in a disk tier's directory or into a key-value tier (here one in
 * memory; {@code SpillRedisTest} in the server module runs a real Redis); a flipped or missing
 * block fails the step with one sentence and the pool balanced; an unreachable tier falls back to a
 * local file with one warning and the answers unchanged; the tier's keys are deleted on close.
 */
class SpillIntoTierTest extends SpmEngineTest {
  static final String[] SPECS = {
    "quest:token_budget=64,page_size=16,skip_layers=1",
    "shadowkv:budget=40,outliers=3",
    "pqcache:budget=16,sink=4,bits=4,cache_blocks=2"
  };

  @TempDir Path dir;

  /**
   * A tier in memory, counting its round trips; {@code down} makes every call fail; {@code ranges}
   * makes it read byte ranges (as Redis {@code GETRANGE}), counting the bytes it hands out.
   */
  static class MapTier implements KvTier {
    final Map<String, byte[]> map = new TreeMap<>();
    int puts;
    int gets;
    boolean down;
    boolean ranges;
    long rangeBytes;

    @Override
    public boolean readsRanges() {
      return ranges;
    }

    @Override
    public List<byte[]> getRanges(List<String> keys, long[] from, long[] count) {
      assertThat(ranges).as("ranges read from a tier that reads values whole").isTrue();
      reach();
      gets++;
      List<byte[]> out = new ArrayList<>();
      for (int i = 0; i < keys.size(); i++) {
        byte[] v = map.getOrDefault(keys.get(i), new byte[0]);
        int f = (int) Math.min(from[i], v.length);
        int t = (int) Math.min(from[i] + count[i], v.length);
        out.add(java.util.Arrays.copyOfRange(v, f, t));
        rangeBytes += t - f;
      }
      return out;
    }

    private void reach() {
      if (down) {
        throw new TierUnavailableException("connection refused", null);
      }
    }

    @Override
    public String name() {
      return "map:test";
    }

    long wholeBytes;

    @Override
    public byte[] get(String key) {
      reach();
      gets++;
      byte[] v = map.get(key);
      wholeBytes += v == null ? 0 : v.length;
      return v == null ? null : v.clone();
    }

    @Override
    public List<byte[]> getAll(List<String> keys) {
      reach();
      gets++;
      List<byte[]> out = new ArrayList<>();
      for (String k : keys) {
        byte[] v = map.get(k);
        wholeBytes += v == null ? 0 : v.length;
        out.add(v == null ? null : v.clone());
      }
      return out;
    }

    @Override
    public boolean contains(String key) {
      reach();
      return map.containsKey(key);
    }

    @Override
    public void put(String key, byte[] value) {
      reach();
      puts++;
      map.put(key, value.clone());
    }

    @Override
    public void putAll(List<String> keys, List<byte[]> values, Duration expiry) {
      reach();
      puts++;
      assertThat(expiry).isPositive();
      for (int i = 0; i < keys.size(); i++) {
        map.put(keys.get(i), values.get(i).clone());
      }
    }

    @Override
    public void deleteAll(List<String> keys) {
      reach();
      keys.forEach(map::remove);
    }

    @Override
    public void close() {}
  }

  static ManagedKvCache cache(String spec, ColdStorage cold) {
    return KvSpecs.caches(KvSpec.parse(spec), new BlockPool().withColdStorage(cold), model.config())
        .create();
  }

  private static List<Path> spillFiles(Path d) throws IOException {
    try (Stream<Path> s = Files.list(d)) {
      return s.filter(p -> p.getFileName().toString().startsWith("kvslim-spill-")).toList();
    }
  }

  @ParameterizedTest
  @ValueSource(ints = {0, 1, 2})
  void spillIntoADiskTierOrAKeyValueTierGivesTheInRamLogits(int which) throws IOException {
    SharedData.require();
    String spec = SPECS[which];
    int n = 201;
    int steps = 6;
    int vocab = model.config().vocabSize();
    int[] toks = tokens(n + steps, 21);
    MapTier tier = new MapTier();
    ColdStorage disk = TierColdStorage.of(new DiskTier(dir), System.err::println);
    ColdStorage keyed =
        TierColdStorage.of(
            tier,
            w -> {
              throw new AssertionError("no fallback expected: " + w);
            });
    assertThat(keyed).isInstanceOf(TierColdStorage.class);
    float[] lr = new float[vocab];
    float[] ld = new float[vocab];
    float[] lk = new float[vocab];
    try (ManagedKvCache r = cache(spec, null);
        ManagedKvCache d = cache(spec + ",spill=true", disk);
        ManagedKvCache k = cache(spec + ",spill=true", keyed)) {
      engine.prefill(r, toks, 0, n, 0, false, lr);
      engine.prefill(d, toks, 0, n, 0, false, ld);
      engine.prefill(k, toks, 0, n, 0, false, lk);
      assertThat(ld).isEqualTo(lr);
      assertThat(lk).isEqualTo(lr);
      for (int s = 0; s < steps; s++) {
        engine.decode(r, toks[n + s], n + s, lr);
        engine.decode(d, toks[n + s], n + s, ld);
        engine.decode(k, toks[n + s], n + s, lk);
        assertThat(ld).as("step %d spilled into disk:%s", s, dir).isEqualTo(lr);
        assertThat(lk).as("step %d spilled into a key-value tier", s).isEqualTo(lr);
        assertThat(k.coldBytes()).isPositive();
        assertThat(k.bytes() + k.coldBytes()).isEqualTo(r.bytes());
        assertThat(d.bytes() + d.coldBytes()).isEqualTo(r.bytes());
      }
      assertThat(spillFiles(dir)).as("the spill file is in the tier's directory").hasSize(1);
      assertThat(tier.map).isNotEmpty();
      assertThat(tier.map.keySet())
          .allMatch(key -> key.matches("spill-[0-9a-f]{32}-l[0-9]+-h[0-9]+-b[0-9]+-[0-9]+"));
      var st = keyed.stats();
      assertThat(st.blocksSpilled.get()).isEqualTo(tier.map.size());
      assertThat(st.coldBytes.get()).isEqualTo(st.bytesSpilled.get()).isPositive();
      assertThat(st.bytesFetched.get()).isPositive();
      assertThat(st.fallbacks.get()).isZero();
      // batched: a round trip carries many blocks each way
      assertThat((long) tier.puts).isLessThan(st.blocksSpilled.get());
      assertThat((long) tier.gets).isLessThan(st.blocksFetched.get());
      assertThat(disk.stats().blocksSpilled.get()).isEqualTo(st.blocksSpilled.get());
    }
    assertThat(spillFiles(dir)).as("deleted on close").isEmpty();
    assertThat(tier.map).as("the cache's keys are deleted on close").isEmpty();
    assertThat(keyed.stats().coldBytes.get()).isZero();
  }

  @ParameterizedTest
  @ValueSource(ints = {0, 1})
  void aTierThatReadsRangesFetchesOnlyTheSelectedSubBlocks(int which) {
    SharedData.require();
    String spec = SPECS[which];
    int n = 201;
    int steps = 6;
    int vocab = model.config().vocabSize();
    int[] toks = tokens(n + steps + 1, 24 + which);
    MapTier whole = new MapTier();
    MapTier ranged = new MapTier();
    ranged.ranges = true;
    ColdStorage ws = new TierColdStorage(whole, w -> {});
    ColdStorage rs = new TierColdStorage(ranged, w -> {});
    float[] lr = new float[vocab];
    float[] lw = new float[vocab];
    float[] lg = new float[vocab];
    try (ManagedKvCache r = cache(spec, null);
        ManagedKvCache w = cache(spec + ",spill=true", ws);
        ManagedKvCache g = cache(spec + ",spill=true", rs)) {
      engine.prefill(r, toks, 0, n, 0, false, lr);
      engine.prefill(w, toks, 0, n, 0, false, lw);
      engine.prefill(g, toks, 0, n, 0, false, lg);
      assertThat(lg).isEqualTo(lr);
      for (int s = 0; s < steps; s++) {
        engine.decode(r, toks[n + s], n + s, lr);
        engine.decode(w, toks[n + s], n + s, lw);
        engine.decode(g, toks[n + s], n + s, lg);
        assertThat(lw).as("step %d, whole blocks", s).isEqualTo(lr);
        assertThat(lg).as("step %d, sub-blocks by range", s).isEqualTo(lr);
      }
      assertThat(ranged.rangeBytes).as("sub-blocks were read by range").isPositive();
      assertThat(whole.rangeBytes).isZero();
      assertThat(rs.stats().bytesFetched.get())
          .as("the counter counts what the tier handed out")
          .isEqualTo(ranged.rangeBytes + ranged.wholeBytes);
      assertThat(rs.stats().bytesFetched.get())
          .as("fewer bytes than whole blocks")
          .isLessThan(ws.stats().bytesFetched.get());
      assertThat((long) ranged.gets)
          .as("one round trip per head and step, not one per range")
          .isLessThan(rs.stats().blocksFetched.get());
      // every stored byte flipped: the first sub-block read fails its own checksum
      for (byte[] v : ranged.map.values()) {
        for (int i = 0; i < v.length; i++) {
          v[i] ^= 0x01;
        }
      }
      assertThatThrownBy(() -> engine.decode(g, toks[n + steps], n + steps, lg))
          .isInstanceOf(ColdStore.Corrupt.class)
          .hasMessageContaining("failed its checksum")
          .hasMessageNotContaining("\n");
    }
    assertThat(ranged.map).isEmpty();
  }

  @Test
  void aFlippedOrMissingBlockInTheTierFailsTheStepWithThePoolBalanced() {
    SharedData.require();
    String spec = SPECS[0] + ",spill=true";
    int n = 201;
    int[] toks = tokens(n + 4, 22);
    float[] logits = new float[model.config().vocabSize()];
    for (boolean flip : new boolean[] {true, false}) {
      MapTier tier = new MapTier();
      BlockPool pool = new BlockPool().withColdStorage(new TierColdStorage(tier, w -> {}));
      try (ManagedKvCache c = KvSpecs.caches(KvSpec.parse(spec), pool, model.config()).create()) {
        engine.prefill(c, toks, 0, n, 0, false, logits);
        engine.decode(c, toks[n], n, logits);
        assertThat(tier.map).isNotEmpty();
        for (Map.Entry<String, byte[]> e : new ArrayList<>(tier.map.entrySet())) {
          if (flip) {
            e.getValue()[e.getValue().length / 3] ^= 0x10;
          } else {
            tier.map.remove(e.getKey());
          }
        }
        long used = pool.usedBytes();
        assertThatThrownBy(() -> engine.decode(c, toks[n + 1], n + 1, logits))
            .isInstanceOf(ColdStore.Corrupt.class)
            .hasMessageContaining(flip ? "failed its checksum" : "is missing from the KV tier")
            .hasMessageEndingWith("the sequence must be recomputed")
            .hasMessageNotContaining("\n");
        assertThat(pool.usedBytes())
            .as("no bad block was taken into RAM")
            .isLessThanOrEqualTo(used);
      }
      assertThat(pool.usedBytes()).isZero();
    }
  }

  @Test
  void anUnreachableTierFallsBackToALocalFileWithOneWarning() {
    SharedData.require();
    String spec = SPECS[1];
    int n = 201;
    int steps = 4;
    int[] toks = tokens(n + steps, 23);
    int vocab = model.config().vocabSize();
    MapTier tier = new MapTier();
    tier.down = true;
    List<String> warnings = new ArrayList<>();
    TierColdStorage storage = new TierColdStorage(tier, warnings::add);
    float[] lr = new float[vocab];
    float[] lc = new float[vocab];
    for (int round = 0; round < 2; round++) {
      try (ManagedKvCache r = cache(spec, null);
          ManagedKvCache c = cache(spec + ",spill=true", storage)) {
        engine.prefill(r, toks, 0, n, 0, false, lr);
        engine.prefill(c, toks, 0, n, 0, false, lc);
        assertThat(lc).isEqualTo(lr);
        for (int s = 0; s < steps; s++) {
          engine.decode(r, toks[n + s], n + s, lr);
          engine.decode(c, toks[n + s], n + s, lc);
          assertThat(lc).as("round %d step %d after the fallback", round, s).isEqualTo(lr);
        }
        assertThat(c.coldBytes()).isPositive();
      }
    }
    // the first cache found the tier down; the second, within the retry window, did not try it
    assertThat(warnings).hasSize(1);
    assertThat(warnings.get(0)).contains("map:test is unreachable (connection refused)");
    assertThat(storage.stats().fallbacks.get()).isEqualTo(2);
    assertThat(tier.map).isEmpty();
    assertThat(storage.stats().coldBytes.get()).isZero();
  }
}
