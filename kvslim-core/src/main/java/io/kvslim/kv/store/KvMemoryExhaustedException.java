package io.kvslim.kv.store;

/**
 * An allocation would take a {@link BlockPool} past its byte limit. Thrown before anything changes:
 * the cache and the pool are exactly as they were before the call.
 */
public final class KvMemoryExhaustedException extends RuntimeException {
  private final long requestedBytes;
  private final long usedBytes;
  private final long limitBytes;

  public KvMemoryExhaustedException(long requestedBytes, long usedBytes, long limitBytes) {
    super(
        "KV cache memory exhausted: "
            + requestedBytes
            + " more bytes were needed with "
            + usedBytes
            + " of the pool's limit of "
            + limitBytes
            + " bytes in use; raise the limit or compress the cache");
    this.requestedBytes = requestedBytes;
    this.usedBytes = usedBytes;
    this.limitBytes = limitBytes;
  }

  public long requestedBytes() {
    return requestedBytes;
  }

  public long usedBytes() {
    return usedBytes;
  }

  public long limitBytes() {
    return limitBytes;
  }
}
