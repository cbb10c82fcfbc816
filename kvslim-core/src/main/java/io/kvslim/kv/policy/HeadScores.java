package io.kvslim.kv.policy;

import java.util.Arrays;
import java.util.BitSet;

/**
 * One float score per retained token of each (layer, KV head), kept aligned with the retained order
 * as tokens are appended and evicted (H2O's accumulated attention).
 */
public final class HeadScores {
  private final float[][][] scores; // [layer][kvHead][retained index]
  private final int[][] sizes;

  public HeadScores(int layers, int kvHeads) {
    scores = new float[layers][kvHeads][64];
    sizes = new int[layers][kvHeads];
  }

  /** Adds {@code w * probs[i]} to the first {@code count} scores, growing to {@code count}. */
  public void add(int layer, int kvHead, float[] probs, int count, float w) {
    float[] s = scores[layer][kvHead];
    if (s.length < count) {
      s = scores[layer][kvHead] = Arrays.copyOf(s, Math.max(count, s.length * 2));
    }
    if (sizes[layer][kvHead] < count) {
      sizes[layer][kvHead] = count;
    }
    for (int i = 0; i < count; i++) {
      s[i] += w * probs[i];
    }
  }

  public float[] of(int layer, int kvHead) {
    return scores[layer][kvHead];
  }

  /** Drops the scores of evicted indices, keeping the others in order. */
  public void evict(int layer, int kvHead, BitSet evicted, int oldSize) {
    float[] s = scores[layer][kvHead];
    int w = 0;
    for (int i = 0; i < oldSize; i++) {
      if (!evicted.get(i)) {
        s[w++] = i < s.length ? s[i] : 0f;
      }
    }
    Arrays.fill(s, w, Math.min(s.length, oldSize), 0f);
    sizes[layer][kvHead] = w;
  }
}
