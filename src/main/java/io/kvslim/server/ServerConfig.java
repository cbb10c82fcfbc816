package io.kvslim.server;

/**
 * How a server runs: where it listens, the default KV spec, the KV memory limit shared by all
 * sequences, how many sequences decode together, how many requests may wait, and the API key (null
 * for none).
 */
public record ServerConfig(
    String host,
    int port,
    String defaultKv,
    long kvMemoryBytes,
    int maxBatch,
    int queueCapacity,
    int prefillChunk,
    String apiKey,
    String modelId) {

  /** Prompt tokens prefilled per step by default ({@code --prefill-chunk}). */
  public static final int DEFAULT_PREFILL_CHUNK = 64;

  public ServerConfig {
    if (port < 0 || port > 65535) {
      throw new IllegalArgumentException("--port must be 0..65535, got " + port);
    }
    if (kvMemoryBytes < 1) {
      throw new IllegalArgumentException("--kv-memory must be at least 1 byte");
    }
    if (maxBatch < 1) {
      throw new IllegalArgumentException("--max-batch must be at least 1, got " + maxBatch);
    }
    if (queueCapacity < 0) {
      throw new IllegalArgumentException("--queue must be >= 0, got " + queueCapacity);
    }
    if (prefillChunk < 1) {
      throw new IllegalArgumentException("--prefill-chunk must be at least 1, got " + prefillChunk);
    }
    if (apiKey != null && apiKey.isBlank()) {
      throw new IllegalArgumentException("--api-key must not be blank");
    }
  }
}
