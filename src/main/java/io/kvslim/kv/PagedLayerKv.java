package io.kvslim.kv;

import io.kvslim.kv.quant.KvFormat;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvBlock;
import io.kvslim.kv.store.LayerStore;
import java.util.Arrays;
import java.util.BitSet;

/**
 * One layer of the compressible cache: the {@link LayerStore} (paged blocks per KV head, each in
 * its own format) and attention over it (DESIGN.md §3.1).
 *
 * <p>Attention runs per query head, block after block: the block's key format computes the scores
 * of all its slots in one fused call, then the live, visible tokens go through the online softmax
 * of {@link DenseLayerKv} in token order (running maximum and sum, rescaling when the maximum
 * grows) with the value format's fused weighted sum. Dead tokens and tokens after the query's
 * position are skipped. With F32 keys and values the arithmetic is the dense cache's, so the two
 * agree bit for bit.
 *
 * <p>The observer, when given, gets {@code exp(s_t − M)/S} over the head's retained tokens (0 for
 * tokens after the query); scores are kept in a scratch array during the pass, so this costs one
 * extra loop over the head's tokens and nothing when no observer is given.
 *
 * <p>Scratch buffers are per layer and reused: one thread at a time per layer.
 */
public final class PagedLayerKv implements LayerKv {
  private final LayerStore store;
  private final int headDim;
  private final float[] acc;
  private final float[] blockScores;
  private final float[] work;
  private float[] retainedScores = new float[0];
  private float[] probs = new float[0];

  public PagedLayerKv(LayerStore store) {
    this.store = store;
    this.headDim = store.headDim();
    this.acc = new float[headDim];
    this.blockScores = new float[store.format().blockTokens()];
    this.work = new float[KvFormat.workLength(headDim)];
  }

  /** The store, for policies: sizes, positions, eviction, formats, budgets per head. */
  public LayerStore store() {
    return store;
  }

  public HeadStore head(int kvHead) {
    return store.head(kvHead);
  }

  @Override
  public int kvHeads() {
    return store.kvHeads();
  }

  @Override
  public int headDim() {
    return headDim;
  }

  @Override
  public void append(int n, int[] positions, float[] keys, float[] values) {
    store.append(n, positions, keys, values);
  }

  /** Evicts the tokens of {@code kvHead} whose retained indices are set. */
  public void evict(int kvHead, BitSet indices) {
    store.evict(kvHead, indices);
  }

  /** Evicts the tokens of {@code kvHead} at retained indices {@code indices[0..count)}. */
  public void evict(int kvHead, int[] indices, int count) {
    store.head(kvHead).evict(indices, count);
  }

  /** Positions of the retained tokens of {@code kvHead}, in order. */
  public int[] positions(int kvHead) {
    int[] dst = new int[size(kvHead)];
    store.head(kvHead).positions(dst);
    return dst;
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
    int kvHeads = store.kvHeads();
    if (heads % kvHeads != 0) {
      throw new IllegalArgumentException(
          heads + " query heads do not share " + kvHeads + " KV heads");
    }
    int group = heads / kvHeads;
    for (int i = 0; i < n; i++) {
      for (int h = 0; h < heads; h++) {
        int g = h / group;
        int offset = (i * heads + h) * headDim;
        attendOne(store.head(g), positions[i], queries, offset, scale, out, observer, i, h, g);
      }
    }
  }

  private void attendOne(
      HeadStore head,
      int position,
      float[] queries,
      int offset,
      float scale,
      float[] out,
      AttentionObserver observer,
      int queryIndex,
      int queryHead,
      int kvHead) {
    boolean observed = observer != null;
    if (observed && retainedScores.length < head.size()) {
      retainedScores = new float[head.size()];
      probs = new float[head.size()];
    }
    float max = Float.NEGATIVE_INFINITY;
    float sum = 0f;
    Arrays.fill(acc, 0f);
    int retained = 0;
    for (KvBlock block : head.blocks()) {
      if (block.minPosition() > position) {
        if (observed) {
          Arrays.fill(
              retainedScores, retained, retained + block.liveCount(), Float.NEGATIVE_INFINITY);
        }
        retained += block.liveCount();
        continue;
      }
      int filled = block.filled();
      int capacity = block.capacity();
      block
          .keyFormat()
          .dots(block.keys(), filled, capacity, headDim, queries, offset, blockScores, work);
      KvFormat valueFormat = block.valueFormat();
      for (int s = 0; s < filled; s++) {
        if (!block.isLive(s)) {
          continue;
        }
        if (block.position(s) > position) {
          if (observed) {
            retainedScores[retained] = Float.NEGATIVE_INFINITY;
          }
          retained++;
          continue;
        }
        float score = blockScores[s] * scale;
        if (observed) {
          retainedScores[retained] = score;
        }
        retained++;
        float weight;
        if (score > max) {
          float rescale = (float) Math.exp(max - score);
          max = score;
          for (int j = 0; j < headDim; j++) {
            acc[j] *= rescale;
          }
          sum *= rescale;
          weight = 1f;
        } else {
          weight = (float) Math.exp(score - max);
        }
        valueFormat.accumulate(block.values(), s, capacity, headDim, weight, acc, work);
        sum += weight;
      }
    }
    float inverse = sum == 0f ? 0f : 1f / sum;
    for (int j = 0; j < headDim; j++) {
      out[offset + j] = acc[j] * inverse;
    }
    if (observed) {
      for (int t = 0; t < retained; t++) {
        probs[t] = sum == 0f ? 0f : (float) Math.exp(retainedScores[t] - max) * inverse;
      }
      observer.observe(queryIndex, queryHead, kvHead, probs, retained);
    }
  }

  @Override
  public int size(int kvHead) {
    return store.head(kvHead).size();
  }

  @Override
  public long bytes() {
    return store.bytes();
  }

  @Override
  public long bytes(int kvHead) {
    return store.head(kvHead).bytes();
  }
}
