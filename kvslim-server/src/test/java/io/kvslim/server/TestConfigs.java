package io.kvslim.server;

/** Server settings the tests start from: loopback, an ephemeral port, full KV, model id "tiny". */
public final class TestConfigs {
  private TestConfigs() {}

  /** Default batch (16), queue (64) and prefill chunk, no API key, {@code kvMemory} bytes of KV. */
  public static ServerConfig tiny(long kvMemory) {
    return tiny(kvMemory, 16, 64, null);
  }

  /** As {@link #tiny(long)} with the given batch, queue and API key (null for none). */
  public static ServerConfig tiny(long kvMemory, int maxBatch, int queue, String apiKey) {
    return new ServerConfig(
        "127.0.0.1",
        0,
        "full",
        kvMemory,
        maxBatch,
        queue,
        ServerConfig.DEFAULT_PREFILL_CHUNK,
        apiKey,
        "tiny");
  }
}
