package io.kvslim.cluster;

import io.kvslim.kv.attention.AttentionKernels;
import java.util.Arrays;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * What one cluster member holds: for each sequence and layer, the F32 keys, values and positions of
 * the tokens of the blocks placed on this member, in token order, and the partial attention over
 * them (METHODS.md M11: running max, sum of exponentials, weighted value sum). It lives in the
 * member's user context, so tasks sent to the member find it there.
 */
final class MemberBlocks {
  /** The user-context key of a member's store. */
  static final String KEY = "kvslim.dist.blocks";

  private final Map<String, Map<Integer, Layer>> sequences = new ConcurrentHashMap<>();

  /** The layer {@code layer} of sequence {@code seq}, created empty on first use. */
  Layer layer(String seq, int layer, int kvHeads, int headDim) {
    Layer l =
        sequences
            .computeIfAbsent(seq, s -> new ConcurrentHashMap<>())
            .computeIfAbsent(layer, k -> new Layer(kvHeads, headDim));
    if (l.kvHeads != kvHeads || l.headDim != headDim) {
      throw new IllegalStateException(
          "layer " + layer + " of sequence " + seq + " was stored with another shape");
    }
    return l;
  }

  /** Forgets a sequence's blocks. */
  void drop(String seq) {
    sequences.remove(seq);
  }

  /** Forgets every sequence's blocks (tests: a member that lost its data). */
  void dropAll() {
    sequences.clear();
  }

  /** Sequences held (tests). */
  int sequenceCount() {
    return sequences.size();
  }

  /** One layer's rows on this member: per KV head, growable F32 arrays. */
  static final class Layer {
    final int kvHeads;
    final int headDim;
    private final float[][] keys;
    private final float[][] values;
    private int[] positions = new int[16];
    private int count;
    private float[] scores = new float[0];

    Layer(int kvHeads, int headDim) {
      this.kvHeads = kvHeads;
      this.headDim = headDim;
      this.keys = new float[kvHeads][16 * headDim];
      this.values = new float[kvHeads][16 * headDim];
    }

    synchronized int count() {
      return count;
    }

    /** Appends {@code n} rows laid out as {@code n × kvHeads × headDim}, token-major. */
    synchronized void append(int n, int[] newPositions, float[] newKeys, float[] newValues) {
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

    /**
     * Partial attention of {@code n} queries ({@code heads} heads) over this member's rows: for
     * query {@code i} and head {@code h}, at {@code out[(i·heads + h)·(headDim + 2)]}, the largest
     * visible score {@code m} ({@code −∞} when none is visible), {@code l = Σ exp(s − m)} and then
     * {@code o = Σ exp(s − m)·v} ({@code headDim} floats). Scores, exponentials and sums are those
     * of {@link io.kvslim.kv.DenseLayerKv}, operation for operation, over this member's tokens in
     * order; so a single member's partial, normalized, is the dense result bit for bit.
     */
    synchronized float[] partial(int n, int[] qPositions, int heads, float[] queries, float scale) {
      if (heads % kvHeads != 0) {
        throw new IllegalArgumentException(
            heads + " query heads do not share " + kvHeads + " KV heads");
      }
      int group = heads / kvHeads;
      int stride = headDim + 2;
      float[] out = new float[n * heads * stride];
      if (scores.length < count) {
        scores = new float[count];
      }
      for (int i = 0; i < n; i++) {
        int p = qPositions[i];
        for (int h = 0; h < heads; h++) {
          int g = h / group;
          int qOff = (i * heads + h) * headDim;
          int o = (i * heads + h) * stride;
          float[] k = keys[g];
          float[] v = values[g];
          for (int t = 0; t < count; t++) {
            scores[t] =
                positions[t] > p
                    ? Float.NEGATIVE_INFINITY
                    : AttentionKernels.dot(queries, qOff, k, t * headDim, headDim) * scale;
          }
          float max = AttentionKernels.max(scores, 0, count);
          out[o] = max;
          if (max == Float.NEGATIVE_INFINITY) {
            continue; // nothing visible here: l = 0, o = 0
          }
          out[o + 1] = AttentionKernels.expAndSum(scores, 0, count, max);
          for (int t = 0; t < count; t++) {
            if (scores[t] != 0f) {
              AttentionKernels.addWeighted(scores[t], v, t * headDim, out, o + 2, headDim);
            }
          }
        }
      }
      return out;
    }

    /** Bytes of the rows held: keys, values and positions of {@code count} tokens. */
    synchronized long bytes() {
      return 4L * count * (2L * kvHeads * headDim + 1);
    }
  }
}
