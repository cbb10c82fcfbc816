package io.kvslim.langchain4j;

import static org.assertj.core.api.Assertions.assertThat;

import dev.langchain4j.data.message.SystemMessage;
import dev.langchain4j.data.message.UserMessage;
import dev.langchain4j.model.chat.response.ChatResponse;
import dev.langchain4j.model.chat.response.StreamingChatResponseHandler;
import dev.langchain4j.model.openai.OpenAiChatModel;
import dev.langchain4j.model.openai.OpenAiStreamingChatModel;
import io.kvslim.api.ChatMessage;
import io.kvslim.api.ChatPrompt;
import io.kvslim.api.GenerateOptions;
import io.kvslim.api.KvConfig;
import io.kvslim.api.KvslimModel;
import io.kvslim.api.KvslimSession;
import io.kvslim.api.TokenCallback;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import io.kvslim.server.OpenAiServer;
import io.kvslim.server.TestConfigs;
import io.kvslim.tokenizer.Tokenizer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * LangChain4j's own OpenAI client ({@code langchain4j-open-ai}) talks to an in-process kvslim
 * server on a free port: chat and streaming chat give the answer kvslim generates greedily for the
 * same rendered prompt, and the streamed chunks concatenate to it.
 */
class OpenAiClientTest {
  static final String SYSTEM = "You complete Python code.";
  static final String USER = "def read_config(path):";
  static final int MAX_TOKENS = 24;

  private static Model model;
  private static Engine engine;
  private static OpenAiServer server;
  private static String base;
  private static ChatPrompt prompt;
  private static String expected;

  @BeforeAll
  static void start() {
    try (KvslimModel m = KvslimModel.load(KvslimChatModelTest.MODEL);
        KvslimSession s = m.newSession(KvConfig.full(), 2)) {
      prompt =
          m.chatPrompt(
              List.of(ChatMessage.system(SYSTEM), ChatMessage.user(USER)),
              KvslimChatModelTest.CHATML);
      expected =
          s.generate(
                  prompt,
                  GenerateOptions.builder().greedy().maxTokens(MAX_TOKENS).build(),
                  TokenCallback.none())
              .text();
    }
    model = Model.load(KvslimChatModelTest.MODEL);
    engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()));
    server =
        new OpenAiServer(
                engine,
                Tokenizer.fromGguf(model.file()),
                KvslimChatModelTest.CHATML,
                TestConfigs.tiny(64L << 20))
            .start();
    base = "http://127.0.0.1:" + server.port() + "/v1";
  }

  @AfterAll
  static void stop() {
    if (server != null) {
      server.shutdown(5_000);
    }
    if (engine != null) {
      engine.close();
    }
    if (model != null) {
      model.close();
    }
  }

  @Test
  void openAiChatModelGetsKvslimsAnswer() {
    OpenAiChatModel client =
        OpenAiChatModel.builder()
            .baseUrl(base)
            .apiKey("unused")
            .modelName("tiny")
            .temperature(0.0)
            .maxTokens(MAX_TOKENS)
            .build();
    ChatResponse r = client.chat(SystemMessage.from(SYSTEM), UserMessage.from(USER));
    assertThat(r.aiMessage().text()).isEqualTo(expected);
    assertThat(r.tokenUsage().inputTokenCount()).isEqualTo(prompt.tokens().length);
    assertThat(r.tokenUsage().outputTokenCount()).isPositive();
  }

  @Test
  void openAiStreamingChatModelStreamsKvslimsAnswer() throws Exception {
    OpenAiStreamingChatModel client =
        OpenAiStreamingChatModel.builder()
            .baseUrl(base)
            .apiKey("unused")
            .modelName("tiny")
            .temperature(0.0)
            .maxTokens(MAX_TOKENS)
            .build();
    List<String> chunks = new ArrayList<>();
    CompletableFuture<ChatResponse> done = new CompletableFuture<>();
    client.chat(
        List.of(SystemMessage.from(SYSTEM), UserMessage.from(USER)),
        new StreamingChatResponseHandler() {
          @Override
          public void onPartialResponse(String partial) {
            chunks.add(partial);
          }

          @Override
          public void onCompleteResponse(ChatResponse response) {
            done.complete(response);
          }

          @Override
          public void onError(Throwable error) {
            done.completeExceptionally(error);
          }
        });
    ChatResponse r = done.get(120, TimeUnit.SECONDS);
    assertThat(chunks).hasSizeGreaterThan(1);
    assertThat(String.join("", chunks)).isEqualTo(expected);
    assertThat(r.aiMessage().text()).isEqualTo(expected);
  }
}
