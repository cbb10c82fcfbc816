package io.kvslim.server;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.chat.ChatTemplate;
import io.kvslim.model.Model;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Over HTTP: a chat request's role labels (system and last user message: priority; earlier turns:
 * evictable) reach the cache of its sequence under a segment-aware spec (LOOK-M), counted in {@code
 * /metrics} from what the cache holds; a plain completion carries no labels.
 */
class ServerSegmentsHttpTest {
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
    }
    if (model != null) {
      model.close();
    }
  }

  @Test
  void aChatsRoleLabelsReachTheCacheOverHttp() {
    List<ChatTemplate.Message> messages =
        List.of(
            new ChatTemplate.Message("system", "Be brief."),
            new ChatTemplate.Message("user", "A long document about nothing in particular."),
            new ChatTemplate.Message("assistant", "Read."),
            new ChatTemplate.Message("user", "Summarize it."));
    ChatTemplate.Segmented expected =
        server.server.chatTemplate().encodeSegmented(server.tokenizer, messages);
    int evictable = expected.segments().nonPriority();
    int priority = expected.tokens().length - evictable;
    assertThat(evictable).isPositive();
    assertThat(priority).isPositive();

    String body =
        "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
            + "{\"role\":\"user\",\"content\":\"A long document about nothing in particular.\"},"
            + "{\"role\":\"assistant\",\"content\":\"Read.\"},"
            + "{\"role\":\"user\",\"content\":\"Summarize it.\"}],"
            + "\"max_tokens\":3,\"temperature\":0,\"ignore_eos\":true,\"kv\":\"lookm:budget=8\"}";
    var r = server.post("/v1/chat/completions", body);
    assertThat(r.status()).isEqualTo(200);
    assertThat(r.body().at("/usage/prompt_tokens").asInt()).isEqualTo(expected.tokens().length);
    assertThat(count("priority")).isEqualTo(priority);
    assertThat(count("evictable")).isEqualTo(evictable);

    var plain =
        server.post(
            "/v1/completions",
            "{\"prompt\":\"Summarize it.\",\"max_tokens\":2,\"kv\":\"lookm:budget=8\"}");
    assertThat(plain.status()).isEqualTo(200);
    assertThat(count("priority")).as("no labels without roles").isEqualTo(priority);
    assertThat(count("evictable")).isEqualTo(evictable);
  }

  private static long count(String segment) {
    Matcher m =
        Pattern.compile("kvslim_prompt_tokens_total\\{segment=\"" + segment + "\"} ([0-9.eE+]+)")
            .matcher(server.metrics());
    assertThat(m.find()).as("metric for segment %s", segment).isTrue();
    return Math.round(Double.parseDouble(m.group(1)));
  }
}
