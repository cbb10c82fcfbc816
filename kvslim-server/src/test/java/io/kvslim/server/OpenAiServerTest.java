package io.kvslim.server;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import io.kvslim.chat.ChatFamily;
import io.kvslim.chat.ChatTemplate;
import io.kvslim.engine.Engine;
import io.kvslim.engine.Generator;
import io.kvslim.engine.KvSpecs;
import io.kvslim.engine.Sampler;
import io.kvslim.engine.SamplerConfig;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.MethodSource;

/** The HTTP API over real loopback HTTP: shapes, greedy equivalence, stops, errors, auth. */
class OpenAiServerTest {
  private static Model model;
  private static TestServer server;

  @BeforeAll
  static void start() {
    model = TestServer.loadModel();
    server = new TestServer(model, TestConfigs.tiny(64L << 20));
  }

  @AfterAll
  static void stop() {
    if (server != null) {
      server.close();
      assertThat(server.server.pool().usedBytes()).isZero();
    }
    if (model != null) {
      model.close();
    }
  }

  private static int[] generatorTokens(String prompt, String spec, int maxTokens) {
    try (Engine engine =
        new Engine(model, 2, KvSpecs.factory(KvSpec.parse(spec), new BlockPool()))) {
      int[] ids = server.tokenizer.encode(prompt, true, false);
      Generator.Result r =
          new Generator(engine)
              .generate(ids, maxTokens, new Sampler(SamplerConfig.GREEDY), t -> false, t -> true);
      return Arrays.copyOfRange(r.tokens(), ids.length, r.tokens().length);
    }
  }

  private static int[] ids(JsonNode array) {
    int[] out = new int[array.size()];
    for (int i = 0; i < out.length; i++) {
      out[i] = array.get(i).asInt();
    }
    return out;
  }

  @Test
  void completionReturnsTextUsageAndKvUsage() {
    var r =
        server.post(
            "/v1/completions",
            "{\"prompt\":\"Once upon a time\",\"max_tokens\":8,\"temperature\":0}");
    assertThat(r.status()).isEqualTo(200);
    JsonNode b = r.body();
    assertThat(b.get("object").asText()).isEqualTo("text_completion");
    assertThat(b.get("id").asText()).startsWith("cmpl-");
    JsonNode choice = b.get("choices").get(0);
    assertThat(choice.get("text").asText()).isNotEmpty();
    assertThat(choice.get("finish_reason").asText()).isIn("length", "stop");
    int prompt = server.tokenizer.encode("Once upon a time", true, false).length;
    assertThat(b.at("/usage/prompt_tokens").asInt()).isEqualTo(prompt);
    assertThat(b.at("/usage/completion_tokens").asInt()).isBetween(1, 8);
    assertThat(b.at("/usage/total_tokens").asInt())
        .isEqualTo(prompt + b.at("/usage/completion_tokens").asInt());
    assertThat(b.at("/kvslim_usage/kv").asText()).isEqualTo("full");
    assertThat(b.at("/kvslim_usage/kv_bytes").asLong()).isPositive();
    assertThat(b.at("/kvslim_usage/kv_bytes_peak").asLong())
        .isGreaterThanOrEqualTo(b.at("/kvslim_usage/kv_bytes").asLong());
    assertThat(b.at("/kvslim_usage/compression_ratio").asDouble()).isPositive();
  }

  /**
   * Prompts of 1 and 12 sentences: the long one is prefilled in chunks of 64 by the server, or of
   * the spec's {@code chunk} when it compresses inside the prefill (cut where the engine cuts it).
   */
  @ParameterizedTest
  @CsvSource(
      delimiter = '|',
      value = {
        "full|1",
        "kivi:kbits=2,vbits=2,residual=32|1",
        "snapkv:budget=8,window=4|1",
        "full|12",
        "snapkv:budget=32,window=8|12",
        "snapkv:budget=32,window=8,chunk=24|12",
        "expected:budget=32,chunk=24|12"
      })
  void greedyOverHttpEqualsGeneratorForTheSameSpec(String spec, int sentences) {
    String prompt = "The quick brown fox jumps over the lazy dog and then".repeat(sentences);
    int[] expected = generatorTokens(prompt, spec, 12);
    assertThat(expected).hasSize(12);
    String body =
        "{\"prompt\":\"%s\",\"max_tokens\":12,\"temperature\":0,\"ignore_eos\":true,\"kv\":\"%s\",\"return_token_ids\":true}"
            .formatted(prompt, spec);
    var r = server.post("/v1/completions", body);
    assertThat(r.status()).isEqualTo(200);
    assertThat(ids(r.body().at("/choices/0/token_ids"))).containsExactly(expected);
    assertThat(r.body().at("/kvslim_usage/kv").asText()).isEqualTo(spec);

    if (!spec.equals("full") || sentences > 1) {
      return; // streaming shares the path checked below; once is enough on this slow model
    }
    List<Integer> streamed = new ArrayList<>();
    for (String e : server.stream("/v1/completions", body.replace("}", ",\"stream\":true}"))) {
      if (!e.equals("[DONE]")) {
        for (JsonNode id : TestServer.parse(e).at("/choices/0/token_ids")) {
          streamed.add(id.asInt());
        }
      }
    }
    assertThat(streamed).containsExactly(Arrays.stream(expected).boxed().toArray(Integer[]::new));
  }

  @Test
  void streamingCompletionMatchesNonStreaming() {
    String body = "{\"prompt\":\"Hello world\",\"max_tokens\":10,\"temperature\":0";
    String whole = server.post("/v1/completions", body + "}").body().at("/choices/0/text").asText();
    List<String> events =
        server.stream(
            "/v1/completions",
            body + ",\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    assertThat(events.getLast()).isEqualTo("[DONE]");
    StringBuilder text = new StringBuilder();
    String finish = null;
    JsonNode usage = null;
    for (String e : events.subList(0, events.size() - 1)) {
      JsonNode chunk = TestServer.parse(e);
      assertThat(chunk.get("object").asText()).isEqualTo("text_completion");
      if (chunk.get("choices").isEmpty()) {
        usage = chunk.get("usage");
        continue;
      }
      text.append(chunk.at("/choices/0/text").asText());
      if (!chunk.at("/choices/0/finish_reason").isNull()) {
        finish = chunk.at("/choices/0/finish_reason").asText();
        assertThat(chunk.at("/kvslim_usage/kv_bytes").asLong()).isPositive();
      }
    }
    assertThat(text.toString()).isEqualTo(whole);
    assertThat(finish).isIn("length", "stop");
    assertThat(usage).isNotNull();
    assertThat(usage.get("completion_tokens").asInt()).isBetween(1, 10);
  }

  @Test
  void chatCompletionStreamingAndNot() {
    String body =
        "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
            + "{\"role\":\"user\",\"content\":\"Tell me a story\"}],\"max_tokens\":10,\"temperature\":0";
    var r = server.post("/v1/chat/completions", body + "}");
    assertThat(r.status()).isEqualTo(200);
    assertThat(r.body().get("object").asText()).isEqualTo("chat.completion");
    assertThat(r.body().at("/choices/0/message/role").asText()).isEqualTo("assistant");
    String content = r.body().at("/choices/0/message/content").asText();
    String rendered =
        ChatFamily.CHATML.render(
            List.of(
                new ChatTemplate.Message("system", "Be brief."),
                new ChatTemplate.Message("user", "Tell me a story")),
            true);
    assertThat(r.body().at("/usage/prompt_tokens").asInt())
        .isEqualTo(server.tokenizer.encode(rendered, true, true).length);

    List<String> events = server.stream("/v1/chat/completions", body + ",\"stream\":true}");
    JsonNode first = TestServer.parse(events.getFirst());
    assertThat(first.get("object").asText()).isEqualTo("chat.completion.chunk");
    assertThat(first.at("/choices/0/delta/role").asText()).isEqualTo("assistant");
    StringBuilder text = new StringBuilder();
    for (String e : events.subList(0, events.size() - 1)) {
      text.append(TestServer.parse(e).at("/choices/0/delta/content").asText(""));
    }
    assertThat(text.toString()).isEqualTo(content);
    assertThat(
            TestServer.parse(events.get(events.size() - 2)).at("/choices/0/finish_reason").asText())
        .isIn("length", "stop");
    assertThat(events.getLast()).isEqualTo("[DONE]");
  }

  @Test
  void stopStringEndsTheTextBeforeIt() {
    String body = "{\"prompt\":\"Once upon a time\",\"max_tokens\":12,\"temperature\":0";
    String whole = server.post("/v1/completions", body + "}").body().at("/choices/0/text").asText();
    assertThat(whole.length()).isGreaterThan(8);
    String stop = whole.substring(whole.length() / 2, whole.length() / 2 + 3);
    String expected = whole.substring(0, whole.indexOf(stop));
    String withStop = body + ",\"stop\":[\"zzzzqq\"," + TestServer.JSON.valueToTree(stop) + "]";
    var r = server.post("/v1/completions", withStop + "}");
    assertThat(r.body().at("/choices/0/text").asText()).isEqualTo(expected);
    assertThat(r.body().at("/choices/0/finish_reason").asText()).isEqualTo("stop");

    StringBuilder streamed = new StringBuilder();
    for (String e : server.stream("/v1/completions", withStop + ",\"stream\":true}")) {
      if (!e.equals("[DONE]")) {
        streamed.append(TestServer.parse(e).at("/choices/0/text").asText());
      }
    }
    assertThat(streamed.toString()).isEqualTo(expected);
  }

  @Test
  void zeroMaxTokensAnswersAtOnce() {
    var r = server.post("/v1/completions", "{\"prompt\":\"Hi\",\"max_tokens\":0}");
    assertThat(r.status()).isEqualTo(200);
    assertThat(r.body().at("/choices/0/text").asText()).isEmpty();
    assertThat(r.body().at("/choices/0/finish_reason").asText()).isEqualTo("length");
  }

  @Test
  void modelsHealthAndMetrics() {
    var models = server.get("/v1/models");
    assertThat(models.status()).isEqualTo(200);
    assertThat(models.body().at("/data/0/id").asText()).isEqualTo("tiny");
    assertThat(models.body().at("/data/0/kvslim/context_length").asInt()).isEqualTo(2048);
    var health = server.get("/health");
    assertThat(health.status()).isEqualTo(200);
    assertThat(health.body().get("status").asText()).isEqualTo("ok");
    server.post("/v1/completions", "{\"prompt\":\"Hi\",\"max_tokens\":2}");
    String metrics = server.metrics();
    assertThat(metrics)
        .contains("kvslim_requests_total{endpoint=\"/v1/completions\",status=\"200\"}")
        .contains("kvslim_generated_tokens_total")
        .contains("kvslim_tokens_per_second")
        .contains("kvslim_queue_length")
        .contains("kvslim_active_sequences")
        .contains("kvslim_kv_bytes_used_bytes")
        .contains("kvslim_kv_bytes_spec_bytes{kv=\"full\"}");
  }

  static Stream<Arguments> badRequests() {
    String longPrompt = "[" + "1,".repeat(2047) + "1]";
    return Stream.of(
        Arguments.of("/v1/completions", "{\"prompt\":", 400, null),
        Arguments.of("/v1/completions", "", 400, null),
        Arguments.of("/v1/completions", "[1,2]", 400, null),
        Arguments.of("/v1/completions", "{\"max_tokens\":3}", 400, "prompt"),
        Arguments.of("/v1/completions", "{\"prompt\":42}", 400, "prompt"),
        Arguments.of(
            "/v1/completions", "{\"prompt\":\"a\",\"max_tokens\":\"ten\"}", 400, "max_tokens"),
        Arguments.of("/v1/completions", "{\"prompt\":\"a\",\"max_tokens\":-1}", 400, "max_tokens"),
        Arguments.of(
            "/v1/completions", "{\"prompt\":\"a\",\"max_tokens\":2048}", 400, "max_tokens"),
        Arguments.of("/v1/completions", "{\"prompt\":" + longPrompt + "}", 400, "prompt"),
        Arguments.of("/v1/completions", "{\"prompt\":[99999999]}", 400, "prompt"),
        Arguments.of(
            "/v1/completions", "{\"prompt\":\"a\",\"temperature\":\"hot\"}", 400, "temperature"),
        Arguments.of("/v1/completions", "{\"prompt\":\"a\",\"temperature\":5}", 400, "temperature"),
        Arguments.of("/v1/completions", "{\"prompt\":\"a\",\"top_p\":0}", 400, "top_p"),
        Arguments.of("/v1/completions", "{\"prompt\":\"a\",\"stream\":\"yes\"}", 400, "stream"),
        Arguments.of("/v1/completions", "{\"prompt\":\"a\",\"stop\":7}", 400, "stop"),
        Arguments.of("/v1/completions", "{\"prompt\":\"a\",\"n\":2}", 400, "n"),
        Arguments.of("/v1/completions", "{\"prompt\":\"a\",\"kv\":\"snapkv:budgt=3\"}", 400, "kv"),
        Arguments.of("/v1/completions", "{\"prompt\":\"a\",\"kv\":\"nosuch\"}", 400, "kv"),
        Arguments.of("/v1/completions", "{\"prompt\":\"a\",\"kv\":5}", 400, "kv"),
        // a request may not make the server read a file (nor learn whether one exists)
        Arguments.of(
            "/v1/completions", "{\"prompt\":\"a\",\"kv\":\"duo@profile=/etc/passwd\"}", 400, "kv"),
        Arguments.of("/v1/chat/completions", "{\"prompt\":\"a\"}", 400, "messages"),
        Arguments.of("/v1/chat/completions", "{\"messages\":[]}", 400, "messages"),
        Arguments.of(
            "/v1/chat/completions",
            "{\"messages\":[{\"role\":\"cat\",\"content\":\"a\"}]}",
            400,
            "messages[0].role"),
        Arguments.of(
            "/v1/chat/completions",
            "{\"messages\":[{\"role\":\"user\",\"content\":1}]}",
            400,
            "messages[0].content"),
        Arguments.of("/v1/nothing", "{}", 404, null));
  }

  @ParameterizedTest
  @MethodSource("badRequests")
  void badInputGetsAnOpenAiErrorObject(String path, String body, int status, String param) {
    var r = server.post(path, body);
    assertThat(r.status()).isEqualTo(status);
    assertThat(r.body()).as("JSON error body for %s", body).isNotNull();
    JsonNode err = r.body().get("error");
    assertThat(err.get("message").asText())
        .isNotBlank()
        .doesNotContain("Exception")
        .doesNotContain("\tat ");
    assertThat(err.get("type").asText()).isEqualTo("invalid_request_error");
    if (param == null) {
      assertThat(err.get("param").isNull()).isTrue();
    } else {
      assertThat(err.get("param").asText()).isEqualTo(param);
    }
  }

  @Test
  void badKvSpecAnswersWithTheSpecsOwnMessage() {
    var r = server.post("/v1/completions", "{\"prompt\":\"a\",\"kv\":\"snapkv:budgt=3\"}");
    assertThat(r.body().at("/error/message").asText()).contains("budgt").contains("budget");
  }

  @Test
  void apiKeyIsRequiredWhenSet() {
    try (TestServer keyed = new TestServer(model, TestConfigs.tiny(16L << 20, 16, 64, "s3cret"))) {
      String body = "{\"prompt\":\"Hi\",\"max_tokens\":2}";
      var missing = keyed.post("/v1/completions", body);
      assertThat(missing.status()).isEqualTo(401);
      assertThat(missing.body().at("/error/code").asText()).isEqualTo("invalid_api_key");
      assertThat(keyed.post("/v1/completions", body, "wrong").status()).isEqualTo(401);
      assertThat(keyed.get("/v1/models").status()).isEqualTo(401);
      assertThat(keyed.post("/v1/completions", body, "s3cret").status()).isEqualTo(200);
      assertThat(keyed.get("/health").status()).isEqualTo(200);
    }
  }
}
