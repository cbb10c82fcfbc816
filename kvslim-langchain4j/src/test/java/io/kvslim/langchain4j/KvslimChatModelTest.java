package io.kvslim.langchain4j;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.langchain4j.model.chat.response.ChatResponse;
import dev.langchain4j.model.output.FinishReason;
import dev.langchain4j.service.AiServices;
import dev.langchain4j.service.SystemMessage;
import dev.langchain4j.service.TokenStream;
import dev.langchain4j.service.UserMessage;
import io.kvslim.api.KvslimException;
import io.kvslim.chat.ChatTemplate;
import io.kvslim.engine.Engine;
import io.kvslim.engine.Generator;
import io.kvslim.engine.KvSpecs;
import io.kvslim.engine.Sampler;
import io.kvslim.engine.SamplerConfig;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import io.kvslim.tokenizer.Tokenizer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * A real LangChain4j {@link AiServices} interface on kvslim's chat models, on the bundled model
 * with the ChatML Jinja template: the answer is what the kvslim engine generates greedily for the
 * same rendered prompt, streaming chunks concatenate to it, and a stop sequence cuts it.
 */
class KvslimChatModelTest {
  static final Path MODEL = Path.of("models/pycoder-6m-f16.gguf");
  static final String SYSTEM = "You complete Python code.";
  static final String USER = "def read_config(path):";
  static final int MAX_TOKENS = 40;

  /** The ChatML template as Hugging Face model cards ship it. */
  static final String CHATML =
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
          + " + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
          + "{{ '<|im_start|>assistant\\n' }}{% endif %}";

  interface Assistant {
    @SystemMessage(SYSTEM)
    String complete(@UserMessage String code);

    @SystemMessage(SYSTEM)
    TokenStream stream(@UserMessage String code);
  }

  private static String expected;

  /** The engine's own greedy answer: the template's tokens through {@link Generator}. */
  @BeforeAll
  static void engineAnswer() {
    try (Model m = Model.load(MODEL);
        Engine e = new Engine(m, 2, KvSpecs.factory(KvSpec.parse("q8_0"), new BlockPool()))) {
      Tokenizer tok = Tokenizer.fromGguf(m.file());
      ChatTemplate t = ChatTemplate.of(CHATML, tok);
      int[] prompt =
          t.encode(
              tok,
              List.of(
                  new ChatTemplate.Message("system", SYSTEM),
                  new ChatTemplate.Message("user", USER)));
      Generator.Result r =
          new Generator(e)
              .generate(
                  prompt, MAX_TOKENS, new Sampler(SamplerConfig.GREEDY), tok::isEog, x -> true);
      int[] answer = Arrays.copyOfRange(r.tokens(), prompt.length, r.tokens().length);
      var dec = tok.streamingDecoder(false);
      StringBuilder text = new StringBuilder();
      for (int id : answer) {
        text.append(dec.feed(id));
      }
      text.append(dec.flush());
      String s = text.toString();
      int end = s.indexOf(t.endOfTurn());
      expected = end < 0 ? s : s.substring(0, end);
    }
    assertThat(expected).isNotBlank();
  }

  private static KvslimChatModel.Builder chat() {
    return KvslimChatModel.builder()
        .modelPath(MODEL)
        .kv("q8_0")
        .chatTemplate(CHATML)
        .threads(2)
        .temperature(0.0)
        .maxTokens(MAX_TOKENS);
  }

  @Test
  void anAiServiceAnswersWhatTheEngineGeneratesGreedily() {
    try (KvslimChatModel model = chat().build()) {
      Assistant a = AiServices.create(Assistant.class, model);
      assertThat(a.complete(USER)).isEqualTo(expected);
    }
  }

  @Test
  void aStreamedAnswerConcatenatesToTheFullAnswer() throws Exception {
    try (KvslimStreamingChatModel model =
        KvslimStreamingChatModel.builder()
            .modelPath(MODEL)
            .kv("q8_0")
            .chatTemplate(CHATML)
            .threads(2)
            .temperature(0.0)
            .maxTokens(MAX_TOKENS)
            .build()) {
      Assistant a = AiServices.builder(Assistant.class).streamingChatModel(model).build();
      List<String> chunks = new ArrayList<>();
      CompletableFuture<ChatResponse> done = new CompletableFuture<>();
      a.stream(USER)
          .onPartialResponse(chunks::add)
          .onCompleteResponse(done::complete)
          .onError(done::completeExceptionally)
          .start();
      ChatResponse r = done.get(120, TimeUnit.SECONDS);
      assertThat(chunks).hasSizeGreaterThan(1);
      assertThat(String.join("", chunks)).isEqualTo(expected);
      assertThat(r.aiMessage().text()).isEqualTo(expected);
      assertThat(r.tokenUsage().outputTokenCount()).isPositive();
    }
  }

  @Test
  void aStopSequenceCutsTheAnswerBeforeIt() {
    String stop = expected.substring(expected.length() / 2, expected.length() / 2 + 3);
    String before = expected.substring(0, expected.indexOf(stop));
    try (KvslimChatModel model = chat().stopSequences(List.of(stop)).build()) {
      Assistant a = AiServices.create(Assistant.class, model);
      assertThat(a.complete(USER)).isEqualTo(before);
      ChatResponse r = model.chat(List.of(dev.langchain4j.data.message.UserMessage.from(USER)));
      assertThat(r.aiMessage().text()).doesNotContain(stop);
      assertThat(r.finishReason()).isIn(FinishReason.STOP, FinishReason.LENGTH);
    }
  }

  @Test
  void badSettingsAreOneKvslimException() {
    assertThatThrownBy(() -> chat().kv("nosuchmethod").build())
        .isExactlyInstanceOf(KvslimException.class)
        .hasMessageStartingWith("invalid KV spec 'nosuchmethod'");
    assertThatThrownBy(() -> chat().modelPath(Path.of("missing.gguf")).build())
        .isExactlyInstanceOf(KvslimException.class)
        .hasMessage("model file not found: missing.gguf");
    assertThatThrownBy(() -> KvslimChatModel.builder().build())
        .isExactlyInstanceOf(KvslimException.class)
        .hasMessage("no model given: set modelPath(...) or model(...)");
    try (KvslimChatModel model = chat().maxTokens(-1).build()) {
      assertThatThrownBy(() -> model.chat("Hi"))
          .isExactlyInstanceOf(KvslimException.class)
          .hasMessage("maxTokens must be >= 0, got -1");
    }
  }
}
