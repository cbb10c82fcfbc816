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

  /** Multiplies the first {@code count} scores by {@code factor} (a forgetting factor). */
  public void scale(int layer, int kvHead, int count, float factor) {
    float[] s = scores[layer][kvHead];
    for (int i = 0, n = Math.min(count, s.length); i < n; i++) {
      s[i] *= factor;
    }
  }

  /** Sets the score of retained index {@code index}, growing to {@code index + 1}. */
  public void put(int layer, int kvHead, int index, float score) {
    float[] s = scores[layer][kvHead];
    if (s.length <= index) {
      s = scores[layer][kvHead] = Arrays.copyOf(s, Math.max(index + 1, s.length * 2));
    }
    s[index] = score;
    sizes[layer][kvHead] = Math.max(sizes[layer][kvHead], index + 1);
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
