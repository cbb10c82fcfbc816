package io.kvslim.kv.cache;

import io.kvslim.kv.AttentionObserver;
import io.kvslim.kv.AttentionOrder;
import io.kvslim.kv.DenseLayerKv;
import io.kvslim.kv.attention.AttentionKernels;
import io.kvslim.kv.format.DroppedKeys;
import io.kvslim.kv.method.DistantKeys;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvBlock;
import io.kvslim.tensor.Parallel;
import java.util.Arrays;
import java.util.List;

/**
 * A layer that is not the first of its POD group (Ma et al. 2024, "Compressing KV Cache for
 * Long-Context LLM Inference with Inter-Layer Attention Similarity", arXiv:2412.02252 v2 §3;
 * METHODS.md S4): it stores its own values for every token and its own keys for proximal tokens
 * only; for distant tokens its queries score the keys of its group's first layer, which stores
 * every token's key.
 *
 * <p>For a query at position {@code p} a token at position {@code i} is distant when {@code sinks
 * <= i <= p − window} ({@link DistantKeys#distant}). Its score is {@code q · k'_i} with {@code k'}
 * the first layer's key, else {@code q · k_i} with this layer's own; then one softmax over every
 * visible token and the weighted sum of this layer's own values, in {@link DenseLayerKv}'s order
 * (scores by {@link AttentionKernels#dot}, {@link AttentionKernels#softmaxWeights}, values added in
 * token order by {@link AttentionKernels#addWeighted}, one scaling by {@code 1/S} at the end). With
 * every token proximal the output is a full F32 cache's bit for bit.
 *
 * <p>After each attention call, the blocks whose tokens are all distant for the call's last query
 * (and so for every later one) drop their keys ({@link HeadStore#dropKeys}): the memory is given
 * back a block (32 tokens) at a time, as tokens leave the window during decode. A block that is
 * partly distant keeps its keys until it is wholly distant but its distant tokens are scored with
 * the first layer's keys all the same. The keys are decoded into F32 rows per call and head, then
 * scored; the attention order the model asks for ({@link AttentionOrder}) is not followed (this
 * layer's own order always).
 */
final class DistantKeyLayer extends ManagedKvCache.Front {
  private final PagedLayerKv first;
  private final DistantKeys groups;
  private final Runnable appended;
  private Head[] scratch = new Head[0];

  /**
   * @param appended called after each append, while this layer holds the step's keys whole (the
   *     cache's peak)
   */
  DistantKeyLayer(PagedLayerKv own, PagedLayerKv first, DistantKeys groups, Runnable appended) {
    super(own);
    this.first = first;
    this.groups = groups;
    this.appended = appended;
  }

  /** Per KV head buffers, grown on demand. */
  private static final class Head {
    int[] positions = new int[0];
    int[] firstPositions = new int[0];
    float[] ownKeys = new float[0];
    float[] firstKeys = new float[0];
    float[] values = new float[0];
    float[] scores = new float[0];
    float[] probs = new float[0];
    float[] acc = new float[0];
    int count;

    void ensure(int count, int headDim) {
      this.count = count;
      if (positions.length < count) {
        int c = Math.max(count, 2 * positions.length);
        positions = new int[c];
        firstPositions = new int[c];
        ownKeys = new float[c * headDim];
        firstKeys = new float[c * headDim];
        values = new float[c * headDim];
        scores = new float[c];
        probs = new float[c];
      }
      if (acc.length < headDim) {
        acc = new float[headDim];
      }
    }
  }

  @Override
  public void append(int n, int[] positions, float[] keys, float[] values) {
    paged.append(n, positions, keys, values);
    appended.run();
  }

  @Override
  AttentionObserver observerFor(
      int n,
      int[] positions,
      int heads,
      float[] queries,
      float scale,
      AttentionObserver engineObserver) {
    return engineObserver;
  }

  @Override
  public void attend(
      int n,
      int[] positions,
      int heads,
      float[] queries,
      float scale,
      float[] out,
      AttentionObserver observer,
      Parallel pool,
      AttentionOrder order) {
    int kvHeads = paged.kvHeads();
    if (heads % kvHeads != 0) {
      throw new IllegalArgumentException(
          heads + " query heads do not share " + kvHeads + " KV heads");
    }
    if (scratch.length < kvHeads) {
      scratch = Arrays.copyOf(scratch, kvHeads);
      for (int g = 0; g < kvHeads; g++) {
        if (scratch[g] == null) {
          scratch[g] = new Head();
        }
      }
    }
    int lo = Integer.MAX_VALUE;
    int hi = Integer.MIN_VALUE;
    for (int i = 0; i < n; i++) {
      lo = Math.min(lo, positions[i]);
      hi = Math.max(hi, positions[i]);
    }
    int qLo = lo;
    int qHi = hi;
    int group = heads / kvHeads;
    if (observer != null || pool == null) {
      for (int g = 0; g < kvHeads; g++) {
        prepare(g, qLo, qHi);
      }
      for (int i = 0; i < n; i++) { // the observer sees rows in the serial order
        for (int h = 0; h < heads; h++) {
          Head s = scratch[h / group];
          row(s, positions[i], queries, (i * heads + h) * headDim(), scale, out, observer != null);
          if (observer != null) {
            observer.observe(i, h, h / group, s.probs, s.count);
          }
        }
      }
    } else {
      pool.forChunks(
          kvHeads,
          1,
          (chunk, start, end) -> {
            for (int g = start; g < end; g++) {
              prepare(g, qLo, qHi);
              Head s = scratch[g];
              for (int i = 0; i < n; i++) {
                for (int h = g * group; h < (g + 1) * group; h++) {
                  row(s, positions[i], queries, (i * heads + h) * headDim(), scale, out, false);
                }
              }
            }
          });
    }
    if (n > 0) {
      dropDistantKeys(qHi);
    }
  }

  /**
   * Decodes head {@code g}'s tokens for queries at positions {@code lo..hi}: its values, its own
   * keys of the tokens proximal for some query, the first layer's keys of those distant for some.
   */
  private void prepare(int g, int lo, int hi) {
    HeadStore own = paged.head(g);
    HeadStore lead = first.head(g);
    int count = own.size();
    int d = headDim();
    Head s = scratch[g];
    s.ensure(count, d);
    own.positions(s.positions);
    if (lead.size() != count) {
      throw new IllegalStateException(
          "a POD layer holds " + count + " tokens but its group's first layer " + lead.size());
    }
    lead.positions(s.firstPositions);
    if (!Arrays.equals(s.positions, 0, count, s.firstPositions, 0, count)) {
      throw new IllegalStateException(
          "a POD layer holds other positions than its group's first layer");
    }
    int t = 0;
    for (KvBlock b : own.blocks()) {
      boolean dropped = b.keyFormat() == DroppedKeys.INSTANCE;
      for (int slot = 0; slot < b.filled(); slot++) {
        if (!b.isLive(slot)) {
          continue;
        }
        int pos = s.positions[t];
        b.decodeValue(slot, s.values, t * d);
        if (!groups.distant(pos, lo)) {
          if (dropped) {
            throw new IllegalStateException(
                "the key of position " + pos + " was dropped but is proximal for a query at " + lo);
          }
          b.decodeKey(slot, s.ownKeys, t * d);
        }
        t++;
      }
    }
    t = 0;
    for (KvBlock b : lead.blocks()) {
      for (int slot = 0; slot < b.filled(); slot++) {
        if (!b.isLive(slot)) {
          continue;
        }
        int pos = s.positions[t];
        if (groups.distant(pos, hi)) {
          b.decodeKey(slot, s.firstKeys, t * d);
        }
        t++;
      }
    }
  }

  /** One query row: scores over the head's tokens, one softmax, this layer's own values. */
  private void row(
      Head s, int p, float[] queries, int qOff, float scale, float[] out, boolean observe) {
    int d = headDim();
    int count = s.count;
    float[] scores = s.scores;
    for (int t = 0; t < count; t++) {
      int pos = s.positions[t];
      if (pos > p) {
        scores[t] = Float.NEGATIVE_INFINITY;
      } else {
        float[] keys = groups.distant(pos, p) ? s.firstKeys : s.ownKeys;
        scores[t] = AttentionKernels.dot(queries, qOff, keys, t * d, d) * scale;
      }
    }
    float sum = AttentionKernels.softmaxWeights(scores, 0, count);
    float[] acc = s.acc;
    Arrays.fill(acc, 0, d, 0f);
    for (int t = 0; t < count; t++) {
      if (scores[t] != 0f) {
        AttentionKernels.addWeighted(scores[t], s.values, t * d, acc, 0, d);
      }
    }
    float inverse = sum == 0f ? 0f : 1f / sum;
    AttentionKernels.scale(acc, 0, inverse, out, qOff, d);
    if (observe) {
      for (int t = 0; t < count; t++) {
        s.probs[t] = scores[t] * inverse;
      }
    }
  }

  /**
   * Drops the own keys of every full block whose tokens are all distant for a query at {@code p}.
   */
  private void dropDistantKeys(int p) {
    for (int g = 0; g < paged.kvHeads(); g++) {
      HeadStore own = paged.head(g);
      List<KvBlock> blocks = own.blocks();
      for (int b = 0; b < blocks.size(); b++) {
        KvBlock k = blocks.get(b);
        if (k.minPosition() > p - groups.window()) {
          break; // blocks are in position order: the rest are proximal too
        }
        if (k.keyFormat() != DroppedKeys.INSTANCE
            && k.filled() == k.capacity()
            && k.residualValueFormat() == null
            && k.minPosition() >= groups.sinks()
            && groups.distant(k.maxPosition(), p)) {
          own.dropKeys(b);
        }
      }
    }
  }
}
