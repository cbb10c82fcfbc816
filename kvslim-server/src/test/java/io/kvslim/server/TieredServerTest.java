package io.kvslim.server;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import io.kvslim.SharedData;
import io.kvslim.kv.tier.KvTier;
import io.kvslim.kv.tier.PrefixCache;
import io.kvslim.kv.tier.TierStats;
import io.kvslim.model.Model;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Servers with KV tiers (issue 19): two servers on one Redis share a prompt's prefix (the second
 * answers the same tokens without prefilling it), a disk tier does the same across requests, and a
 * Redis killed mid-run is skipped with requests still answered.
 */
class TieredServerTest {
  private static Model model;
  @TempDir Path dir;

  @BeforeAll
  static void load() {
    SharedData.require();
    model = TestServer.loadModel();
  }

  private static final String PROMPT =
      "The quick brown fox jumps over the lazy dog and then runs away. ".repeat(20);

  private static String body(String spec) {
    return "{\"prompt\":\"%s\",\"max_tokens\":8,\"temperature\":0,\"ignore_eos\":true,\"kv\":\"%s\",\"return_token_ids\":true}"
        .formatted(PROMPT, spec);
  }

  private static TestServer server(List<KvTier> tiers) {
    TestServer s = new TestServer(model, TestConfigs.tiny(1L << 30));
    s.server.usePrefixCache(
        new PrefixCache(
            tiers,
            PrefixCache.identityOf(model.config(), s.engine.numerics().name()),
            new TierStats(),
            System.err::println));
    return s;
  }

  private static JsonNode complete(TestServer s, String spec) {
    var r = s.post("/v1/completions", body(spec));
    assertThat(r.status()).as(r.raw().body()).isEqualTo(200);
    return r.body();
  }

  private static double metric(TestServer s, String name) {
    for (String line : s.metrics().split("\n")) {
      if (line.startsWith(name + " ") || line.startsWith(name + "{")) {
        return Double.parseDouble(line.substring(line.lastIndexOf(' ') + 1));
      }
    }
    throw new AssertionError("no metric " + name);
  }

  @Test
  void twoServersOnOneRedisShareAPrefix() throws Exception {
    try (RedisProcess redis = RedisProcess.start();
        TestServer a = server(List.of(new RedisTier(redis.uri())));
        TestServer b = server(List.of(new RedisTier(redis.uri())))) {
      for (String spec : new String[] {"full", "q4_0"}) {
        JsonNode first = complete(a, spec);
        assertThat(metric(a, "kvslim_kv_tier_stored_total")).isPositive();
        double before = metric(b, "kvslim_kv_tier_restored_tokens_total");
        JsonNode second = complete(b, spec);
        assertThat(second.at("/choices/0/token_ids")).isEqualTo(first.at("/choices/0/token_ids"));
        int prompt = first.at("/usage/prompt_tokens").asInt();
        double restored = metric(b, "kvslim_kv_tier_restored_tokens_total") - before;
        assertThat(restored).as(spec).isEqualTo((prompt - 1) / 32 * 32);
        assertThat(metric(b, "kvslim_kv_tier_read_bytes_total")).isPositive();
      }
      assertThat(metric(b, "kvslim_kv_tier_rejected_total")).isZero();
    }
  }

  @Test
  void aDiskTierServesTheSecondRequestWithTheSameAnswer() {
    try (TestServer s = server(List.of(new io.kvslim.kv.tier.DiskTier(dir)))) {
      JsonNode first = complete(s, "full");
      JsonNode second = complete(s, "full");
      assertThat(second.at("/choices/0/token_ids")).isEqualTo(first.at("/choices/0/token_ids"));
      assertThat(metric(s, "kvslim_kv_tier_restored_tokens_total")).isPositive();
    }
  }

  @Test
  void redisKilledMidRunIsSkippedAndRequestsAreStillAnswered() throws Exception {
    RedisProcess redis = RedisProcess.start();
    String uri = redis.uri();
    try (TestServer s = server(List.of(new RedisTier(uri)))) {
      JsonNode first = complete(s, "full");
      redis.close(); // killed: the next lookups and stores cannot reach it
      JsonNode second = complete(s, "full");
      JsonNode third = complete(s, "f16");
      assertThat(second.at("/choices/0/token_ids")).isEqualTo(first.at("/choices/0/token_ids"));
      assertThat(third.at("/choices/0/token_ids").size()).isEqualTo(8);
      String m = s.metrics();
      assertThat(m).contains("kvslim_kv_tier_unavailable_total{tier=\"" + uri + "\"}");
      assertThat(metric(s, "kvslim_kv_tier_unavailable_total")).isGreaterThanOrEqualTo(1);
      assertThat(metric(s, "kvslim_kv_tier_restored_tokens_total")).isZero();
    } finally {
      redis.close();
    }
  }
}
