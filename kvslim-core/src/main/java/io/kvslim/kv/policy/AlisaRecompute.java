package io.kvslim.kv.policy;

import io.kvslim.kv.AttentionObserver;
import io.kvslim.kv.DenseLayerKv;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.LayerKv;
import java.util.Arrays;

/**
 * The cache ALISA's recomputation runs the prompt's first tokens through ({@link AlisaPolicy},
 * METHODS.md H2, phase III): a full-attention F32 cache per layer ({@link DenseLayerKv}) that also
 * keeps every appended key and value row, so the policy can copy the rows of the tokens it brings
 * back. It is the policy's own and never the sequence's cache, which the pass leaves as it was.
 */
final class AlisaRecompute implements KvCache {
  private final Layer[] layers;

  AlisaRecompute(int layerCount, int kvHeads, int headDim) {
    layers = new Layer[layerCount];
    for (int l = 0; l < layerCount; l++) {
      layers[l] = new Layer(kvHeads, headDim);
    }
  }

  /**
   * Copies the key and value of the token at {@code index} (its order in the pass) of {@code
   * layer}'s KV head {@code kvHead} into {@code keys} and {@code values} at row {@code row}.
   */
  void copyRow(int layer, int kvHead, int index, float[] keys, float[] values, int row) {
    Layer x = layers[layer];
    if (index >= x.count) {
      throw new IllegalStateException(
          "the recompute pass reached token " + x.count + ", not token " + index);
    }
    int d = x.headDim;
    int from = (index * x.kvHeads + kvHead) * d;
    System.arraycopy(x.keys, from, keys, row * d, d);
    System.arraycopy(x.values, from, values, row * d, d);
  }

  @Override
  public int layerCount() {
    return layers.length;
  }

  @Override
  public LayerKv layer(int layer) {
    return layers[layer];
  }

  @Override
  public long bytes() {
    long b = 0;
    for (Layer l : layers) {
      b += l.bytes();
    }
    return b;
  }

  @Override
  public void close() {
    // plain arrays, the garbage collector's
  }

  /** One layer: the dense cache attention reads, and the rows as appended (token-major). */
  private static final class Layer implements LayerKv {
    final int kvHeads;
    final int headDim;
    final DenseLayerKv dense;
    float[] keys = new float[0];
    float[] values = new float[0];
    int count;

    Layer(int kvHeads, int headDim) {
      this.kvHeads = kvHeads;
      this.headDim = headDim;
      this.dense = new DenseLayerKv(kvHeads, headDim);
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
    public void append(int n, int[] positions, float[] k, float[] v) {
      int row = kvHeads * headDim;
      if ((count + n) * row > keys.length) {
        int cap = Math.max(2 * keys.length, (count + n) * row);
        keys = Arrays.copyOf(keys, cap);
        values = Arrays.copyOf(values, cap);
      }
      System.arraycopy(k, 0, keys, count * row, n * row);
      System.arraycopy(v, 0, values, count * row, n * row);
      count += n;
      dense.append(n, positions, k, v);
    }

    @Override
    public void attend(
        int n,
        int[] positions,
        int heads,
        float[] queries,
        float scale,
        float[] out,
        AttentionObserver observer) {
      dense.attend(n, positions, heads, queries, scale, out, observer);
    }

    @Override
    public int size(int kvHead) {
      return dense.size(kvHead);
    }

    @Override
    public long bytes() {
      return dense.bytes();
    }

    @Override
    public long bytes(int kvHead) {
      return dense.bytes(kvHead);
    }
  }
}
