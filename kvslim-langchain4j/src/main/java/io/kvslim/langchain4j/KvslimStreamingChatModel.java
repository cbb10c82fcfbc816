package io.kvslim.langchain4j;

import dev.langchain4j.model.ModelProvider;
import dev.langchain4j.model.chat.StreamingChatModel;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.request.ChatRequestParameters;
import dev.langchain4j.model.chat.response.ChatResponse;
import dev.langchain4j.model.chat.response.StreamingChatResponseHandler;

/**
 * A LangChain4j {@link StreamingChatModel} backed by an in-process kvslim engine: as {@link
 * KvslimChatModel}, with each piece of the answer passed to the handler as it is generated (on the
 * calling thread), then the complete response. A failure goes to the handler's {@code onError}. The
 * pieces concatenate to the complete answer; none of a stop sequence is ever streamed.
 */
public final class KvslimStreamingChatModel implements StreamingChatModel, AutoCloseable {
  private final KvslimChatEngine engine;

  private KvslimStreamingChatModel(Builder b) {
    this.engine = new KvslimChatEngine(b);
  }

  /** A builder; set the model with {@code modelPath} or {@code model}. */
  public static Builder builder() {
    return new Builder();
  }

  @Override
  public void doChat(ChatRequest request, StreamingChatResponseHandler handler) {
    ChatResponse response;
    try {
      response = engine.chat(request, handler::onPartialResponse);
    } catch (RuntimeException e) {
      handler.onError(e);
      return;
    }
    handler.onCompleteResponse(response);
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

  /** Builds a {@link KvslimStreamingChatModel}. */
  public static final class Builder extends KvslimChatBuilder<KvslimStreamingChatModel, Builder> {
    private Builder() {}

    @Override
    public KvslimStreamingChatModel build() {
      return new KvslimStreamingChatModel(this);
    }
  }
}
