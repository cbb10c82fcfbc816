package io.kvslim.server;

/** What the scheduler tells a request's HTTP handler about its sequence, in order. */
public sealed interface SequenceEvent {
  /** A generated token and the text it completes (empty while a character or stop is pending). */
  record Delta(String text, int token) implements SequenceEvent {}

  /** The sequence ended; nothing follows. */
  record Done(FinishReason reason, Usage usage, String error) implements SequenceEvent {}

  /** Why a sequence ended. */
  enum FinishReason {
    /** End-of-generation token or a stop string: OpenAI's {@code "stop"}. */
    STOP,
    /** {@code max_tokens}, the context or the KV memory ran out: OpenAI's {@code "length"}. */
    LENGTH,
    /** The client went away. */
    CANCELLED,
    /** The server failed or is shutting down; {@link Done#error} says why. */
    ERROR;

    public String openAiName() {
      return this == STOP ? "stop" : "length";
    }
  }

  /**
   * Token counts and the KV memory of the sequence: bytes held when it ended, the most it held, and
   * an F16 full cache of the same tokens divided by the bytes held at the end.
   */
  record Usage(
      int promptTokens,
      int completionTokens,
      long kvBytes,
      long kvBytesPeak,
      double compressionRatio,
      String kv) {}
}
