package io.kvslim.chat;

/**
 * A chat prompt that cannot be rendered: the model's template rejected the messages through {@code
 * raise_exception} ({@link #rejectsMessages()}: the client's fault), or the template itself failed.
 * The message is one sentence.
 */
public final class ChatTemplateException extends RuntimeException {
  private final boolean rejectsMessages;

  ChatTemplateException(boolean rejectsMessages, String message) {
    super(message);
    this.rejectsMessages = rejectsMessages;
  }

  /** True when the template raised an error about the messages (roles, order, content). */
  public boolean rejectsMessages() {
    return rejectsMessages;
  }
}
