package io.kvslim.kv.method;

/** A KV spec that cannot be used; the message names the bad part and what is accepted. */
public final class KvSpecException extends IllegalArgumentException {
  public KvSpecException(String message) {
    super(message);
  }
}
