package io.kvslim.kv.policy;

import io.kvslim.kv.AttentionObserver;
import io.kvslim.kv.AttentionOrder;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.LayerKv;
import io.kvslim.kv.attention.AttentionKernels;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.tensor.Parallel;
import java.util.Arrays;

/**
 * The cache KVzip's repeat passes run over (METHODS.md N4, steps 2–3): each layer reads the
 * sequence's cache, which it never writes, plus the repeat's own keys and values, held here and
 * dropped at the next chunk, so the sequence's cache is afterwards exactly what it was. Attention
 * is the model's: for each query, a softmax over every retained prompt token and the repeat's
 * tokens up to the query (scores in token order, {@link AttentionKernels#softmaxWeights}, output
 * scaled by {@code 1/S} at the end, as {@link io.kvslim.kv.DenseLayerKv}).
 *
 * <p>In a scored layer, each query also takes a second softmax over the same logits restricted to
 * the reduced key set: the first {@code min(n_sink, c)} retained tokens (c: the chunk's first
 * index), the chunk's tokens and the repeat's tokens up to the query; the probability of chunk
 * token i raises its score, the maximum over the KV head's query heads and all repeat queries
 * (NVIDIA/kvpress {@code kvpress/presses/kvzip_press.py}, {@code score_kvzip}, lines 316–354).
 * Engine-wide attention observers are not called here.
 */
final class KvzipReplay implements KvCache {
  private final ManagedKvCache base;
  private final Layer[] layers;
  private final float[][][] scores; // [layer][kvHead][retained index]; null for layers not scored
  private final int nSink;
  private int chunkFrom; // positions [chunkFrom, chunkTo) of the chunk being repeated
  private int chunkTo;

  /**
   * @param scores per layer, per KV head, one score per retained token (null: layer not scored);
   *     scores only rise
   */
  KvzipReplay(ManagedKvCache base, float[][][] scores, int nSink) {
    this.base = base;
    this.scores = scores;
    this.nSink = nSink;
    this.layers = new Layer[base.layerCount()];
    for (int l = 0; l < layers.length; l++) {
      PagedLayerKv p = base.paged(l);
      if (p.cacheRelative()) {
        throw new IllegalStateException(
            "kvzip cannot replay the prompt over layer " + l + ", which uses rolling positions");
      }
      layers[l] = new Layer(l, p);
    }
  }

  /** Starts the repeat of the prompt's positions {@code [from, to)}: the last repeat is dropped. */
  void beginChunk(int from, int to) {
    this.chunkFrom = from;
    this.chunkTo = to;
    for (Layer l : layers) {
      l.count = 0;
    }
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
    long b = base.bytes();
    for (Layer l : layers) {
      b += l.bytes() - l.paged.bytes();
    }
    return b;
  }

  @Override
  public void close() {
    // the repeat's arrays are the garbage collector's; the sequence's cache is the caller's
  }

  /** One layer: the sequence's retained tokens, read only, then the repeat's. */
  private final class Layer implements LayerKv {
    final int index;
    final PagedLayerKv paged;
    final int kvHeads;
    final int headDim;
    int count; // repeat tokens held
    int[] positions = new int[64];
    float[][] keys; // per KV head, count × headDim
    float[][] values;

    Layer(int index, PagedLayerKv paged) {
      this.index = index;
      this.paged = paged;
      this.kvHeads = paged.kvHeads();
      this.headDim = paged.headDim();
      this.keys = new float[kvHeads][64 * headDim];
      this.values = new float[kvHeads][64 * headDim];
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
    public void append(int n, int[] pos, float[] k, float[] v) {
      if (count + n > positions.length) {
        int capacity = Math.max(2 * positions.length, count + n);
        positions = Arrays.copyOf(positions, capacity);
        for (int g = 0; g < kvHeads; g++) {
          keys[g] = Arrays.copyOf(keys[g], capacity * headDim);
          values[g] = Arrays.copyOf(values[g], capacity * headDim);
        }
      }
      for (int t = 0; t < n; t++) {
        positions[count + t] = pos[t];
        for (int g = 0; g < kvHeads; g++) {
          int from = (t * kvHeads + g) * headDim;
          System.arraycopy(k, from, keys[g], (count + t) * headDim, headDim);
          System.arraycopy(v, from, values[g], (count + t) * headDim, headDim);
        }
      }
      count += n;
    }

    @Override
    public void attend(
        int n,
        int[] qPositions,
        int heads,
        float[] queries,
        float scale,
        float[] out,
        AttentionObserver observer) {
      attend(n, qPositions, heads, queries, scale, out, observer, null);
    }

    @Override
    public void attend(
        int n,
        int[] qPositions,
        int heads,
        float[] queries,
        float scale,
        float[] out,
        AttentionObserver observer,
        Parallel pool,
        AttentionOrder order) {
      attend(n, qPositions, heads, queries, scale, out, observer, pool);
    }

    @Override
    public void attend(
        int n,
        int[] qPositions,
        int heads,
        float[] queries,
        float scale,
        float[] out,
        AttentionObserver observer,
        Parallel pool) {
      if (heads % kvHeads != 0) {
        throw new IllegalArgumentException(
            heads + " query heads do not share " + kvHeads + " KV heads");
      }
      Parallel.RangeTask task =
          (s, e) -> {
            for (int g = s; g < e; g++) {
              attendHead(g, n, qPositions, heads, queries, scale, out);
            }
          };
      if (pool == null) {
        task.run(0, kvHeads);
      } else {
        pool.forRange(kvHeads, 1, task);
      }
    }

    /** The query heads of KV head {@code g}: attention, and in a scored layer their scores. */
    private void attendHead(
        int g, int n, int[] qPositions, int heads, float[] queries, float scale, float[] out) {
      HeadStore head = paged.head(g);
      int nb = head.size();
      int[] basePos = new int[nb];
      float[] baseK = new float[nb * headDim];
      float[] baseV = new float[nb * headDim];
      head.positions(basePos);
      head.readKeys(baseK);
      head.readValues(baseV);
      float[] score = scores[index] == null ? null : scores[index][g];
      int cs = lowerBound(basePos, nb, chunkFrom); // the chunk: retained [cs, ce)
      int ce = lowerBound(basePos, nb, chunkTo);
      int sinks = Math.min(nSink, cs);
      int total = nb + count;
      float[] logits = new float[total];
      float[] weights = new float[total];
      float[] reduced = new float[sinks + (ce - cs) + count];
      float[] acc = new float[headDim];
      float[] kr = keys[g];
      float[] vr = values[g];
      int group = heads / kvHeads;
      for (int i = 0; i < n; i++) {
        int p = qPositions[i];
        for (int h = g * group; h < (g + 1) * group; h++) {
          int qOff = (i * heads + h) * headDim;
          for (int t = 0; t < nb; t++) {
            logits[t] =
                basePos[t] > p
                    ? Float.NEGATIVE_INFINITY
                    : AttentionKernels.dot(queries, qOff, baseK, t * headDim, headDim) * scale;
          }
          for (int t = 0; t < count; t++) {
            logits[nb + t] =
                positions[t] > p
                    ? Float.NEGATIVE_INFINITY
                    : AttentionKernels.dot(queries, qOff, kr, t * headDim, headDim) * scale;
          }
          if (score != null) {
            reducedScores(logits, nb, sinks, cs, ce, reduced, score);
          }
          System.arraycopy(logits, 0, weights, 0, total);
          float sum = AttentionKernels.softmaxWeights(weights, 0, total);
          Arrays.fill(acc, 0f);
          for (int t = 0; t < total; t++) {
            if (weights[t] != 0f) {
              if (t < nb) {
                AttentionKernels.addWeighted(weights[t], baseV, t * headDim, acc, 0, headDim);
              } else {
                AttentionKernels.addWeighted(weights[t], vr, (t - nb) * headDim, acc, 0, headDim);
              }
            }
          }
          AttentionKernels.scale(acc, 0, sum == 0f ? 0f : 1f / sum, out, qOff, headDim);
        }
      }
    }

    /**
     * The softmax of one query's logits over the reduced set (sinks {@code [0, sinks)}, the chunk
     * {@code [cs, ce)}, the repeat {@code [nb, nb + count)}, masked ones −∞), raising {@code
     * score[cs..ce)} to the chunk's probabilities.
     */
    private void reducedScores(
        float[] logits, int nb, int sinks, int cs, int ce, float[] reduced, float[] score) {
      System.arraycopy(logits, 0, reduced, 0, sinks);
      System.arraycopy(logits, cs, reduced, sinks, ce - cs);
      System.arraycopy(logits, nb, reduced, sinks + ce - cs, count);
      int len = sinks + (ce - cs) + count;
      float sum = AttentionKernels.softmaxWeights(reduced, 0, len);
      if (sum == 0f) {
        return;
      }
      float inverse = 1f / sum;
      for (int t = cs; t < ce; t++) {
        float prob = reduced[sinks + t - cs] * inverse;
        if (prob > score[t]) {
          score[t] = prob;
        }
      }
    }

    @Override
    public int size(int kvHead) {
      return paged.size(kvHead) + count;
    }

    @Override
    public long bytes() {
      long b = 4L * positions.length;
      for (int g = 0; g < kvHeads; g++) {
        b += 4L * (keys[g].length + values[g].length);
      }
      return paged.bytes() + b;
    }

    @Override
    public long bytes(int kvHead) {
      return paged.bytes(kvHead) + 4L * (keys[kvHead].length + values[kvHead].length);
    }
  }

  /** The first index of {@code sorted[0..n)} whose value is at least {@code key}. */
  static int lowerBound(int[] sorted, int n, int key) {
    int lo = 0;
    int hi = n;
    while (lo < hi) {
      int mid = (lo + hi) >>> 1;
      if (sorted[mid] < key) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    return lo;
  }
}
