package io.kvslim.kv.policy;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;

/**
 * Decides what one sequence's cache keeps (DESIGN.md §3.4): which tokens each (layer, KV head)
 * retains and how many. A policy is made per sequence, so it may keep state (accumulated scores).
 * It sees the cache at the points it acts on, through {@link ManagedKvCache}.
 */
public interface KvPolicy {
  /** Whether this policy needs attention probabilities of {@code layer} (H2O, TOVA). */
  default boolean observes(int layer) {
    return false;
  }

  /**
   * Whether this policy needs the attention probabilities of {@code layer} in the prefill step now
   * running (asked at each of its attention calls); by default {@link #observes}. A policy that
   * observes for its decode steps but scores few prefill layers says no for the others, which then
   * attend without handing out probabilities (PyramidInfer).
   */
  default boolean observesPrefill(int layer) {
    return observes(layer);
  }

  /**
   * Attention probabilities of one query row and head over the retained tokens of its KV head
   * (causally masked tokens have probability 0). Called only when {@link #observes} is true.
   */
  default void observe(
      ManagedKvCache cache,
      int layer,
      int queryIndex,
      int head,
      int kvHead,
      float[] probs,
      int count) {}

  /** Whether this policy wants the queries of {@code layer} (SnapKV's observation window). */
  default boolean wantsQueries(int layer) {
    return false;
  }

  /** The queries of one attention call ({@code n × heads × headDim}), before attention runs. */
  default void onQueries(
      ManagedKvCache cache, int layer, int n, int[] positions, int heads, float[] q, float scale) {}

  /**
   * Whether this policy wants {@link #onAttentionOutput} for {@code layer} (SqueezeAttention's
   * layer importance).
   */
  default boolean wantsAttentionOutput(int layer) {
    return false;
  }

  /**
   * The residual stream entering {@code layer}'s attention block ({@code x}) and the block's output
   * ({@code out}: after the output projection, before it is added), {@code rows × dim} each from
   * index 0. Called only when {@link #wantsAttentionOutput} is true.
   */
  default void onAttentionOutput(
      ManagedKvCache cache, int layer, int rows, int dim, float[] x, float[] out) {}

  /**
   * Whether {@code layer} uses cache-relative positions (StreamingLLM's rolling positions): its
   * keys are stored before RoPE, and attention rotates each retained key by its index in the head's
   * cache and each query by the index of its own token ({@link io.kvslim.kv.LayerKv#appliesRope}).
   */
  default boolean cacheRelativePositions(int layer) {
    return false;
  }

  /**
   * Called before {@code n} tokens are appended to {@code layer}, so that a policy can free room
   * first (StreamingLLM: attention then sees at most the cache's capacity).
   */
  default void beforeAppend(ManagedKvCache cache, int layer, int n) {}

  /**
   * Called after {@code layer}'s attention in a step, once the step's tokens are in it: nothing
   * reads the layer again in this step, so a policy compressing inside the prefill (METHODS.md N10)
   * may evict here.
   */
  default void afterAttention(ManagedKvCache cache, int layer) {}

  /**
   * Whether this policy drops rows between layers during the prefill ({@link #keptRows},
   * PyramidInfer).
   */
  default boolean thinsPrefill() {
    return false;
  }

  /**
   * After {@code layer} ran {@code rows} rows of a prefill step: the rows that go on to the deeper
   * layers (ascending indices, at least one), or null for all ({@link
   * io.kvslim.kv.LayerKv#keptRows}). Called only when {@link #thinsPrefill} is true.
   */
  default int[] keptRows(ManagedKvCache cache, int layer, int rows) {
    return null;
  }

  /**
   * The most prompt tokens between two compressions inside the prefill ({@link
   * KvCache#prefillChunk}), {@link Integer#MAX_VALUE} for a policy that waits for the prompt's end.
   */
  default int prefillChunk() {
    return Integer.MAX_VALUE;
  }

  /**
   * Whether this policy wants {@link #replay} now (KVzip: once, after the prompt, while it has not
   * scored it).
   */
  default boolean wantsReplay() {
    return false;
  }

  /**
   * After the prompt's last step and before {@code afterStep(PREFILL)}: extra forward passes on top
   * of {@code cache} through {@code replay} ({@link io.kvslim.kv.ContextReplay}). The passes must
   * leave {@code cache} as it was (their keys and values go to a cache of the policy's own).
   */
  default void replay(ManagedKvCache cache, io.kvslim.kv.ContextReplay replay) {}

  /**
   * Bytes of keys and values the decode steps so far attended over, for a policy that restricts
   * each step's attention to part of the cache (Quest, PQCache: {@code
   * PagedLayerKv#restrictNextAttention}); negative for a policy that does not (every decode step
   * then reads the whole cache).
   */
  default double decodeBytesAttended() {
    return -1;
  }

  /**
   * Bytes the decode steps so far fetched from a cold tier the policy spills to ({@link
   * ColdSpill}); negative when it spills nothing (the default).
   */
  default double bytesFetched() {
    return -1;
  }

  /**
   * Bytes the policy holds in RAM beside the cache's blocks for its selection (Quest's page bounds,
   * ShadowKV's landmarks, PQCache's codes and centroids); 0 by default.
   */
  default long indexBytes() {
    return 0;
  }

  /**
   * The cold tier the policy spills to ({@code spill=true}), or null (the default): the cache
   * factory gives it the configured {@link io.kvslim.kv.store.ColdStorage} ({@link ColdSpill#use}).
   */
  default ColdSpill coldSpill() {
    return null;
  }

  /** Releases what the policy holds outside the cache (a spill file); the cache is closing. */
  default void close() {}

  /** Called when a step has appended to every layer. */
  void afterStep(ManagedKvCache cache, KvCache.StepKind kind);
}
