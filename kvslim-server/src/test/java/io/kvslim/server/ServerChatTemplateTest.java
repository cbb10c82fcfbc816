package io.kvslim.server;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import io.kvslim.model.Model;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The server runs the model's Jinja chat template: a template's {@code raise_exception} is a 400
 * about the messages, a template that cannot run is a 500 with one sentence, and a template that
 * writes the BOS text gives a prompt with one BOS, not two.
 */
class ServerChatTemplateTest {
  private static Model model;

  @BeforeAll
  static void load() {
    model = TestServer.loadModel();
  }

  @AfterAll
  static void close() {
    if (model != null) {
      model.close();
    }
  }

  private static String template(String name) throws IOException {
    try (InputStream in =
        ServerChatTemplateTest.class.getResourceAsStream("/io/kvslim/chat/" + name)) {
      return new String(in.readAllBytes(), StandardCharsets.UTF_8);
    }
  }

  @Test
  void gemmasTemplateRejectsASystemMessageWithA400AndRendersAChat() throws IOException {
    try (TestServer s =
        new TestServer(model, TestConfigs.tiny(32L << 20), template("gemma.jinja"))) {
      var bad =
          s.post(
              "/v1/chat/completions",
              "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                  + "{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":2}");
      assertThat(bad.status()).isEqualTo(400);
      JsonNode err = bad.body().get("error");
      assertThat(err.get("message").asText())
          .isEqualTo("the model's chat template rejects these messages: System role not supported");
      assertThat(err.get("type").asText()).isEqualTo("invalid_request_error");
      assertThat(err.get("param").asText()).isEqualTo("messages");

      var ok =
          s.post(
              "/v1/chat/completions",
              "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello!\"}],\"max_tokens\":2}");
      assertThat(ok.status()).isEqualTo(200);
      // jinja2 renders "<bos>" + this for Gemma (cases.json); this model's BOS text is "<s>"
      String afterBos = "<start_of_turn>user\nHello!<end_of_turn>\n<start_of_turn>model\n";
      int oneBos = s.tokenizer.encode(afterBos, true, true).length;
      assertThat(ok.body().at("/usage/prompt_tokens").asInt()).isEqualTo(oneBos);
      // the template writes the BOS text; tokenized as it is, the prompt would start with two
      assertThat(s.tokenizer.encode("<s>" + afterBos, true, true)).hasSize(oneBos + 1);

      assertThat(s.get("/v1/models").body().at("/data/0/kvslim/chat_template").asText())
          .isEqualTo("jinja");
    }
  }

  @Test
  void aTemplateThatCannotRunFailsChatWithOneSentenceAndLeavesCompletions() {
    try (TestServer s = new TestServer(model, TestConfigs.tiny(32L << 20), "{% if %}x")) {
      var chat =
          s.post(
              "/v1/chat/completions",
              "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":2}");
      assertThat(chat.status()).isEqualTo(500);
      assertThat(chat.body().at("/error/message").asText())
          .startsWith("the model's chat template failed to render (line 1): ")
          .doesNotContain("\n")
          .doesNotContain("Exception");
      assertThat(chat.body().at("/error/type").asText()).isEqualTo("server_error");
      assertThat(s.server.chatTemplate().probe())
          .isEqualTo(chat.body().at("/error/message").asText());
      var completion = s.post("/v1/completions", "{\"prompt\":\"Hi\",\"max_tokens\":2}");
      assertThat(completion.status()).isEqualTo(200);
    }
  }
}
