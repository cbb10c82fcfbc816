package io.kvslim.server;

/**
 * How a server runs: where it listens, the default KV spec, the KV memory limit shared by all
 * sequences, how many sequences decode together, how many requests may wait, the API key (null for
 * none), and how long a connection may stay silent ({@code idleTimeoutMillis}: between requests, or
 * while a request's head or body is being sent; a request being generated is never cut by it).
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
    String modelId,
    long idleTimeoutMillis) {

  /** Prompt tokens prefilled per step by default ({@code --prefill-chunk}). */
  public static final int DEFAULT_PREFILL_CHUNK = 64;

  /** How long a connection may stay silent by default ({@code --idle-timeout}, 30 s). */
  public static final long DEFAULT_IDLE_TIMEOUT_MILLIS = 30_000;

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
    if (idleTimeoutMillis < 1) {
      throw new IllegalArgumentException(
          "--idle-timeout must be positive, got " + idleTimeoutMillis + " ms");
    }
  }

  /** As the canonical constructor with the default idle timeout. */
  public ServerConfig(
      String host,
      int port,
      String defaultKv,
      long kvMemoryBytes,
      int maxBatch,
      int queueCapacity,
      int prefillChunk,
      String apiKey,
      String modelId) {
    this(
        host,
        port,
        defaultKv,
        kvMemoryBytes,
        maxBatch,
        queueCapacity,
        prefillChunk,
        apiKey,
        modelId,
        DEFAULT_IDLE_TIMEOUT_MILLIS);
  }

  /** This configuration with another idle timeout. */
  public ServerConfig withIdleTimeoutMillis(long millis) {
    return new ServerConfig(
        host,
        port,
        defaultKv,
        kvMemoryBytes,
        maxBatch,
        queueCapacity,
        prefillChunk,
        apiKey,
        modelId,
        millis);
  }
}
