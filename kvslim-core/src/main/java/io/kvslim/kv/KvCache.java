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

  /**
   * The most prompt tokens this cache takes between two of its compressions inside the prefill
   * ({@code chunk=N} of a method that compresses during it, METHODS.md N10), {@link
   * Integer#MAX_VALUE} when it compresses only after the prefill. Whoever feeds the prompt cuts it
   * at multiples of this, counted from the prompt's start, and calls {@link #beginPrompt} first.
   */
  default int prefillChunk() {
    return Integer.MAX_VALUE;
  }

  /**
   * Called before the prompt's first token is appended, with the prompt's length: a method that
   * compresses inside the prefill sizes a budget given as a share of the prompt from it.
   */
  default void beginPrompt(int tokens) {}

  /**
   * Labels the prompt's tokens by segment (a chat rendering's roles, {@link PromptSegments}) before
   * it is fed; a policy with a segment prior (LOOK-M) reads them after the prefill. A cache whose
   * policies ignore labels ignores them too.
   */
  default void labelPrompt(PromptSegments segments) {}

  /**
   * Whether this cache wants {@link #replay} after its prompt (a policy scoring the prompt by extra
   * forward passes, KVzip); whoever feeds the prompt asks once it is in.
   */
  default boolean wantsReplay() {
    return false;
  }

  /**
   * Called after the prompt's last step and before {@code afterStep(PREFILL)} when {@link
   * #wantsReplay} is true: the policies run their extra passes through {@code replay}. The cache
   * holds afterwards exactly what it held before.
   */
  default void replay(ContextReplay replay) {}

  /**
   * Whether a layer may drop rows for the deeper layers during the prefill ({@link
   * LayerKv#keptRows}, PyramidInfer): the prompt then goes in one forward run (its selection needs
   * every prompt row at once), and the cache cannot share a prefill with others.
   */
  default boolean thinsPrefill() {
    return false;
  }

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
