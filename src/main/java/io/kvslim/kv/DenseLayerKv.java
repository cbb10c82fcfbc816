package io.kvslim.kv;

import java.util.Arrays;

/**
 * The reference cache of one layer: plain F32 arrays per KV head, growable, no eviction, scalar
 * attention. It is the oracle every compressed cache is tested against, and the engine may use it
 * as the uncompressed cache.
 *
 * <p>Softmax order (the one {@code PagedLayerKv} repeats, so a paged F32 cache equals this one bit
 * for bit): for each query head, tokens are visited in order; the score is a sequential float dot
 * product times {@code scale}; an online softmax keeps the running maximum {@code M} and sum {@code
 * S} in float: when a score {@code s > M}, the accumulator and {@code S} are multiplied by {@code
 * exp(M − s)} and the token's weight is 1, otherwise its weight is {@code exp(s − M)}; the value is
 * added with that weight and {@code S = S + weight}. Finally {@code out = acc · (1/S)} ({@code 0}
 * when no token is visible). Every {@code exp} is computed in double and rounded to float. This is
 * the order of llama.cpp's CPU flash-attention kernel ({@code
 * ggml_compute_forward_flash_attn_ext}), which llama.cpp uses for quantized V caches and by default
 * on CPU: max-subtracted exponentials in float, a float sum, normalization at the end.
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
    if (observer != null && scores.length < count) {
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
        float max = Float.NEGATIVE_INFINITY;
        float sum = 0f;
        Arrays.fill(acc, 0f);
        for (int t = 0; t < count; t++) {
          if (positions[t] > p) {
            if (observer != null) {
              scores[t] = Float.NEGATIVE_INFINITY;
            }
            continue;
          }
          float dot = 0f;
          for (int j = 0; j < headDim; j++) {
            dot += queries[qOff + j] * k[t * headDim + j];
          }
          float s = dot * scale;
          if (observer != null) {
            scores[t] = s;
          }
          float weight;
          if (s > max) {
            float rescale = (float) Math.exp(max - s);
            max = s;
            for (int j = 0; j < headDim; j++) {
              acc[j] *= rescale;
            }
            sum *= rescale;
            weight = 1f;
          } else {
            weight = (float) Math.exp(s - max);
          }
          for (int j = 0; j < headDim; j++) {
            acc[j] += weight * v[t * headDim + j];
          }
          sum += weight;
        }
        float inverse = sum == 0f ? 0f : 1f / sum;
        for (int j = 0; j < headDim; j++) {
          out[qOff + j] = acc[j] * inverse;
        }
        if (observer != null) {
          for (int t = 0; t < count; t++) {
            probs[t] = sum == 0f ? 0f : (float) Math.exp(scores[t] - max) * inverse;
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
