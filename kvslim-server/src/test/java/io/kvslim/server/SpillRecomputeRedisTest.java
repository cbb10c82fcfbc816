package io.kvslim.server;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import io.kvslim.SharedData;
import io.kvslim.SpmEngineTest;
import io.kvslim.engine.Engine;
import io.kvslim.engine.Generator;
import io.kvslim.engine.KvSpecs;
import io.kvslim.engine.Sampler;
import io.kvslim.engine.SamplerConfig;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.ColdStorage;
import io.kvslim.kv.store.ColdStore;
import io.kvslim.kv.store.SpillStats;
import io.kvslim.kv.tier.KvTier;
import io.kvslim.kv.tier.TierColdStorage;
import io.lettuce.core.RedisClient;
import io.lettuce.core.api.StatefulRedisConnection;
import io.lettuce.core.codec.ByteArrayCodec;
import io.lettuce.core.codec.RedisCodec;
import io.lettuce.core.codec.StringCodec;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * A {@code spill=true} cache whose blocks were in a real {@code redis-server} that dies, or whose
 * blocks there were changed or deleted, is recomputed from the token ids ({@link
 * io.kvslim.engine.KvRecompute}): {@code generate}'s {@link Generator} and {@code serve} over HTTP
 * answer the greedy tokens of the same method with everything in RAM, count the recompute in {@code
 * kvslim_kv_spill_recomputes_total} with one warning line (every request of the failed batched step
 * recomputed, one decoding and one prefilling), and a recompute that loses a block again ends the
 * request with one sentence (503) instead of a loop; the server answers the next request.
 */
class SpillRecomputeRedisTest extends SpmEngineTest {
  private static final String[] SPECS = {
    "quest:token_budget=64,page_size=16,skip_layers=1",
    "shadowkv:budget=40,outliers=3",
    "pqcache:budget=16,sink=4,bits=4,cache_blocks=2"
  };
  private static final String KEYS = "kvslim:kv:spill-*";
  private static final int PROMPT = 201;
  private static final int TOKENS = 8;

  @BeforeAll
  static void shared() {
    SharedData.require();
  }

  private static Generator.Result generate(
      String spec, BlockPool pool, int[] prompt, Generator.TokenListener l, List<String> warn) {
    try (Engine e = new Engine(model, 2, KvSpecs.factory(KvSpec.parse(spec), pool))) {
      return new Generator(e)
          .withWarnings(warn::add)
          .generate(prompt, TOKENS, new Sampler(SamplerConfig.GREEDY), t -> false, l);
    }
  }

  private static StatefulRedisConnection<String, byte[]> raw(RedisProcess redis) {
    return RedisClient.create(redis.uri())
        .connect(RedisCodec.of(StringCodec.UTF8, ByteArrayCodec.INSTANCE));
  }

  @ParameterizedTest
  @ValueSource(ints = {0, 1, 2})
  void redisKilledMidGenerationIsRecomputedWithTheRamOnlyTokens(int which) throws Exception {
    String spec = SPECS[which];
    int[] prompt = tokens(PROMPT, 50 + which);
    int[] ram = generate(spec, new BlockPool(), prompt, t -> true, new ArrayList<>()).tokens();
    List<String> warnings = new ArrayList<>();
    RedisProcess redis = RedisProcess.start();
    try (ColdStorage storage = TierColdStorage.of(new RedisTier(redis.uri()), warnings::add)) {
      BlockPool pool = new BlockPool().withColdStorage(storage);
      int[] seen = {0};
      Generator.Result r =
          generate(
              spec + ",spill=true",
              pool,
              prompt,
              t -> {
                if (++seen[0] == 3) {
                  assertThat(storage.stats().blocksSpilled.get()).isPositive();
                  redis.close(); // killed between two decode steps: its blocks are gone
                }
                return true;
              },
              warnings);
      assertThat(r.tokens()).as("%s with Redis killed", spec).isEqualTo(ram);
      SpillStats st = storage.stats();
      assertThat(st.recomputes.get()).isEqualTo(1);
      assertThat(warnings).as("one warning line").hasSize(1);
      assertThat(warnings.get(0))
          .contains("cannot be reached")
          .contains("recomputing the sequence's " + (PROMPT + 3) + " tokens")
          .doesNotContain("\n");
      assertThat(pool.usedBytes()).isZero();
      assertThat(st.coldBytes.get()).isZero();
    } finally {
      redis.close();
    }
  }

  @Test
  void aStalledRedisTimesOutAndTheSequenceIsRecomputed() throws Exception {
    String spec = SPECS[1];
    int[] prompt = tokens(PROMPT, 55);
    int[] ram = generate(spec, new BlockPool(), prompt, t -> true, new ArrayList<>()).tokens();
    List<String> warnings = new ArrayList<>();
    try (RedisProcess redis = RedisProcess.start();
        ColdStorage storage = TierColdStorage.of(new RedisTier(redis.uri()), warnings::add)) {
      BlockPool pool = new BlockPool().withColdStorage(storage);
      int[] seen = {0};
      try {
        Generator.Result r =
            generate(
                spec + ",spill=true",
                pool,
                prompt,
                t -> {
                  if (++seen[0] == 3) {
                    try {
                      redis.signal("STOP"); // up, connected, silent: its commands time out
                    } catch (Exception e) {
                      throw new AssertionError(e);
                    }
                  }
                  return true;
                },
                warnings);
        assertThat(r.tokens()).isEqualTo(ram);
      } finally {
        redis.signal("CONT");
      }
      assertThat(storage.stats().recomputes.get()).isEqualTo(1);
      assertThat(warnings).hasSize(1);
      assertThat(warnings.get(0)).contains("cannot be reached").contains("timed out");
      assertThat(pool.usedBytes()).isZero();
    }
  }

  @ParameterizedTest
  @CsvSource({"1,true", "2,false"})
  void aFlippedOrDeletedBlockInRedisIsRecomputed(int which, boolean flip) throws Exception {
    String spec = SPECS[which];
    int[] prompt = tokens(PROMPT, 60 + which);
    int[] ram = generate(spec, new BlockPool(), prompt, t -> true, new ArrayList<>()).tokens();
    List<String> warnings = new ArrayList<>();
    try (RedisProcess redis = RedisProcess.start();
        ColdStorage storage = TierColdStorage.of(new RedisTier(redis.uri()), warnings::add);
        var conn = raw(redis)) {
      BlockPool pool = new BlockPool().withColdStorage(storage);
      int[] seen = {0};
      Generator.Result r =
          generate(
              spec + ",spill=true",
              pool,
              prompt,
              t -> {
                if (++seen[0] == 2) {
                  List<String> keys = conn.sync().keys(KEYS);
                  assertThat(keys).isNotEmpty();
                  for (String k : keys) {
                    if (flip) {
                      byte[] v = conn.sync().get(k);
                      for (int i = 0; i < v.length; i++) { // whatever sub-block is read
                        v[i] ^= 0x20;
                      }
                      conn.sync().set(k, v);
                    } else {
                      conn.sync().del(k);
                    }
                  }
                }
                return true;
              },
              warnings);
      assertThat(r.tokens()).isEqualTo(ram);
      assertThat(storage.stats().recomputes.get()).isEqualTo(1);
      assertThat(warnings).hasSize(1);
      assertThat(warnings.get(0))
          .contains(flip ? "failed its checksum" : "is missing from the KV tier " + redis.uri());
      assertThat(conn.sync().keys(KEYS)).as("deleted when the caches closed").isEmpty();
      assertThat(pool.usedBytes()).isZero();
    }
  }

  /**
   * A Redis tier that, from its {@code at}-th read (a pipelined {@code MGET}) on, is killed ({@code
   * lose} false) or hands back nothing, as if it had lost every block ({@code lose} true); counts
   * its reads.
   */
  private static final class FaultyTier implements KvTier {
    final RedisTier redis;
    final RedisProcess process;
    final int at;
    final boolean lose;
    int reads;

    FaultyTier(RedisProcess process, int at, boolean lose) {
      this.process = process;
      this.redis = new RedisTier(process.uri());
      this.at = at;
      this.lose = lose;
    }

    private boolean fault() {
      if (++reads == at && !lose) {
        process.close();
      }
      return lose && reads >= at;
    }

    @Override
    public String name() {
      return redis.name();
    }

    @Override
    public byte[] get(String key) {
      return fault() ? null : redis.get(key);
    }

    @Override
    public List<byte[]> getAll(List<String> keys) {
      return fault()
          ? new ArrayList<>(Collections.nCopies(keys.size(), (byte[]) null))
          : redis.getAll(keys);
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

  private static final String TEXT =
      "The quick brown fox jumps over the lazy dog and then runs away. ".repeat(20);
  private static final String SPEC = "shadowkv:budget=40,outliers=3";

  private static TestServer.Reply complete(TestServer s, String spec) {
    String body =
        "{\"prompt\":\"%s\",\"max_tokens\":8,\"temperature\":0,\"ignore_eos\":true,\"kv\":\"%s\",\"return_token_ids\":true}"
            .formatted(TEXT, spec);
    return s.post("/v1/completions", body);
  }

  private static double metric(String scrape, String name) {
    for (String line : scrape.split("\n")) {
      if (line.startsWith(name + " ") || line.startsWith(name + "{")) {
        return Double.parseDouble(line.substring(line.lastIndexOf(' ') + 1));
      }
    }
    throw new AssertionError("no metric " + name + " in\n" + scrape);
  }

  /** Reads of Redis a whole spilled request makes. */
  private static int readsOfOneRequest(io.kvslim.model.Model model) throws Exception {
    try (RedisProcess redis = RedisProcess.start();
        TestServer s = new TestServer(model, TestConfigs.tiny(1L << 30))) {
      FaultyTier tier = new FaultyTier(redis, Integer.MAX_VALUE, false);
      s.server.useColdStorage(TierColdStorage.of(tier, w -> {}));
      assertThat(complete(s, SPEC + ",spill=true").status()).isEqualTo(200);
      return tier.reads;
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"prefill", "decode"})
  void serveAnswersTheSameTextAfterRedisIsKilled(String phase) throws Exception {
    int reads = readsOfOneRequest(model);
    assertThat(reads).isGreaterThan(4);
    // the first reads come from the prompt's later chunks, the last from the last decode steps
    int at = phase.equals("prefill") ? 1 : reads - 1;
    List<String> warnings = new ArrayList<>();
    RedisProcess redis = RedisProcess.start();
    try (TestServer s = new TestServer(model, TestConfigs.tiny(1L << 30))) {
      FaultyTier tier = new FaultyTier(redis, at, false);
      s.server.useColdStorage(TierColdStorage.of(tier, warnings::add));
      TestServer.Reply ram = complete(s, SPEC);
      TestServer.Reply spilled = complete(s, SPEC + ",spill=true");
      assertThat(spilled.status()).as(spilled.raw().body()).isEqualTo(200);
      assertThat(tier.reads).as("Redis was killed during the request").isGreaterThanOrEqualTo(at);
      JsonNode a = ram.body().at("/choices/0");
      JsonNode b = spilled.body().at("/choices/0");
      assertThat(b.at("/token_ids")).isEqualTo(a.at("/token_ids"));
      assertThat(b.at("/text").asText()).isEqualTo(a.at("/text").asText());
      String m = s.metrics();
      assertThat(metric(m, "kvslim_kv_spill_recomputes_total")).isEqualTo(1);
      // the recompute's one line goes to the server's standard error; the tier added none
      assertThat(warnings).isEmpty();
      // Redis is still down: the next request spills to a local file at once and is answered
      TestServer.Reply again = complete(s, SPEC + ",spill=true");
      assertThat(again.status()).isEqualTo(200);
      assertThat(again.body().at("/choices/0/token_ids")).isEqualTo(a.at("/token_ids"));
    } finally {
      redis.close();
    }
  }

  private static TestServer.Reply complete(TestServer s, String text, String spec) {
    String body =
        "{\"prompt\":\"%s\",\"max_tokens\":8,\"temperature\":0,\"ignore_eos\":true,\"kv\":\"%s\",\"return_token_ids\":true}"
            .formatted(text, spec);
    return s.post("/v1/completions", body);
  }

  @Test
  void concurrentRequestsInTheFailedStepAreAllRecomputedAndAnswered() throws Exception {
    String[] texts = {TEXT, "A slow green turtle walks along the sandy beach at dawn. ".repeat(22)};
    int reads;
    JsonNode[] ram = new JsonNode[2];
    try (RedisProcess redis = RedisProcess.start();
        TestServer s = new TestServer(model, TestConfigs.tiny(1L << 30))) {
      FaultyTier tier = new FaultyTier(redis, Integer.MAX_VALUE, false);
      s.server.useColdStorage(TierColdStorage.of(tier, w -> {}));
      for (int i = 0; i < 2; i++) {
        ram[i] = complete(s, texts[i], SPEC).body().at("/choices/0/token_ids");
      }
      complete(s, texts[0], SPEC + ",spill=true");
      reads = tier.reads;
    }
    RedisProcess redis = RedisProcess.start();
    var clients = java.util.concurrent.Executors.newFixedThreadPool(2);
    try (TestServer s = new TestServer(model, TestConfigs.tiny(1L << 30))) {
      // killed half-way through what one request alone reads: both are under way by then
      FaultyTier tier = new FaultyTier(redis, reads / 2, false);
      s.server.useColdStorage(TierColdStorage.of(tier, w -> {}));
      List<java.util.concurrent.Future<TestServer.Reply>> replies = new ArrayList<>();
      for (int i = 0; i < 2; i++) {
        String text = texts[i];
        replies.add(clients.submit(() -> complete(s, text, SPEC + ",spill=true")));
      }
      for (int i = 0; i < 2; i++) {
        TestServer.Reply r = replies.get(i).get();
        assertThat(r.status()).as(r.raw().body()).isEqualTo(200);
        assertThat(r.body().at("/choices/0/token_ids")).as("request %d", i).isEqualTo(ram[i]);
      }
      assertThat(tier.reads).isGreaterThanOrEqualTo(reads / 2);
      double recomputes = metric(s.metrics(), "kvslim_kv_spill_recomputes_total");
      assertThat(recomputes).isBetween(1.0, 2.0);
      assertThat(s.server.scheduler().pool().usedBytes()).isZero();
    } finally {
      clients.shutdownNow();
      redis.close();
    }
  }

  @Test
  void aRecomputeThatLosesABlockAgainIsA503AndTheServerGoesOn() throws Exception {
    try (RedisProcess redis = RedisProcess.start();
        TestServer s = new TestServer(model, TestConfigs.tiny(1L << 30))) {
      FaultyTier tier = new FaultyTier(redis, 2, true);
      TierColdStorage inner = new TierColdStorage(tier, w -> {});
      // no local place for a recomputed cache: it spills into the same tier, which loses it again
      s.server.useColdStorage(
          new ColdStorage() {
            @Override
            public ColdStore open() {
              return inner.open();
            }

            @Override
            public SpillStats stats() {
              return inner.stats();
            }

            @Override
            public String name() {
              return inner.name();
            }

            @Override
            public void close() {
              inner.close();
            }
          });
      TestServer.Reply r = complete(s, SPEC + ",spill=true");
      assertThat(r.status()).as(r.raw().body()).isEqualTo(503);
      String message = r.body().at("/error/message").asText();
      assertThat(message)
          .contains("lost again after the sequence was recomputed")
          .contains("is missing from the KV tier")
          .doesNotContain("\n");
      assertThat(metric(s.metrics(), "kvslim_kv_spill_recomputes_total")).isEqualTo(1);
      TestServer.Reply next = complete(s, SPEC);
      assertThat(next.status()).as("the server goes on").isEqualTo(200);
      assertThat(s.server.scheduler().pool().usedBytes()).isZero();
    }
  }
}
