package io.kvslim.kv.policy;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;

/**
 * Compression inside the prefill (METHODS.md N10; kvpress cannot, its issue #178): the prompt goes
 * in chunks of {@code chunk} tokens ({@link KvCache#prefillChunk}, which the engine and the server
 * honour), and after each chunk's attention in a layer, while more of the prompt is to come, the
 * wrapped scorer compresses that layer back to its budget. The chunk's hidden states were computed
 * against the compressed past, so every later layer and chunk sees what the store really holds (not
 * kvpress's #186 oracle). A (layer, KV head) therefore holds at most its budget plus one chunk
 * after any chunk. The prompt's last chunk is left to the scorer's one-shot compression at the
 * prefill's end, so with {@code chunk} at least the prompt's length nothing changes at all.
 *
 * <p>Each scorer keeps what it accumulates over the chunks: SnapKV's window is the last queries
 * seen (the chunk's) and its last window tokens are protected; KeyDiff scores kept ∪ chunk;
 * Expected Attention keeps running query statistics over every query seen.
 */
public final class ChunkedPrefill implements KvPolicy {
  /** A scorer that can compress one layer on demand, in the middle of the prefill. */
  public interface Compressor extends KvPolicy {
    /**
     * Compresses {@code layer} back to its budget now, the budget sized for a prompt of {@code
     * promptTokens} tokens, without ending the scorer's prefill (it goes on collecting).
     */
    void compressLayer(ManagedKvCache cache, int layer, int promptTokens);
  }

  private final Compressor inner;
  private final boolean[] layers;
  private final int chunk;
  private final int[] pending; // prompt tokens appended to each layer since its last compression

  public ChunkedPrefill(Compressor inner, boolean[] layers, int chunk) {
    if (chunk < 1) {
      throw new IllegalArgumentException("chunk must be at least 1, got " + chunk);
    }
    this.inner = inner;
    this.layers = layers;
    this.chunk = chunk;
    this.pending = new int[layers.length];
  }

  /** {@code inner} compressing inside the prefill every {@code chunk} tokens; 0: {@code inner}. */
  public static KvPolicy wrap(Compressor inner, boolean[] layers, int chunk) {
    return chunk == 0 ? inner : new ChunkedPrefill(inner, layers, chunk);
  }

  @Override
  public int prefillChunk() {
    return chunk;
  }

  @Override
  public void beforeAppend(ManagedKvCache cache, int layer, int n) {
    inner.beforeAppend(cache, layer, n);
    if (cache.promptTokens() < 0) {
      pending[layer] += n;
    }
  }

  @Override
  public void afterAttention(ManagedKvCache cache, int layer) {
    inner.afterAttention(cache, layer);
    if (!layers[layer] || cache.promptTokens() >= 0 || pending[layer] < chunk) {
      return;
    }
    int prompt = cache.plannedPromptTokens();
    if (cache.tokens() >= prompt) {
      return; // the prompt's last chunk: the one-shot compression at its end takes it
    }
    pending[layer] = 0;
    inner.compressLayer(cache, layer, prompt);
  }

  @Override
  public boolean observes(int layer) {
    return inner.observes(layer);
  }

  @Override
  public void observe(
      ManagedKvCache cache,
      int layer,
      int queryIndex,
      int head,
      int kvHead,
      float[] probs,
      int count) {
    inner.observe(cache, layer, queryIndex, head, kvHead, probs, count);
  }

  @Override
  public boolean wantsQueries(int layer) {
    return inner.wantsQueries(layer);
  }

  @Override
  public void onQueries(
      ManagedKvCache cache, int layer, int n, int[] positions, int heads, float[] q, float scale) {
    inner.onQueries(cache, layer, n, positions, heads, q, scale);
  }

  @Override
  public boolean cacheRelativePositions(int layer) {
    return inner.cacheRelativePositions(layer);
  }

  @Override
  public void afterStep(ManagedKvCache cache, KvCache.StepKind kind) {
    inner.afterStep(cache, kind);
  }
}
