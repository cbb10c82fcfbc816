package io.kvslim.kv;

import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.tensor.Parallel;

/**
 * The cache of one layer: for each KV head an ordered list of retained tokens with their original
 * positions, keys and values (DESIGN.md §3.1).
 *
 * <p>Array layouts: keys and values of {@code n} new tokens are {@code n × kvHeads × headDim}
 * floats, token-major; queries are {@code n × heads × headDim}; {@code out} has the queries'
 * layout. A query at position {@code p} attends to the retained tokens with position {@code <= p}.
 */
public interface LayerKv {
  int kvHeads();

  int headDim();

  /**
   * Appends {@code n} tokens at {@code positions[0..n)} (keys already rotated by RoPE, unless this
   * layer {@link #appliesRope applies it itself}).
   */
  void append(int n, int[] positions, float[] keys, float[] values);

  /**
   * Whether this layer applies RoPE itself, at positions of its own (StreamingLLM's cache-relative
   * positions, METHODS.md E1): the model then appends keys and passes queries <em>before</em> RoPE,
   * and the layer rotates them with {@code rope} when it attends. The model asks before each step's
   * append, for each layer. By default false: the model rotates queries and keys by the tokens'
   * positions.
   */
  default boolean appliesRope(Rotary rope) {
    return false;
  }

  /**
   * Attention of {@code n} queries (heads {@code heads}, GQA groups sharing a KV head) against the
   * retained tokens, with softmax scale {@code scale}. {@code observer} may be null.
   */
  void attend(
      int n,
      int[] positions,
      int heads,
      float[] queries,
      float scale,
      float[] out,
      AttentionObserver observer);

  /**
   * As {@link #attend(int, int[], int, float[], float, float[], AttentionObserver)}, free to run on
   * the engine's thread pool {@code pool} (null: the calling thread). The result and what the
   * observer receives, and in which order, are the same as without a pool; the observer is called
   * on the calling thread. By default the pool is not used.
   */
  default void attend(
      int n,
      int[] positions,
      int heads,
      float[] queries,
      float scale,
      float[] out,
      AttentionObserver observer,
      Parallel pool) {
    attend(n, positions, heads, queries, scale, out, observer);
  }

  /**
   * As {@link #attend(int, int[], int, float[], float, float[], AttentionObserver, Parallel)}, in
   * {@code order}: with {@link AttentionOrder#LLAMA_CPP}, the operation order of llama.cpp's CPU
   * backend (non-flash attention) where this layer supports it, so that the output equals
   * llama.cpp's bit for bit (see {@link PagedLayerKv#attend(int, int[], int, float[], float,
   * float[], AttentionObserver, Parallel, AttentionOrder)}). By default the layer's own order
   * whatever {@code order} asks.
   */
  default void attend(
      int n,
      int[] positions,
      int heads,
      float[] queries,
      float scale,
      float[] out,
      AttentionObserver observer,
      Parallel pool,
      AttentionOrder order) {
    attend(n, positions, heads, queries, scale, out, observer, pool);
  }

  /**
   * Whether this layer stores keys and values of its own; false when it reads an earlier layer's
   * (KVSharer), and then the model need not compute them and {@link #append} ignores them.
   */
  default boolean storesKv() {
    return true;
  }

  /** Whether {@link #attentionOutput} should be called for this layer's prefill steps. */
  default boolean wantsAttentionOutput() {
    return false;
  }

  /**
   * The residual stream entering this layer's attention block and the block's output (after the
   * output projection), rows {@code 0..rows)} of {@code dim} floats from {@code off} in both
   * arrays. Called by the model when {@link #wantsAttentionOutput} is true.
   */
  default void attentionOutput(int rows, int dim, float[] x, float[] out, int off) {}

  /**
   * After this layer ran {@code rows} rows of a prefill step for this sequence: the rows (indices
   * into those rows, ascending, at least one) that go on to the deeper layers, or null for all of
   * them (the default). A method that selects tokens layer by layer during the prefill
   * (PyramidInfer) returns fewer: the model then runs the deeper layers on those rows only, each at
   * its own position, so those layers never see the dropped tokens.
   */
  default int[] keptRows(int rows) {
    return null;
  }

  /**
   * After this layer appended the {@code rows} rows of a one-sequence prefill step: the rows
   * (indices into those rows, ascending, at least one) whose queries attend and go on to the deeper
   * layers, or null for all of them (the default). Unlike {@link #keptRows}, asked before the
   * layer's attention: every row's keys and values are in, only the selected rows are computed
   * further (CacheBlend's check layer, {@code io.kvslim.kv.blend.CacheBlend}).
   */
  default int[] queryRows(int rows) {
    return null;
  }

  /** Tokens retained by a KV head. */
  int size(int kvHead);

  /** Exact bytes held by this layer. */
  long bytes();

  /** Exact bytes held by one KV head of this layer. */
  long bytes(int kvHead);
}
