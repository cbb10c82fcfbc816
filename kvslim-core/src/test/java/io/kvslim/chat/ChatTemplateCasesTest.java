package io.kvslim.chat;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.kvslim.chat.ChatTemplate.Message;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.time.Clock;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Real chat templates (ChatML, Qwen2, Qwen2.5, Llama 3, Llama 3.2, Mistral v0.1 and v0.3, Gemma,
 * Phi-3, Llama 2, and one exercising the Python string methods, namespace, loop controls and
 * tojson) render exactly the prompt Python's jinja2 renders for them in the environment Hugging
 * Face transformers uses for {@code apply_chat_template}. The expected strings in {@code
 * chat/cases.json} were produced by {@code chat/gen_cases.py} running jinja2 3.1.6 (trim_blocks,
 * lstrip_blocks, loopcontrols, raise_exception, transformers' tojson), not by kvslim; the templates
 * are the models' published {@code chat_template} values. Templates that call {@code
 * raise_exception} (Gemma and Mistral on a system message, roles that do not alternate) must fail
 * with the template's own sentence.
 */
class ChatTemplateCasesTest {
  private static final String PREFIX = "the model's chat template rejects these messages: ";

  /** gen_cases.py fixes strftime_now to this moment (Llama 3.2 prints the date). */
  @BeforeAll
  static void fixTheClock() {
    JinjaChatTemplate.clock = Clock.fixed(Instant.parse("2024-07-26T09:05:03Z"), ZoneOffset.UTC);
  }

  @AfterAll
  static void freeTheClock() {
    JinjaChatTemplate.clock = Clock.systemDefaultZone();
  }

  static Stream<Arguments> cases() throws IOException {
    JsonNode root = new ObjectMapper().readTree(resource("cases.json"));
    List<Arguments> out = new ArrayList<>();
    for (JsonNode c : root.get("cases")) {
      String name =
          c.get("template").asText()
              + " / "
              + c.get("conversation").asText()
              + (c.get("add_generation_prompt").asBoolean() ? " + generation prompt" : "");
      out.add(Arguments.of(name, c, root.get("conversations").get(c.get("conversation").asText())));
    }
    return out.stream();
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("cases")
  void rendersWhatJinja2Renders(String name, JsonNode c, JsonNode conversation) throws IOException {
    String source = resource(c.get("template").asText() + ".jinja");
    ChatTemplate template =
        ChatTemplate.of(source, text(c.get("bos_token")), text(c.get("eos_token")));
    List<Message> messages = new ArrayList<>();
    for (JsonNode m : conversation) {
      messages.add(new Message(m.get("role").asText(), m.get("content").asText()));
    }
    boolean add = c.get("add_generation_prompt").asBoolean();
    if (c.has("error")) {
      assertThatThrownBy(() -> template.render(messages, add))
          .isInstanceOfSatisfying(
              ChatTemplateException.class, e -> assertThat(e.rejectsMessages()).isTrue())
          .hasMessage(PREFIX + c.get("error").asText());
    } else {
      // compared with line breaks and tabs written out, so a failure shows where they differ
      assertThat(visible(template.render(messages, add)))
          .isEqualTo(visible(c.get("output").asText()));
    }
  }

  /** {@code s} with backslashes, line breaks and tabs escaped (one-to-one). */
  static String visible(String s) {
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t");
  }

  private static String text(JsonNode n) {
    return n == null || n.isNull() ? null : n.asText();
  }

  static String resource(String name) throws IOException {
    try (InputStream in = ChatTemplateCasesTest.class.getResourceAsStream(name)) {
      if (in == null) {
        throw new IOException("missing test resource " + name);
      }
      return new String(in.readAllBytes(), StandardCharsets.UTF_8);
    }
  }
}
