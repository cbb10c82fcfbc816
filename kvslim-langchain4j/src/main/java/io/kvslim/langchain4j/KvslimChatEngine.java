package io.kvslim.langchain4j;

import dev.langchain4j.data.message.AiMessage;
import dev.langchain4j.data.message.ChatMessage;
import dev.langchain4j.data.message.SystemMessage;
import dev.langchain4j.data.message.UserMessage;
import dev.langchain4j.exception.UnsupportedFeatureException;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.request.ChatRequestParameters;
import dev.langchain4j.model.chat.request.DefaultChatRequestParameters;
import dev.langchain4j.model.chat.response.ChatResponse;
import dev.langchain4j.model.output.FinishReason;
import dev.langchain4j.model.output.TokenUsage;
import io.kvslim.api.ChatPrompt;
import io.kvslim.api.GenerateOptions;
import io.kvslim.api.Generation;
import io.kvslim.api.KvConfig;
import io.kvslim.api.KvslimException;
import io.kvslim.api.KvslimModel;
import io.kvslim.api.KvslimSession;
import io.kvslim.api.TokenCallback;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/**
 * What {@link KvslimChatModel} and {@link KvslimStreamingChatModel} share: the model, one session
 * (generations take turns on it), the chat template and the default request parameters; it turns a
 * LangChain4j {@link ChatRequest} into a kvslim chat prompt and options, and the result back.
 */
final class KvslimChatEngine implements AutoCloseable {
  private final KvslimModel model;
  private final boolean ownsModel;
  private final KvslimSession session;
  private final String template;
  private final long seed;
  private final ChatRequestParameters defaults;

  KvslimChatEngine(KvslimChatBuilder<?, ?> b) {
    if (b.model != null && b.modelPath != null) {
      throw new KvslimException("give either model(...) or modelPath(...), not both");
    }
    if (b.model == null && b.modelPath == null) {
      throw new KvslimException("no model given: set modelPath(...) or model(...)");
    }
    this.ownsModel = b.model == null;
    this.model = ownsModel ? KvslimModel.load(b.modelPath) : b.model;
    try {
      KvConfig kv = b.kv != null ? b.kv : KvConfig.full();
      this.session = b.threads > 0 ? model.newSession(kv, b.threads) : model.newSession(kv);
    } catch (RuntimeException e) {
      if (ownsModel) {
        model.close();
      }
      throw e;
    }
    this.template = b.chatTemplate;
    this.seed = b.seed;
    this.defaults =
        DefaultChatRequestParameters.builder()
            .modelName(b.modelName != null ? b.modelName : model.path().getFileName().toString())
            .temperature(b.temperature)
            .topP(b.topP)
            .topK(b.topK)
            .maxOutputTokens(b.maxTokens)
            .stopSequences(b.stopSequences)
            .build();
  }

  ChatRequestParameters defaults() {
    return defaults;
  }

  /** Runs {@code request}, passing each non-empty piece of the answer to {@code partial}. */
  ChatResponse chat(ChatRequest request, Consumer<String> partial) {
    ChatRequestParameters p = request.parameters();
    if (p.toolSpecifications() != null && !p.toolSpecifications().isEmpty()) {
      throw new UnsupportedFeatureException("kvslim does not support tools");
    }
    if (p.frequencyPenalty() != null || p.presencePenalty() != null) {
      throw new UnsupportedFeatureException(
          "kvslim does not support frequency or presence penalties");
    }
    ChatPrompt prompt = model.chatPrompt(messages(request.messages()), template);
    GenerateOptions.Builder o = GenerateOptions.builder().seed(seed);
    if (p.temperature() != null) {
      o.temperature(p.temperature());
    }
    if (p.topP() != null) {
      o.topP(p.topP());
    }
    if (p.topK() != null) {
      o.topK(p.topK());
    }
    if (p.maxOutputTokens() != null) {
      o.maxTokens(p.maxOutputTokens());
    }
    if (p.stopSequences() != null) {
      o.stop(p.stopSequences());
    }
    GenerateOptions options = o.build();
    TokenCallback callback =
        (token, text) -> {
          if (!text.isEmpty()) {
            partial.accept(text);
          }
          return true;
        };
    Generation g;
    synchronized (session) {
      g = session.generate(prompt, options, callback);
    }
    return ChatResponse.builder()
        .aiMessage(AiMessage.from(g.text()))
        .modelName(p.modelName() != null ? p.modelName() : defaults.modelName())
        .tokenUsage(new TokenUsage(g.promptTokens(), g.generatedTokens()))
        .finishReason(finishReason(g.stopReason()))
        .build();
  }

  private static List<io.kvslim.api.ChatMessage> messages(List<ChatMessage> in) {
    List<io.kvslim.api.ChatMessage> out = new ArrayList<>();
    for (ChatMessage m : in) {
      switch (m) {
        case SystemMessage s -> out.add(io.kvslim.api.ChatMessage.system(s.text()));
        case UserMessage u -> {
          if (!u.hasSingleText()) {
            throw new UnsupportedFeatureException(
                "kvslim takes text user messages only (no images, audio or files)");
          }
          out.add(io.kvslim.api.ChatMessage.user(u.singleText()));
        }
        case AiMessage a -> {
          if (a.hasToolExecutionRequests()) {
            throw new UnsupportedFeatureException("kvslim does not support tools");
          }
          out.add(io.kvslim.api.ChatMessage.assistant(a.text() == null ? "" : a.text()));
        }
        default ->
            throw new UnsupportedFeatureException(
                "kvslim does not support " + m.type() + " messages");
      }
    }
    return out;
  }

  private static FinishReason finishReason(Generation.StopReason r) {
    return switch (r) {
      case END_OF_GENERATION, STOP_STRING -> FinishReason.STOP;
      case LENGTH, CONTEXT_FULL -> FinishReason.LENGTH;
      case CALLBACK -> FinishReason.OTHER;
    };
  }

  @Override
  public void close() {
    synchronized (session) {
      session.close();
    }
    if (ownsModel) {
      model.close();
    }
  }
}
