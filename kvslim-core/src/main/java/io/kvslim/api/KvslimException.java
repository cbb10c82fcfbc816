package io.kvslim.api;

/**
 * The one exception the public API throws for bad input or a failed operation: a missing or
 * unreadable model file, an invalid KV spec, an out-of-range generation option, a prompt longer
 * than the context, a chat template that rejects the messages. Its message is one sentence that
 * names the problem.
 */
public final class KvslimException extends RuntimeException {
  /** An exception with a one-sentence message. */
  public KvslimException(String message) {
    super(message);
  }

  /** An exception with a one-sentence message and the internal failure behind it. */
  public KvslimException(String message, Throwable cause) {
    super(message, cause);
  }

  /** Runs {@code action}, turning an internal failure into a {@code KvslimException}. */
  static <T> T wrap(String context, java.util.function.Supplier<T> action) {
    try {
      return action.get();
    } catch (KvslimException e) {
      throw e;
    } catch (RuntimeException e) {
      String m = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
      throw new KvslimException(context == null ? m : context + ": " + m, e);
    }
  }
}
