package io.kvslim.kv.policy;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import java.util.BitSet;
import java.util.function.Supplier;

/**
 * A spill-and-recall policy (PQCache, ShadowKV): nothing is evicted; each decode step, every
 * (layer, KV head) of the selecting layers chooses the tokens its next attention call reads ({@link
 * PagedLayerKv#restrictNextAttention}), with state of type {@code S} kept per (layer, KV head). The
 * prefill attends over everything. Subclasses {@link #count} per head and step the bytes a cold
 * tier would send and the bytes attended; this class sums them over the decode steps. With a {@link
 * ColdSpill} ({@code spill=true}) the blocks outside {@link #resident} really leave RAM and each
 * step fetches the selected ones.
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
  private final ColdSpill spill; // null: everything stays in RAM
  private boolean prefilling; // the layer whose queries came last is in a prefill step

  protected RecallPolicy(boolean[] layers, int dim, Supplier<S> fresh) {
    this(layers, dim, fresh, null);
  }

  /**
   * A policy whose heads hold the blocks outside {@link #resident} in {@code spill} (null: in RAM),
   * fetching each step the blocks the selection reads.
   */
  protected RecallPolicy(boolean[] layers, int dim, Supplier<S> fresh, ColdSpill spill) {
    this.spill = spill;
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

  /**
   * The retained tokens of a head that always stay in RAM ({@code total} tokens with the current
   * one): the method's exact part (sinks, a recent window, outliers); null for none.
   */
  protected BitSet resident(S state, int total) {
    return null;
  }

  /**
   * Whether the next {@link #recall} of a head holding {@code total} tokens reads every key (its
   * state is rebuilt); with a spill, the head's blocks are then all fetched first.
   */
  protected boolean readsAll(S state, int total) {
    return false;
  }

  /** The cold tier, or null when everything stays in RAM. */
  public final ColdSpill spill() {
    return spill;
  }

  @Override
  public final ColdSpill coldSpill() {
    return spill;
  }

  @Override
  public double bytesFetched() {
    return spill == null ? -1 : spill.bytesFetched();
  }

  @Override
  public void close() {
    if (spill != null) {
      spill.close();
    }
  }

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
    prefilling = n != 1 || cache.promptTokens() < 0;
    if (prefilling) {
      if (spill != null) {
        PagedLayerKv paged = cache.paged(layer);
        for (int g = 0; g < paged.kvHeads(); g++) {
          spill.fetchAll(paged.head(g)); // a later prefill attends over everything
        }
      }
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
    if (spill != null) {
      spill.name(paged, layer);
    }
    for (int g = 0; g < kvHeads; g++) {
      S st = state(layer, g);
      if (spill != null && readsAll(st, paged.size(g))) {
        spill.fetchAll(paged.head(g));
      }
      recall(paged, g, st, q, g * group, group, scale);
      if (spill != null) {
        spill.sync(paged.head(g), paged.nextAttention(g), resident(st, paged.size(g)));
      }
    }
  }

  /**
   * After a layer's attention, the blocks fetched for it go cold again ({@link ColdSpill#release});
   * in a prefill step its settled blocks spill too ({@link ColdSpill#spillSettled}).
   */
  @Override
  public void afterAttention(ManagedKvCache cache, int layer) {
    if (spill != null) {
      spill.release();
    }
    if (spill != null && prefilling && layer < layers.length && layers[layer]) {
      PagedLayerKv paged = cache.paged(layer);
      spill.name(paged, layer);
      for (int g = 0; g < paged.kvHeads(); g++) {
        spill.spillSettled(paged.head(g));
      }
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
    if (spill != null) {
      spill.afterStep(kind);
    }
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
