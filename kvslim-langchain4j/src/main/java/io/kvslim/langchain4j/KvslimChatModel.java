package io.kvslim.langchain4j;

import dev.langchain4j.model.ModelProvider;
import dev.langchain4j.model.chat.ChatModel;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.request.ChatRequestParameters;
import dev.langchain4j.model.chat.response.ChatResponse;

/**
 * A LangChain4j {@link ChatModel} backed by an in-process kvslim engine: messages are rendered with
 * the model's Jinja chat template, and the answer is generated with the configured KV cache.
 *
 * <pre>{@code
 * KvslimChatModel model = KvslimChatModel.builder()
 *     .modelPath(Path.of("model.gguf")).kv("snapkv:budget=256 + q8_0").temperature(0.0).build();
 * String answer = model.chat("Write a haiku about caches.");
 * }</pre>
 *
 * <p>Requests take turns on one kvslim session. {@link #close()} frees the KV cache and threads
 * (and unmaps the model when it was given as a path). Tools, images and penalties are not supported
 * ({@link dev.langchain4j.exception.UnsupportedFeatureException}); bad settings raise {@link
 * io.kvslim.api.KvslimException}.
 */
public final class KvslimChatModel implements ChatModel, AutoCloseable {
  private final KvslimChatEngine engine;

  private KvslimChatModel(Builder b) {
    this.engine = new KvslimChatEngine(b);
  }

  /** A builder; set the model with {@code modelPath} or {@code model}. */
  public static Builder builder() {
    return new Builder();
  }

  @Override
  public ChatResponse doChat(ChatRequest request) {
    return engine.chat(request, piece -> {});
  }

  @Override
  public ChatRequestParameters defaultRequestParameters() {
    return engine.defaults();
  }

  @Override
  public ModelProvider provider() {
    return ModelProvider.OTHER;
  }

  /** Frees the session (and the model when this chat model loaded it). */
  @Override
  public void close() {
    engine.close();
  }

  /** Builds a {@link KvslimChatModel}. */
  public static final class Builder extends KvslimChatBuilder<KvslimChatModel, Builder> {
    private Builder() {}

    @Override
    public KvslimChatModel build() {
      return new KvslimChatModel(this);
    }
  }
}
