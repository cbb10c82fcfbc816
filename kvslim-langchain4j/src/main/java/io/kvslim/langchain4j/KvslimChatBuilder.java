package io.kvslim.langchain4j;

import io.kvslim.api.KvConfig;
import io.kvslim.api.KvslimModel;
import java.nio.file.Path;
import java.util.List;

/**
 * The settings of {@link KvslimChatModel} and {@link KvslimStreamingChatModel}: the model (a GGUF
 * path, loaded and owned by the chat model, or a {@link KvslimModel} the caller owns), the KV
 * cache, the chat template, the threads, and the default request parameters (a request's own
 * parameters override them).
 *
 * @param <M> the chat model it builds
 * @param <B> the builder's own type
 */
public abstract class KvslimChatBuilder<M, B extends KvslimChatBuilder<M, B>> {
  Path modelPath;
  KvslimModel model;
  KvConfig kv;
  String chatTemplate;
  int threads;
  String modelName;
  Double temperature;
  Double topP;
  Integer topK;
  Integer maxTokens = 256;
  List<String> stopSequences;
  long seed = 42;

  KvslimChatBuilder() {}

  @SuppressWarnings("unchecked")
  private B self() {
    return (B) this;
  }

  /** The GGUF file to load; the chat model owns it and unmaps it on {@code close()}. */
  public B modelPath(Path modelPath) {
    this.modelPath = modelPath;
    return self();
  }

  /** A model the caller loaded and closes (after the chat model). */
  public B model(KvslimModel model) {
    this.model = model;
    return self();
  }

  /** The KV cache (default: the full cache). */
  public B kv(KvConfig kv) {
    this.kv = kv;
    return self();
  }

  /** The KV cache as a spec text, e.g. {@code "snapkv:budget=256 + q8_0"}. */
  public B kv(String spec) {
    return kv(KvConfig.parse(spec));
  }

  /**
   * A Jinja chat template to use instead of the GGUF's {@code tokenizer.chat_template} (a model
   * without one, and no template here, gets ChatML).
   */
  public B chatTemplate(String jinja) {
    this.chatTemplate = jinja;
    return self();
  }

  /** Worker threads (default: the number of CPUs). */
  public B threads(int threads) {
    this.threads = threads;
    return self();
  }

  /** The model name reported in responses (default: the GGUF file's name). */
  public B modelName(String modelName) {
    this.modelName = modelName;
    return self();
  }

  /** Default sampling temperature (kvslim's default 0.8 when unset); 0 is greedy. */
  public B temperature(Double temperature) {
    this.temperature = temperature;
    return self();
  }

  /** Default nucleus filter. */
  public B topP(Double topP) {
    this.topP = topP;
    return self();
  }

  /** Default top-k filter. */
  public B topK(Integer topK) {
    this.topK = topK;
    return self();
  }

  /** Default maximum of generated tokens (256 unless set). */
  public B maxTokens(Integer maxTokens) {
    this.maxTokens = maxTokens;
    return self();
  }

  /** Default stop sequences; the answer ends before the first one. */
  public B stopSequences(List<String> stopSequences) {
    this.stopSequences = stopSequences;
    return self();
  }

  /** The random seed of sampling (default 42). */
  public B seed(long seed) {
    this.seed = seed;
    return self();
  }

  /**
   * Loads the model (when given as a path) and starts a session.
   *
   * @throws io.kvslim.api.KvslimException if the model or the KV config is bad
   */
  public abstract M build();
}
