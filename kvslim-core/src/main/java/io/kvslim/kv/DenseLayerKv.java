package io.kvslim.kv;

import io.kvslim.kv.attention.AttentionKernels;
import java.util.Arrays;

/**
 * The reference cache of one layer: plain F32 arrays per KV head, growable, no eviction, scalar
 * attention. It is the oracle every compressed cache is tested against, and the engine may use it
 * as the uncompressed cache.
 *
 * <p>Softmax order (the one {@code PagedLayerKv} repeats, so a paged F32 cache equals this one bit
 * for bit): for each query head, the score of every visible token (position {@code <=} the query's)
 * is {@link AttentionKernels#dot} times {@code scale}, invisible tokens score {@code −∞}; {@code M}
 * is the largest score; the scores, in token order, are replaced by {@code w_t = exp(s_t − M)}
 * ({@link AttentionKernels#expAndSum}, which also gives {@code S = Σ w_t}); the output is {@code
 * (Σ_t w_t·v_t) · (1/S)}, the sum taken in token order with {@link AttentionKernels#addWeighted}
 * and skipping zero weights ({@code 0} when no token is visible). This is the two-pass softmax of
 * llama.cpp's non-flash attention ({@code soft_max} over the whole {@code KQ} row, then {@code
 * KQV}), normalized at the end as its flash-attention kernel does. Every operation is in float, in
 * a fixed order, so the result does not depend on thread or JIT state.
 */
public final class DenseLayerKv implements LayerKv {
  private final int kvHeads;
  private final int headDim;
  private final float[][] keys;
  private final float[][] values;
  private int[] positions = new int[16];
  private int count;
  private final float[] acc;
  private float[] scores = new float[0];
  private float[] probs = new float[0];

  public DenseLayerKv(int kvHeads, int headDim) {
    this.kvHeads = kvHeads;
    this.headDim = headDim;
    this.keys = new float[kvHeads][16 * headDim];
    this.values = new float[kvHeads][16 * headDim];
    this.acc = new float[headDim];
  }

  @Override
  public int kvHeads() {
    return kvHeads;
  }

  @Override
  public int headDim() {
    return headDim;
  }

  @Override
  public void append(int n, int[] newPositions, float[] newKeys, float[] newValues) {
    if (count + n > positions.length) {
      int capacity = Math.max(2 * positions.length, count + n);
      positions = Arrays.copyOf(positions, capacity);
      for (int g = 0; g < kvHeads; g++) {
        keys[g] = Arrays.copyOf(keys[g], capacity * headDim);
        values[g] = Arrays.copyOf(values[g], capacity * headDim);
      }
    }
    for (int t = 0; t < n; t++) {
      positions[count + t] = newPositions[t];
      for (int g = 0; g < kvHeads; g++) {
        int from = (t * kvHeads + g) * headDim;
        System.arraycopy(newKeys, from, keys[g], (count + t) * headDim, headDim);
        System.arraycopy(newValues, from, values[g], (count + t) * headDim, headDim);
      }
    }
    count += n;
  }

  @Override
  public void attend(
      int n,
      int[] queryPositions,
      int heads,
      float[] queries,
      float scale,
      float[] out,
      AttentionObserver observer) {
    if (heads % kvHeads != 0) {
      throw new IllegalArgumentException(
          heads + " query heads do not share " + kvHeads + " KV heads");
    }
    int group = heads / kvHeads;
    if (scores.length < count) {
      scores = new float[count];
      probs = new float[count];
    }
    for (int i = 0; i < n; i++) {
      int p = queryPositions[i];
      for (int h = 0; h < heads; h++) {
        int g = h / group;
        int qOff = (i * heads + h) * headDim;
        float[] k = keys[g];
        float[] v = values[g];
        for (int t = 0; t < count; t++) {
          scores[t] =
              positions[t] > p
                  ? Float.NEGATIVE_INFINITY
                  : AttentionKernels.dot(queries, qOff, k, t * headDim, headDim) * scale;
        }
        float sum = AttentionKernels.softmaxWeights(scores, 0, count);
        Arrays.fill(acc, 0f);
        for (int t = 0; t < count; t++) {
          if (scores[t] != 0f) {
            AttentionKernels.addWeighted(scores[t], v, t * headDim, acc, 0, headDim);
          }
        }
        float inverse = sum == 0f ? 0f : 1f / sum;
        AttentionKernels.scale(acc, 0, inverse, out, qOff, headDim);
        if (observer != null) {
          for (int t = 0; t < count; t++) {
            probs[t] = scores[t] * inverse;
          }
          observer.observe(i, h, g, probs, count);
        }
      }
    }
  }

  @Override
  public int size(int kvHead) {
    return count;
  }

  /**
   * Bytes of the arrays held (their allocated length, not only the used part): keys and values of
   * every head plus the one position array the heads share.
   */
  @Override
  public long bytes() {
    long total = 4L * positions.length;
    for (int g = 0; g < kvHeads; g++) {
      total += 4L * (keys[g].length + values[g].length);
    }
    return total;
  }

  /** Keys and values of one head, plus its share of the position array (rounded down). */
  @Override
  public long bytes(int kvHead) {
    return 4L * (keys[kvHead].length + values[kvHead].length) + 4L * positions.length / kvHeads;
  }
}
