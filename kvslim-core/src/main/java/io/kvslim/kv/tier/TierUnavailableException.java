package io.kvslim.kv.tier;

/** A KV tier could not be reached (a Redis server down, a disk directory unwritable). */
public final class TierUnavailableException extends RuntimeException {
  public TierUnavailableException(String message, Throwable cause) {
    super(message, cause);
  }
}
