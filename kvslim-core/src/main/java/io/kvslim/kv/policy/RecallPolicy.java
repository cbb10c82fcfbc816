package io.kvslim.kv.policy;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import java.util.function.Supplier;

/**
 * A spill-and-recall policy (PQCache, ShadowKV): nothing is evicted; each decode step, every
 * (layer, KV head) of the selecting layers chooses the tokens its next attention call reads ({@link
 * PagedLayerKv#restrictNextAttention}), with state of type {@code S} kept per (layer, KV head). The
 * prefill attends over everything. Subclasses {@link #count} per head and step the bytes a cold
 * tier would send and the bytes attended; this class sums them over the decode steps.
 */
public abstract class RecallPolicy<S> implements KvPolicy {
  protected final boolean[] layers;
  protected final int dim;
  private final Supplier<S> fresh;
  private final Object[][] state;
  private double stepRead;
  private double stepAttended;
  private double read;
  private double attended;
  private long steps;

  protected RecallPolicy(boolean[] layers, int dim, Supplier<S> fresh) {
    this.layers = layers;
    this.dim = dim;
    this.fresh = fresh;
    this.state = new Object[layers.length][];
  }

  /**
   * One decode step's choice for KV head {@code g} of {@code paged}: the group's query heads are
   * {@code [head0, head0 + group)} of {@code q} ({@link #dim} floats each), {@code scale} the
   * attention's logit scale.
   */
  protected abstract void recall(
      PagedLayerKv paged, int g, S state, float[] q, int head0, int group, float scale);

  /** Adds a head's bytes this step: fetched from the cold tier, and attended over. */
  protected final void count(double fetched, double attendedBytes) {
    stepRead += fetched;
    stepAttended += attendedBytes;
  }

  /** The state of (layer, KV head), or null before that layer's first decode step. */
  @SuppressWarnings("unchecked")
  protected final S state(int layer, int kvHead) {
    Object[] l = state[layer];
    return l == null ? null : (S) l[kvHead];
  }

  /** The states of the layers that have decoded, for totals over them. */
  protected final Iterable<S> states() {
    java.util.List<S> out = new java.util.ArrayList<>();
    for (int l = 0; l < state.length; l++) {
      for (int g = 0; state[l] != null && g < state[l].length; g++) {
        out.add(state(l, g));
      }
    }
    return out;
  }

  @Override
  public boolean wantsQueries(int layer) {
    return layer < layers.length && layers[layer];
  }

  @Override
  public void onQueries(
      ManagedKvCache cache, int layer, int n, int[] positions, int heads, float[] q, float scale) {
    if (n != 1 || cache.promptTokens() < 0) {
      return; // the prefill attends over everything
    }
    PagedLayerKv paged = cache.paged(layer);
    int kvHeads = paged.kvHeads();
    int group = heads / kvHeads;
    if (state[layer] == null) {
      state[layer] = new Object[kvHeads];
      for (int g = 0; g < kvHeads; g++) {
        state[layer][g] = fresh.get();
      }
    }
    for (int g = 0; g < kvHeads; g++) {
      recall(paged, g, state(layer, g), q, g * group, group, scale);
    }
  }

  @Override
  public void afterStep(ManagedKvCache cache, KvCache.StepKind kind) {
    if (kind == KvCache.StepKind.DECODE) {
      read += stepRead;
      attended += stepAttended;
      steps++;
    }
    stepRead = 0;
    stepAttended = 0;
  }

  /** Bytes of keys and values fetched from the cold tier by the decode steps so far. */
  public double bytesRead() {
    return read;
  }

  /** Mean bytes fetched per decode step (0 before the first). */
  public double bytesReadPerStep() {
    return steps == 0 ? 0 : read / steps;
  }

  /** Decode steps so far. */
  public long decodeSteps() {
    return steps;
  }

  @Override
  public double decodeBytesAttended() {
    return attended;
  }

  /**
   * The softmax of {@code logits[0..n)} added into {@code into[0..n)}, or (with {@code max}) the
   * element-wise max of it and {@code into}: how PQCache (sum) and ShadowKV (max) pool a GQA
   * group's query heads.
   */
  public static void poolSoftmax(float[] logits, int n, float[] into, boolean max) {
    float top = Float.NEGATIVE_INFINITY;
    for (int i = 0; i < n; i++) {
      top = Math.max(top, logits[i]);
    }
    double z = 0;
    for (int i = 0; i < n; i++) {
      z += Math.exp(logits[i] - top);
    }
    for (int i = 0; i < n; i++) {
      float p = (float) (Math.exp(logits[i] - top) / z);
      into[i] = max ? Math.max(into[i], p) : into[i] + p;
    }
  }
}
