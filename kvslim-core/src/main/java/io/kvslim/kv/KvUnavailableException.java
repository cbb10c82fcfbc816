package io.kvslim.kv;

/**
 * A cache whose keys and values live outside this process (DistAttention's cluster members) lost
 * some of them or could not reach them in time: the sequence cannot go on, and nothing was computed
 * from a partial cache. Its message is one sentence naming what was lost; a server answers it with
 * a 503.
 */
public class KvUnavailableException extends RuntimeException {
  public KvUnavailableException(String message) {
    super(message);
  }

  public KvUnavailableException(String message, Throwable cause) {
    super(message, cause);
  }
}
