package io.kvslim.server;

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
import io.kvslim.kv.tier.KvTier;
import io.kvslim.kv.tier.TierColdStorage;
import io.lettuce.core.RedisClient;
import io.lettuce.core.api.StatefulRedisConnection;
import io.lettuce.core.codec.ByteArrayCodec;
import io.lettuce.core.codec.RedisCodec;
import io.lettuce.core.codec.StringCodec;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Spill-and-recall into a real {@code redis-server} ({@code spill=true} with {@code --kv-tier
 * redis://}): the in-RAM logits for Quest, ShadowKV and PQCache, the blocks under the cache's own
 * keys with an expiry and deleted when it closes, sub-blocks read with {@code GETRANGE} (the same
 * logits, fewer bytes fetched and sent than {@code MGET} of whole blocks), a flipped byte in Redis
 * detected, and a Redis killed mid-run: a new cache falls back to a local file with the same
 * answers, one that had blocks there fails its step with one sentence and the pool balanced.
 */
class SpillRedisTest extends SpmEngineTest {
  private static final String[] SPECS = {
    "quest:token_budget=64,page_size=16,skip_layers=1",
    "shadowkv:budget=40,outliers=3",
    "pqcache:budget=16,sink=4,bits=4,cache_blocks=2"
  };
  private static final String KEYS = "kvslim:kv:spill-*";

  @BeforeAll
  static void shared() {
    SharedData.require();
  }

  private static ManagedKvCache cache(String spec, BlockPool pool) {
    return KvSpecs.caches(KvSpec.parse(spec), pool, model.config()).create();
  }

  private static StatefulRedisConnection<String, byte[]> raw(RedisProcess redis) {
    return RedisClient.create(redis.uri())
        .connect(RedisCodec.of(StringCodec.UTF8, ByteArrayCodec.INSTANCE));
  }

  @ParameterizedTest
  @ValueSource(ints = {0, 1, 2})
  void spillIntoRedisGivesTheInRamLogitsAndDeletesItsKeys(int which) throws Exception {
    String spec = SPECS[which];
    int n = 201;
    int steps = 6;
    int[] toks = tokens(n + steps, 31);
    int vocab = model.config().vocabSize();
    try (RedisProcess redis = RedisProcess.start();
        ColdStorage storage =
            TierColdStorage.of(
                new RedisTier(redis.uri()),
                w -> {
                  throw new AssertionError("no fallback expected: " + w);
                });
        var conn = raw(redis)) {
      float[] lr = new float[vocab];
      float[] lc = new float[vocab];
      BlockPool pool = new BlockPool().withColdStorage(storage);
      try (ManagedKvCache r = cache(spec, new BlockPool());
          ManagedKvCache c = cache(spec + ",spill=true", pool)) {
        engine.prefill(r, toks, 0, n, 0, false, lr);
        engine.prefill(c, toks, 0, n, 0, false, lc);
        assertThat(lc).isEqualTo(lr);
        for (int s = 0; s < steps; s++) {
          engine.decode(r, toks[n + s], n + s, lr);
          engine.decode(c, toks[n + s], n + s, lc);
          assertThat(lc).as("%s step %d spilled into Redis", spec, s).isEqualTo(lr);
          assertThat(c.bytes() + c.coldBytes()).isEqualTo(r.bytes());
        }
        List<String> keys = conn.sync().keys(KEYS);
        assertThat(keys).isNotEmpty();
        assertThat((long) keys.size()).isEqualTo(storage.stats().blocksSpilled.get());
        long ttl = conn.sync().pttl(keys.get(0));
        assertThat(ttl).as("spilled blocks expire").isPositive();
        assertThat(storage.stats().bytesFetched.get()).isPositive();
        assertThat(storage.stats().fallbacks.get()).isZero();
      }
      assertThat(conn.sync().keys(KEYS)).as("deleted when the cache closes").isEmpty();
      assertThat(pool.usedBytes()).isZero();
      assertThat(storage.stats().coldBytes.get()).isZero();
    }
  }

  /** A Redis tier that reads values whole ({@code MGET}), as before {@code GETRANGE}. */
  private record WholeBlocks(RedisTier redis) implements KvTier {
    @Override
    public String name() {
      return redis.name();
    }

    @Override
    public byte[] get(String key) {
      return redis.get(key);
    }

    @Override
    public List<byte[]> getAll(List<String> keys) {
      return redis.getAll(keys);
    }

    @Override
    public boolean contains(String key) {
      return redis.contains(key);
    }

    @Override
    public void put(String key, byte[] value) {
      redis.put(key, value);
    }

    @Override
    public void putAll(List<String> keys, List<byte[]> values, Duration expiry) {
      redis.putAll(keys, values, expiry);
    }

    @Override
    public void deleteAll(List<String> keys) {
      redis.deleteAll(keys);
    }

    @Override
    public void close() {
      redis.close();
    }
  }

  /** The bytes Redis has sent its clients ({@code INFO stats}). */
  private static long sentByRedis(StatefulRedisConnection<String, byte[]> conn) {
    for (String line : conn.sync().info("stats").split("\r?\n")) {
      if (line.startsWith("total_net_output_bytes:")) {
        return Long.parseLong(line.substring(line.indexOf(':') + 1).strip());
      }
    }
    throw new AssertionError("no total_net_output_bytes in INFO stats");
  }

  /** Decode-step logits of {@code spec} after a prefill of {@code n} tokens, step by step. */
  private static float[][] run(String spec, BlockPool pool, int[] toks, int n, int steps) {
    float[][] out = new float[steps + 1][model.config().vocabSize()];
    try (ManagedKvCache c = cache(spec, pool)) {
      engine.prefill(c, toks, 0, n, 0, false, out[0]);
      for (int s = 0; s < steps; s++) {
        engine.decode(c, toks[n + s], n + s, out[s + 1]);
      }
    }
    return out;
  }

  @ParameterizedTest
  @ValueSource(ints = {0, 1})
  void getRangeReadsOnlyTheSelectedSubBlocksWithTheSameLogits(int which) throws Exception {
    String spec = SPECS[which];
    int n = 201;
    int steps = 6;
    int[] toks = tokens(n + steps, 34 + which);
    float[][] ram = run(spec, new BlockPool(), toks, n, steps);
    try (RedisProcess redis = RedisProcess.start();
        var conn = raw(redis);
        ColdStorage whole =
            TierColdStorage.of(new WholeBlocks(new RedisTier(redis.uri())), w -> {});
        ColdStorage ranged = TierColdStorage.of(new RedisTier(redis.uri()), w -> {})) {
      long s0 = sentByRedis(conn);
      float[][] w =
          run(spec + ",spill=true", new BlockPool().withColdStorage(whole), toks, n, steps);
      long s1 = sentByRedis(conn);
      float[][] g =
          run(spec + ",spill=true", new BlockPool().withColdStorage(ranged), toks, n, steps);
      long s2 = sentByRedis(conn);
      for (int s = 0; s <= steps; s++) {
        assertThat(w[s]).as("%s step %d, MGET of whole blocks", spec, s).isEqualTo(ram[s]);
        assertThat(g[s]).as("%s step %d, GETRANGE of sub-blocks", spec, s).isEqualTo(ram[s]);
      }
      assertThat(ranged.stats().bytesFetched.get())
          .as("bytes fetched, sub-blocks vs whole blocks")
          .isPositive()
          .isLessThan(whole.stats().bytesFetched.get());
      assertThat(s2 - s1).as("bytes Redis sent, GETRANGE vs MGET").isLessThan(s1 - s0);
      assertThat(conn.sync().keys(KEYS)).isEmpty();
    }
  }

  @Test
  void aFlippedByteInRedisIsDetected() throws Exception {
    String spec = SPECS[2] + ",spill=true";
    int n = 201;
    int[] toks = tokens(n + 4, 32);
    float[] logits = new float[model.config().vocabSize()];
    try (RedisProcess redis = RedisProcess.start();
        ColdStorage storage = TierColdStorage.of(new RedisTier(redis.uri()), w -> {});
        var conn = raw(redis)) {
      BlockPool pool = new BlockPool().withColdStorage(storage);
      try (ManagedKvCache c = cache(spec, pool)) {
        engine.prefill(c, toks, 0, n, 0, false, logits);
        engine.decode(c, toks[n], n, logits);
        for (String k : conn.sync().keys(KEYS)) {
          byte[] v = conn.sync().get(k);
          v[v.length / 2] ^= 0x01;
          conn.sync().set(k, v);
        }
        long used = pool.usedBytes();
        assertThatThrownBy(() -> engine.decode(c, toks[n + 1], n + 1, logits))
            .isInstanceOf(ColdStore.Corrupt.class)
            .hasMessageContaining("failed its checksum")
            .hasMessageContaining(redis.uri())
            .hasMessageNotContaining("\n");
        assertThat(pool.usedBytes()).isLessThanOrEqualTo(used);
      }
      assertThat(pool.usedBytes()).isZero();
    }
  }

  @Test
  void redisKilledMidRunFallsBackToALocalFileAndAnswersStayCorrect() throws Exception {
    String spec = SPECS[1];
    int n = 201;
    int steps = 4;
    int[] toks = tokens(n + 2 * steps, 33);
    int vocab = model.config().vocabSize();
    List<String> warnings = new ArrayList<>();
    RedisProcess redis = RedisProcess.start();
    try (ColdStorage storage = TierColdStorage.of(new RedisTier(redis.uri()), warnings::add)) {
      BlockPool pool = new BlockPool().withColdStorage(storage);
      float[] lr = new float[vocab];
      float[] lc = new float[vocab];
      float[] ln = new float[vocab];
      try (ManagedKvCache r = cache(spec, new BlockPool());
          ManagedKvCache before = cache(spec + ",spill=true", pool)) {
        engine.prefill(r, toks, 0, n, 0, false, lr);
        engine.prefill(before, toks, 0, n, 0, false, lc);
        engine.decode(r, toks[n], n, lr);
        engine.decode(before, toks[n], n, lc);
        assertThat(lc).isEqualTo(lr);
        assertThat(storage.stats().blocksSpilled.get()).isPositive();
        redis.close(); // killed: the blocks it held are gone
        // a request arriving now spills to a local file and answers as with everything in RAM
        float[] rr = new float[vocab];
        try (ManagedKvCache fresh = cache(spec + ",spill=true", pool);
            ManagedKvCache ram = cache(spec, new BlockPool())) {
          engine.prefill(ram, toks, 0, n, 0, false, rr);
          engine.prefill(fresh, toks, 0, n, 0, false, ln);
          for (int s = 0; s < steps; s++) {
            engine.decode(ram, toks[n + s], n + s, rr);
            engine.decode(fresh, toks[n + s], n + s, ln);
            assertThat(ln).as("step %d with Redis down", s).isEqualTo(rr);
          }
          assertThat(fresh.coldBytes()).isPositive();
        }
        assertThat(warnings).hasSize(1);
        assertThat(warnings.get(0)).contains("is unreachable").contains("local spill file");
        assertThat(storage.stats().fallbacks.get()).isEqualTo(1);
        // the cache whose blocks were in Redis cannot answer: a clean error, never a wrong one
        long used = pool.usedBytes();
        assertThatThrownBy(
                () -> {
                  for (int s = 1; s < steps; s++) {
                    engine.decode(before, toks[n + s], n + s, lc);
                  }
                })
            .isInstanceOf(ColdStore.Corrupt.class)
            .hasMessageContaining("cannot be reached")
            .hasMessageNotContaining("\n");
        assertThat(pool.usedBytes()).isLessThanOrEqualTo(used);
      }
      assertThat(pool.usedBytes()).isZero();
      assertThat(storage.stats().coldBytes.get()).isZero();
    } finally {
      redis.close();
    }
  }
}
