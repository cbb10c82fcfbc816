package io.kvslim.api;

import io.kvslim.chat.ChatTemplate;
import io.kvslim.model.Model;
import io.kvslim.tensor.Parallel;
import io.kvslim.tokenizer.Tokenizer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * A GGUF model loaded for in-process inference: its weights (memory-mapped), its tokenizer and its
 * chat template. Sessions ({@link #newSession}) run it; one model serves any number of sessions.
 * {@link #close()} unmaps the file; close the sessions first.
 *
 * <pre>{@code
 * try (KvslimModel model = KvslimModel.load(Path.of("model.gguf"));
 *     KvslimSession session = model.newSession(KvConfig.parse("q8_0"))) {
 *   Generation g = session.generate("def add(a, b):", GenerateOptions.defaults(), TokenCallback.none());
 * }
 * }</pre>
 */
public final class KvslimModel implements AutoCloseable {
  private final Path path;
  private final Model model;
  private final Tokenizer tokenizer;
  private final String chatTemplate;
  private boolean closed;

  private KvslimModel(Path path, Model model, Tokenizer tokenizer) {
    this.path = path;
    this.model = model;
    this.tokenizer = tokenizer;
    this.chatTemplate = model.file().getString("tokenizer.chat_template", null);
  }

  /**
   * Loads a GGUF model (the architectures and weight types the README lists).
   *
   * @throws KvslimException if the file is missing, unreadable or not a model kvslim can run
   */
  public static KvslimModel load(Path gguf) {
    if (gguf == null) {
      throw new KvslimException("no model file given");
    }
    if (!Files.isRegularFile(gguf)) {
      throw new KvslimException("model file not found: " + gguf);
    }
    Model m = KvslimException.wrap("cannot load model " + gguf, () -> Model.load(gguf));
    try {
      Tokenizer t = Tokenizer.fromGguf(m.file());
      return new KvslimModel(gguf, m, t);
    } catch (RuntimeException e) {
      m.close();
      throw new KvslimException("cannot load the tokenizer of " + gguf + ": " + e.getMessage(), e);
    }
  }

  /**
   * A session with the KV cache {@code kv}, running on as many threads as the machine has CPUs.
   *
   * @throws KvslimException if the model is closed or the KV config does not fit the model
   */
  public KvslimSession newSession(KvConfig kv) {
    return newSession(kv, Parallel.defaultThreads());
  }

  /**
   * A session with the KV cache {@code kv} (a spec text, see {@link KvConfig#parse}).
   *
   * @throws KvslimException if the spec is invalid
   */
  public KvslimSession newSession(String kv) {
    return newSession(KvConfig.parse(kv));
  }

  /**
   * A session with the KV cache {@code kv} on {@code threads} worker threads.
   *
   * @throws KvslimException if the model is closed or {@code threads} is below 1
   */
  public KvslimSession newSession(KvConfig kv, int threads) {
    checkOpen();
    if (kv == null) {
      throw new KvslimException(
          "no KV config given; use KvConfig.full() for an uncompressed cache");
    }
    if (threads < 1) {
      throw new KvslimException("threads must be at least 1, got " + threads);
    }
    return new KvslimSession(this, kv, threads);
  }

  /** The model file. */
  public Path path() {
    return path;
  }

  /** The most tokens (prompt and generated) one sequence can hold. */
  public int contextLength() {
    return model.config().contextLength();
  }

  /** The tokenizer's vocabulary size. */
  public int vocabSize() {
    return tokenizer.vocabSize();
  }

  /**
   * The token ids of {@code text}, with the model's BOS token first when {@code addBos} and the
   * model adds one; special-token text (e.g. {@code <|im_start|>}) is not parsed.
   */
  public int[] tokenize(String text, boolean addBos) {
    return tokenizer.encode(text, addBos, false);
  }

  /** The text of {@code tokens}. */
  public String detokenize(int[] tokens) {
    return KvslimException.wrap(null, () -> tokenizer.decode(tokens));
  }

  /** The GGUF's Jinja chat template ({@code tokenizer.chat_template}), or null if it has none. */
  public String chatTemplate() {
    return chatTemplate;
  }

  /**
   * Renders a conversation with the model's chat template (ChatML when the GGUF has none), ending
   * where the assistant's reply begins.
   *
   * @throws KvslimException if the template rejects the messages or cannot run
   */
  public ChatPrompt chatPrompt(List<ChatMessage> messages) {
    return chatPrompt(messages, null);
  }

  /**
   * Renders a conversation with {@code template} (Jinja source, as in a GGUF's {@code
   * tokenizer.chat_template}), or with the model's own when it is null.
   *
   * @throws KvslimException if there are no messages, or the template rejects them or cannot run
   */
  public ChatPrompt chatPrompt(List<ChatMessage> messages, String template) {
    if (messages == null || messages.isEmpty()) {
      throw new KvslimException("a chat prompt needs at least one message");
    }
    ChatTemplate t =
        KvslimException.wrap(
            "invalid chat template",
            () -> ChatTemplate.of(template != null ? template : chatTemplate, tokenizer));
    List<ChatTemplate.Message> msgs = new ArrayList<>();
    for (ChatMessage m : messages) {
      msgs.add(new ChatTemplate.Message(m.role(), m.content()));
    }
    return KvslimException.wrap(
        null,
        () -> {
          ChatTemplate.Segmented enc = t.encodeSegmented(tokenizer, msgs);
          boolean[] priority = new boolean[enc.tokens().length];
          for (int i = 0; i < priority.length; i++) {
            priority[i] = enc.segments().isPriority(i);
          }
          return new ChatPrompt(t.render(msgs, true), enc.tokens(), t.endOfTurn(), priority);
        });
  }

  Model model() {
    checkOpen();
    return model;
  }

  Tokenizer tokenizer() {
    return tokenizer;
  }

  private void checkOpen() {
    if (closed) {
      throw new KvslimException("the model " + path + " is closed");
    }
  }

  /** Unmaps the model file. Sessions of this model must not be used afterwards. */
  @Override
  public void close() {
    if (!closed) {
      closed = true;
      model.close();
    }
  }
}
