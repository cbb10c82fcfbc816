package io.kvslim.kv.policy;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.method.Budget;
import java.util.BitSet;

/**
 * H2O (Zhang et al. 2023, "H2O: Heavy-Hitter Oracle", arXiv:2306.14048, Alg. 1): every token's
 * score is the attention it has received, summed over all queries so far (mean over the query heads
 * of a KV head, the GQA rule). After prefill keep the recent window plus the top-scored heavy
 * hitters; at each decode step, evict the lowest-scored tokens outside the recent window until the
 * capacity holds again. Positions stay original. Subclasses accumulate another score of the
 * probabilities ({@link #accumulate}).
 */
public class H2oPolicy implements KvPolicy {
  private final boolean[] layers;
  private final Budget budget;
  private final double recentShare;
  private final int sinks;
  private final double bytesPerToken;
  private HeadScores scores;
  private int capacity = -1;
  private final BitSet scratch = new BitSet();

  public H2oPolicy(
      boolean[] layers, Budget budget, double recentShare, int sinks, double bytesPerTokenAll) {
    this.layers = layers;
    this.budget = budget;
    this.recentShare = recentShare;
    this.sinks = sinks;
    this.bytesPerToken = bytesPerTokenAll;
  }

  @Override
  public boolean observes(int layer) {
    return layers[layer];
  }

  @Override
  public final void observe(
      ManagedKvCache cache,
      int layer,
      int queryIndex,
      int head,
      int kvHead,
      float[] probs,
      int count) {
    if (scores == null) {
      scores = new HeadScores(layers.length, cache.paged(0).kvHeads());
    }
    accumulate(layer, queryIndex, head, kvHead, probs, count);
  }

  /**
   * Adds one query head's probabilities over the KV head's retained tokens to their scores: H2O
   * adds them as they are (summing over the group's query heads ranks tokens exactly as their mean
   * does).
   */
  protected void accumulate(
      int layer, int queryIndex, int head, int kvHead, float[] probs, int count) {
    scores.add(layer, kvHead, probs, count, 1f);
  }

  /** Tokens kept per (layer, KV head); known once the prompt length is. */
  public int capacity() {
    return capacity;
  }

  @Override
  public void afterStep(ManagedKvCache cache, KvCache.StepKind kind) {
    evict(cache);
  }

  /** Evicts the lowest-scored tokens outside the sinks and the recent window down to capacity. */
  protected final void evict(ManagedKvCache cache) {
    if (capacity < 0) {
      capacity = Math.max(sinks + 1, budget.tokens(cache.promptTokens(), bytesPerToken));
    }
    int recent =
        Math.min(capacity - Math.min(sinks, capacity), (int) Math.round(capacity * recentShare));
    for (int l = 0; l < layers.length; l++) {
      if (!layers[l]) {
        continue;
      }
      PagedLayerKv layer = cache.paged(l);
      for (int g = 0; g < layer.kvHeads(); g++) {
        int size = layer.size(g);
        if (size <= capacity) {
          continue;
        }
        float[] s = scores == null ? new float[size] : scores.of(l, g);
        int excess = size - capacity;
        scratch.clear();
        // candidates: after the sinks and before the recent window; evict the lowest scores
        int from = Math.min(sinks, size);
        int to = Math.max(from, size - recent);
        Selection.lowest(s, from, to, excess, scratch);
        layer.evict(g, scratch);
        if (scores != null) {
          scores.evict(l, g, scratch, size);
        }
      }
    }
  }
}
