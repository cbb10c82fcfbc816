package io.kvslim.server;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import io.kvslim.SharedData;
import io.kvslim.kv.tier.DiskTier;
import io.kvslim.kv.tier.TierColdStorage;
import io.kvslim.model.Model;
import java.net.ServerSocket;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The spill figures in {@code /metrics} ({@code spill=true} methods with {@code --kv-tier}), read
 * over HTTP after real completions: blocks and bytes spilled, bytes fetched back, cold bytes held
 * (back to 0 once the request's cache is closed), fallbacks while Redis is unreachable; the answers
 * are those of the same method without spilling.
 */
class SpillMetricsTest {
  private static Model model;
  @TempDir Path dir;

  @BeforeAll
  static void load() {
    SharedData.require();
    model = TestServer.loadModel();
  }

  private static final String PROMPT =
      "The quick brown fox jumps over the lazy dog and then runs away. ".repeat(20);
  private static final String SPEC = "shadowkv:budget=40,outliers=3";

  private static JsonNode complete(TestServer s, String spec) {
    String body =
        "{\"prompt\":\"%s\",\"max_tokens\":8,\"temperature\":0,\"ignore_eos\":true,\"kv\":\"%s\",\"return_token_ids\":true}"
            .formatted(PROMPT, spec);
    var r = s.post("/v1/completions", body);
    assertThat(r.status()).as(r.raw().body()).isEqualTo(200);
    return r.body();
  }

  private static double metric(String scrape, String name) {
    for (String line : scrape.split("\n")) {
      if (line.startsWith(name + " ") || line.startsWith(name + "{")) {
        return Double.parseDouble(line.substring(line.lastIndexOf(' ') + 1));
      }
    }
    throw new AssertionError("no metric " + name + " in\n" + scrape);
  }

  @Test
  void spillFiguresAreInMetricsAfterARequest() {
    try (TestServer s = new TestServer(model, TestConfigs.tiny(1L << 30))) {
      s.server.useColdStorage(TierColdStorage.of(new DiskTier(dir), System.err::println));
      JsonNode ram = complete(s, SPEC);
      String before = s.metrics();
      assertThat(metric(before, "kvslim_kv_spill_spilled_blocks_total")).isZero();
      JsonNode spilled = complete(s, SPEC + ",spill=true");
      assertThat(spilled.at("/choices/0/token_ids")).isEqualTo(ram.at("/choices/0/token_ids"));
      String m = s.metrics();
      assertThat(m).contains("kvslim_kv_spill_cold_bytes{tier=\"disk:" + dir + "\"}");
      assertThat(metric(m, "kvslim_kv_spill_spilled_blocks_total")).isPositive();
      assertThat(metric(m, "kvslim_kv_spill_spilled_bytes_total")).isPositive();
      assertThat(metric(m, "kvslim_kv_spill_fetched_bytes_total")).isPositive();
      assertThat(metric(m, "kvslim_kv_spill_fetched_blocks_total")).isPositive();
      assertThat(metric(m, "kvslim_kv_spill_cold_bytes")).as("the cache is closed").isZero();
      assertThat(metric(m, "kvslim_kv_spill_fallbacks_total")).isZero();
    }
  }

  @Test
  void anUnreachableRedisCountsAFallbackAndTheRequestSucceeds() throws Exception {
    int port;
    try (ServerSocket free = new ServerSocket(0)) {
      port = free.getLocalPort(); // nothing listens there once closed
    }
    List<String> warnings = new ArrayList<>();
    try (TestServer s = new TestServer(model, TestConfigs.tiny(1L << 30))) {
      s.server.useColdStorage(
          TierColdStorage.of(new RedisTier("redis://127.0.0.1:" + port), warnings::add));
      JsonNode ram = complete(s, SPEC);
      JsonNode spilled = complete(s, SPEC + ",spill=true");
      assertThat(spilled.at("/choices/0/token_ids")).isEqualTo(ram.at("/choices/0/token_ids"));
      String m = s.metrics();
      assertThat(metric(m, "kvslim_kv_spill_fallbacks_total")).isEqualTo(1);
      assertThat(metric(m, "kvslim_kv_spill_spilled_blocks_total")).isPositive();
      assertThat(warnings).hasSize(1);
    }
  }
}
