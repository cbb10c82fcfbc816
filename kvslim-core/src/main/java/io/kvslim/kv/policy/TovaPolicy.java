package io.kvslim.kv.policy;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.method.Budget;
import java.util.Arrays;
import java.util.BitSet;

/**
 * TOVA (Oren et al. 2024, "Transformers are Multi-State RNNs", arXiv:2401.06104 §4): once the cache
 * holds more than K tokens, drop the token the current query attends to least, averaged over all
 * query heads of the layer; the decision is per layer, so every KV head of a layer keeps the same
 * tokens. After a prefill longer than K the last prompt query decides in one shot (the cheap
 * variant). Positions stay original.
 */
public final class TovaPolicy implements KvPolicy {
  private final boolean[] layers;
  private final Budget budget;
  private final double bytesPerToken;
  private final float[][]
      lastRow; // per layer: attention of the step's last query, summed over heads
  private final int[] lastQuery;
  private final int[] rowCount;
  private int capacity = -1;
  private final BitSet scratch = new BitSet();

  public TovaPolicy(boolean[] layers, Budget budget, double bytesPerTokenAll) {
    this.layers = layers;
    this.budget = budget;
    this.bytesPerToken = bytesPerTokenAll;
    this.lastRow = new float[layers.length][64];
    this.lastQuery = new int[layers.length];
    this.rowCount = new int[layers.length];
    Arrays.fill(lastQuery, -1);
  }

  public int capacity() {
    return capacity;
  }

  @Override
  public boolean observes(int layer) {
    return layers[layer];
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
    float[] row = lastRow[layer];
    // a new query row starts when the row index or the retained count changes
    if (queryIndex != lastQuery[layer] || count != rowCount[layer]) {
      lastQuery[layer] = queryIndex;
      if (row.length < count) {
        row = lastRow[layer] = new float[Math.max(count, row.length * 2)];
      } else {
        Arrays.fill(row, 0f);
      }
      rowCount[layer] = count;
    }
    for (int i = 0; i < count; i++) {
      row[i] += probs[i];
    }
  }

  @Override
  public void afterStep(ManagedKvCache cache, KvCache.StepKind kind) {
    if (capacity < 0) {
      capacity = budget.tokens(cache.promptTokens(), bytesPerToken);
    }
    for (int l = 0; l < layers.length; l++) {
      if (!layers[l]) {
        continue;
      }
      PagedLayerKv layer = cache.paged(l);
      int size = layer.size(0);
      if (size > capacity && rowCount[l] == size) {
        scratch.clear();
        Selection.lowest(lastRow[l], 0, size, size - capacity, scratch);
        for (int g = 0; g < layer.kvHeads(); g++) {
          layer.evict(g, scratch);
        }
      }
      lastQuery[l] = -1;
    }
  }
}
