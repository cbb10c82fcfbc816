package io.kvslim.api;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

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
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The public API on the bundled model: it generates what the engine generates, stops where it is
 * told, streams the text it returns, and turns bad input into one {@link KvslimException}.
 */
class KvslimApiTest {
  static final Path MODEL = Path.of("models/pycoder-6m-f16.gguf");
  static final String PROMPT = "import os\n\n\ndef read_config(path):\n";
  private static KvslimModel model;

  @BeforeAll
  static void load() {
    model = KvslimModel.load(MODEL);
  }

  @AfterAll
  static void close() {
    model.close();
  }

  private static GenerateOptions greedy(int n) {
    return GenerateOptions.builder().greedy().maxTokens(n).build();
  }

  @Test
  void greedyGenerationIsTheEnginesOwn() {
    int[] expected;
    try (Model m = Model.load(MODEL);
        Engine e = new Engine(m, 2, KvSpecs.factory(KvSpec.parse("q8_0"), new BlockPool()))) {
      Tokenizer tok = Tokenizer.fromGguf(m.file());
      int[] prompt = tok.encode(PROMPT, true, false);
      Generator.Result r =
          new Generator(e)
              .generate(prompt, 24, new Sampler(SamplerConfig.GREEDY), tok::isEog, t -> true);
      expected = java.util.Arrays.copyOfRange(r.tokens(), prompt.length, r.tokens().length);
    }
    try (KvslimSession s = model.newSession(KvConfig.parse("q8_0"), 2)) {
      List<String> pieces = new ArrayList<>();
      Generation g =
          s.generate(
              PROMPT,
              greedy(24),
              (token, text) -> {
                pieces.add(text);
                return true;
              });
      assertThat(g.tokens()).isEqualTo(expected);
      assertThat(String.join("", pieces)).isEqualTo(g.text());
      // detokenize drops the leading space a first SentencePiece token carries; the stream keeps it
      assertThat(g.text().strip()).isEqualTo(model.detokenize(g.tokens()).strip());
      assertThat(g.promptTokens()).isEqualTo(model.tokenize(PROMPT, true).length);
      assertThat(g.stopReason()).isEqualTo(Generation.StopReason.LENGTH);
      assertThat(g.steps()).hasSize(24);
      for (int i = 0; i < g.steps().size(); i++) {
        StepStats st = g.steps().get(i);
        assertThat(st.step()).isEqualTo(i);
        assertThat(st.position()).isEqualTo(g.promptTokens() + i);
        assertThat(st.kvBytes()).isPositive();
      }
      assertThat(s.kvBytes()).isEqualTo(g.kvBytes()).isPositive();
    }
  }

  @Test
  void aStopStringCutsTheTextAndNothingOfItIsStreamed() {
    try (KvslimSession s = model.newSession(KvConfig.full(), 2)) {
      String full = s.generate(PROMPT, greedy(40), TokenCallback.none()).text();
      // a stop string from the middle of the greedy text
      String stop = full.substring(full.length() / 2, full.length() / 2 + 3);
      StringBuilder streamed = new StringBuilder();
      Generation g =
          s.generate(
              PROMPT,
              GenerateOptions.builder().greedy().maxTokens(40).stop(stop).build(),
              (token, text) -> {
                streamed.append(text);
                return true;
              });
      assertThat(g.stopReason()).isEqualTo(Generation.StopReason.STOP_STRING);
      assertThat(g.text()).isEqualTo(full.substring(0, full.indexOf(stop)));
      assertThat(streamed.toString()).isEqualTo(g.text());
    }
  }

  @Test
  void aCallbackReturningFalseStopsAfterThatToken() {
    try (KvslimSession s = model.newSession("full")) {
      int[] seen = {0};
      Generation g = s.generate(PROMPT, greedy(30), (t, text) -> ++seen[0] < 5);
      assertThat(g.stopReason()).isEqualTo(Generation.StopReason.CALLBACK);
      assertThat(g.generatedTokens()).isEqualTo(5);
    }
  }

  @Test
  void theBuilderWritesTheSpecTheParserReads() {
    KvConfig built =
        KvConfig.builder()
            .method("snapkv")
            .knob("budget", 64)
            .knob("window", 16)
            .method("q8_0")
            .build();
    assertThat(built).isEqualTo(KvConfig.parse("snapkv:budget=64,window=16 + q8_0"));
    assertThat(built.text()).isEqualTo(KvConfig.parse("snapkv:budget=64,window=16 + q8_0").text());
  }

  @Test
  void aCompressedCacheHoldsFewerBytesThanTheFullOne() {
    long full;
    long q4;
    try (KvslimSession s = model.newSession(KvConfig.full(), 2)) {
      full = s.generate(PROMPT, greedy(16), TokenCallback.none()).kvBytes();
    }
    try (KvslimSession s = model.newSession(KvConfig.parse("q4_0"), 2)) {
      q4 = s.generate(PROMPT, greedy(16), TokenCallback.none()).kvBytes();
    }
    assertThat(q4).isPositive().isLessThan(full / 3);
  }

  @Test
  void aChatPromptIsTheTemplatesRenderingAndStopsAtTheEndOfTurn() {
    // the bundled model has no template: ChatML is the fallback
    ChatPrompt p =
        model.chatPrompt(List.of(ChatMessage.system("Be brief."), ChatMessage.user("Hi")));
    assertThat(p.text())
        .isEqualTo(
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                + "<|im_start|>assistant\n");
    assertThat(p.endOfTurn()).isEqualTo("<|im_end|>");
    String jinja = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}[assistant]";
    ChatPrompt q = model.chatPrompt(List.of(ChatMessage.user("Hi")), jinja);
    assertThat(q.text()).isEqualTo("[user] Hi\n[assistant]");
    try (KvslimSession s = model.newSession(KvConfig.full(), 2)) {
      Generation g = s.generate(p, greedy(20), TokenCallback.none());
      assertThat(g.text()).doesNotContain("<|im_end|>");
      assertThat(g.promptTokens()).isEqualTo(p.tokens().length);
    }
  }

  @Test
  void badInputIsOneKvslimExceptionWithOneSentence() {
    assertThatThrownBy(() -> KvslimModel.load(Path.of("no/such/model.gguf")))
        .isExactlyInstanceOf(KvslimException.class)
        .hasMessage("model file not found: no/such/model.gguf");
    assertThatThrownBy(() -> KvslimModel.load(Path.of("README.md")))
        .isExactlyInstanceOf(KvslimException.class)
        .hasMessageStartingWith("cannot load model README.md: ");
    assertThatThrownBy(() -> KvConfig.parse("nosuchmethod:budget=4"))
        .isExactlyInstanceOf(KvslimException.class)
        .hasMessageStartingWith("invalid KV spec 'nosuchmethod:budget=4': ")
        .hasMessageContaining("nosuchmethod");
    assertThatThrownBy(() -> KvConfig.builder().build())
        .isExactlyInstanceOf(KvslimException.class)
        .hasMessage("the KV spec has no method; call method() at least once");
    assertThatThrownBy(() -> GenerateOptions.builder().maxTokens(-1).build())
        .isExactlyInstanceOf(KvslimException.class)
        .hasMessage("maxTokens must be >= 0, got -1");
    assertThatThrownBy(() -> GenerateOptions.builder().topP(1.5).build())
        .isExactlyInstanceOf(KvslimException.class)
        .hasMessage("top-p must be in (0, 1], got 1.5");
    assertThatThrownBy(() -> model.chatPrompt(List.of()))
        .isExactlyInstanceOf(KvslimException.class)
        .hasMessage("a chat prompt needs at least one message");
    try (KvslimSession s = model.newSession(KvConfig.full(), 1)) {
      assertThatThrownBy(() -> s.generate(new int[0], greedy(1), TokenCallback.none()))
          .isExactlyInstanceOf(KvslimException.class)
          .hasMessage("the prompt has no tokens");
      String tooLong = "x = 1\n".repeat(model.contextLength());
      assertThatThrownBy(() -> s.generate(tooLong, greedy(1), TokenCallback.none()))
          .isExactlyInstanceOf(KvslimException.class)
          .hasMessageContaining("the model's context is " + model.contextLength());
      s.close();
      assertThatThrownBy(() -> s.generate(PROMPT, greedy(1), TokenCallback.none()))
          .isExactlyInstanceOf(KvslimException.class)
          .hasMessage("the session is closed");
    }
    assertThatThrownBy(() -> model.newSession(KvConfig.full(), 0))
        .isExactlyInstanceOf(KvslimException.class)
        .hasMessage("threads must be at least 1, got 0");
  }
}
