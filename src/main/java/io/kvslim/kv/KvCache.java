package io.kvslim.kv;

/**
 * The KV cache of one sequence (DESIGN.md §3.1): one {@link LayerKv} per layer. Closing it returns
 * every byte it holds to its pool.
 */
public interface KvCache extends AutoCloseable {
  int layerCount();

  LayerKv layer(int layer);

  /** Exact bytes held now, all layers and heads (payload, scales, positions, bookkeeping). */
  long bytes();

  /** Called by the engine after a prefill or decode step has appended to every layer. */
  default void afterStep(StepKind kind) {}

  @Override
  void close();

  /** Which kind of step just ended; policies act on these. */
  enum StepKind {
    PREFILL,
    DECODE
  }
}
