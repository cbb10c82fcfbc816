package io.kvslim.kv.policy;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.method.Budget;
import io.kvslim.kv.store.HeadStore;
import java.util.Arrays;
import java.util.BitSet;

/**
 * SnapKV (Li et al. 2024, "SnapKV: LLM Knows What You are Looking for Before Generation",
 * arXiv:2404.14469 §4.2) and its budget variants, once after prefill: the last {@code window}
 * prompt queries vote with their attention over the earlier tokens (mean over window rows and over
 * the query heads of a KV head), votes are pooled along tokens (kernel k, zero padding counted as
 * in the reference), and each KV head keeps its top-voted prefix tokens plus the window. Budgets:
 *
 * <ul>
 *   <li>{@link Allocation#UNIFORM}: every (layer, head) keeps {@code budget} tokens (SnapKV).
 *   <li>{@link Allocation#PYRAMID}: PyramidKV (Cai et al. 2024, arXiv:2406.02069 §3.2): layer l
 *       keeps {@code max − l·⌊(max − min)/(L−1)⌋} prefix tokens, min = ⌊B̄/β⌋, max = 2B̄ − min.
 *   <li>{@link Allocation#ADAPTIVE}: Ada-KV (Feng et al. 2024, arXiv:2407.11550 Alg. 1): within a
 *       layer, a global top-k over all heads' votes decides each head's share, with a floor of α of
 *       the base budget; heads then really hold different numbers of tokens.
 * </ul>
 */
public final class SnapKvPolicy implements ChunkedPrefill.Compressor {
  /** How the token budget is spread over layers and heads. */
  public enum Allocation {
    UNIFORM,
    PYRAMID,
    ADAPTIVE
  }

  private final boolean[] layers;
  private final Budget budget;
  private final int window;
  private final int kernel;
  private final boolean maxPool;
  private final Allocation allocation;
  private final double beta;
  private final double alpha;
  private final double bytesPerToken;
  private final LayerAllocator allocator; // per-layer budgets (ZigZagKV, ...), null for none
  private final float[][] windowQueries; // per layer: last `window` rows, heads × headDim each
  private final int[][] windowPositions;
  private final int[] windowRows;
  private int heads;
  private int headDim;
  private float scale;
  private boolean done;

  public SnapKvPolicy(
      boolean[] layers,
      Budget budget,
      int window,
      int kernel,
      boolean maxPool,
      Allocation allocation,
      double beta,
      double alpha,
      double bytesPerTokenAll) {
    this(layers, budget, window, kernel, maxPool, allocation, beta, alpha, bytesPerTokenAll, null);
  }

  /**
   * As above, with the per-layer budgets of {@code allocator} (null for none) instead of the
   * allocation's layer rule; heads within a layer still follow {@code allocation}.
   */
  public SnapKvPolicy(
      boolean[] layers,
      Budget budget,
      int window,
      int kernel,
      boolean maxPool,
      Allocation allocation,
      double beta,
      double alpha,
      double bytesPerTokenAll,
      LayerAllocator allocator) {
    this.allocator = allocator;
    this.layers = layers;
    this.budget = budget;
    this.window = window;
    this.kernel = kernel;
    this.maxPool = maxPool;
    this.allocation = allocation;
    this.beta = beta;
    this.alpha = alpha;
    this.bytesPerToken = bytesPerTokenAll;
    this.windowQueries = new float[layers.length][];
    this.windowPositions = new int[layers.length][window];
    this.windowRows = new int[layers.length];
  }

  @Override
  public boolean wantsQueries(int layer) {
    return layers[layer] && !done;
  }

  @Override
  public boolean wantsAttentionOutput(int layer) {
    return allocator != null && layers[layer] && !done && allocator.wantsAttentionOutput(layer);
  }

  @Override
  public void onAttentionOutput(
      ManagedKvCache cache, int layer, int rows, int dim, float[] x, float[] out) {
    allocator.onAttentionOutput(layer, rows, dim, x, out);
  }

  @Override
  public void onQueries(
      ManagedKvCache cache, int layer, int n, int[] positions, int heads, float[] q, float scale) {
    this.heads = heads;
    this.headDim = cache.paged(layer).headDim();
    this.scale = scale;
    int rowLen = heads * headDim;
    if (windowQueries[layer] == null) {
      windowQueries[layer] = new float[window * rowLen];
    }
    float[] buf = windowQueries[layer];
    int[] pos = windowPositions[layer];
    // keep the last `window` rows: shift old ones out, copy the newest in
    int take = Math.min(n, window);
    int keepOld = Math.min(windowRows[layer], window - take);
    if (keepOld > 0) {
      int from = windowRows[layer] - keepOld;
      System.arraycopy(buf, from * rowLen, buf, 0, keepOld * rowLen);
      System.arraycopy(pos, from, pos, 0, keepOld);
    }
    System.arraycopy(q, (n - take) * rowLen, buf, keepOld * rowLen, take * rowLen);
    System.arraycopy(positions, n - take, pos, keepOld, take);
    windowRows[layer] = keepOld + take;
  }

  @Override
  public void afterStep(ManagedKvCache cache, KvCache.StepKind kind) {
    if (done || kind != KvCache.StepKind.PREFILL) {
      return;
    }
    done = true;
    int n = cache.promptTokens();
    int total = budget.tokens(n, bytesPerToken);
    int scoped = 0;
    for (boolean b : layers) {
      scoped += b ? 1 : 0;
    }
    if (allocator != null) {
      allocateAndCompress(cache, total, scoped);
      return;
    }
    int li = 0;
    for (int l = 0; l < layers.length; l++) {
      if (!layers[l]) {
        continue;
      }
      int prefixBudget = layerPrefixBudget(total, n, li++, scoped);
      PagedLayerKv layer = cache.paged(l);
      if (evicts(layer, l, prefixBudget)) {
        compressLayer(layer, l, prefixBudget, windowVotes(layer, l));
      }
      windowQueries[l] = null;
    }
  }

  /** Every scoped layer's votes first, then the allocator's budgets, then the evictions. */
  private void allocateAndCompress(ManagedKvCache cache, int total, int scoped) {
    LayerAllocator.LayerVotes[] votes = new LayerAllocator.LayerVotes[scoped];
    int li = 0;
    for (int l = 0; l < layers.length; l++) {
      if (layers[l]) {
        PagedLayerKv layer = cache.paged(l);
        boolean any = windowQueries[l] != null && prefixOf(layer, l) > 0;
        votes[li++] =
            new LayerAllocator.LayerVotes(
                l, any ? windowVotes(layer, l) : new float[layer.kvHeads()][0]);
      }
    }
    int[] budgets = allocator.allocate(votes, (long) scoped * Math.max(0, total - window));
    for (int i = 0; i < scoped; i++) {
      int l = votes[i].layer();
      PagedLayerKv layer = cache.paged(l);
      if (evicts(layer, l, budgets[i])) {
        compressLayer(layer, l, budgets[i], votes[i].votes());
      }
      windowQueries[l] = null;
    }
  }

  /** The most prefix tokens (window excluded) a head of the layer holds. */
  private int prefixOf(PagedLayerKv layer, int l) {
    int most = 0;
    for (int g = 0; g < layer.kvHeads(); g++) {
      most = Math.max(most, layer.size(g));
    }
    return most - Math.min(window, windowRows[l]);
  }

  private boolean evicts(PagedLayerKv layer, int l, int prefixBudget) {
    return windowQueries[l] != null && prefixOf(layer, l) > prefixBudget;
  }

  @Override
  public void compressLayer(ManagedKvCache cache, int layer, int promptTokens) {
    if (!layers[layer] || windowQueries[layer] == null) {
      return;
    }
    int scoped = 0;
    int li = 0;
    for (int l = 0; l < layers.length; l++) {
      scoped += layers[l] ? 1 : 0;
      li += layers[l] && l < layer ? 1 : 0;
    }
    int total = budget.tokens(promptTokens, bytesPerToken);
    int prefixBudget = layerPrefixBudget(total, promptTokens, li, scoped);
    PagedLayerKv paged = cache.paged(layer);
    if (evicts(paged, layer, prefixBudget)) {
      compressLayer(paged, layer, prefixBudget, windowVotes(paged, layer));
    }
  }

  /** Prefix tokens (window excluded) each head of the li-th scoped layer keeps on average. */
  int layerPrefixBudget(int total, int n, int li, int scopedLayers) {
    int avg = Math.max(0, total - window);
    if (allocation != Allocation.PYRAMID || scopedLayers < 2 || n < 2 * avg) {
      return avg;
    }
    int min = (int) Math.floor(avg / beta);
    int max = 2 * avg - min;
    if (max >= n - window) {
      max = n - window;
      min = 2 * avg - max;
    }
    return Math.max(0, max - li * ((max - min) / (scopedLayers - 1)));
  }

  /**
   * The pooled window votes of each KV head of {@code layer} on its prefix tokens (the window
   * excluded), without evicting anything, or {@code null} when no query of the layer was seen: the
   * token scores of the adaptive controller ({@link AutoPolicy}), which forwards its queries here.
   */
  public float[][] pooledVotes(ManagedKvCache cache, int layer) {
    if (windowQueries[layer] == null) {
      return null;
    }
    float[][] votes = windowVotes(cache.paged(layer), layer);
    for (int g = 0; g < votes.length; g++) {
      votes[g] = pool(votes[g]);
    }
    return votes;
  }

  /** Each KV head's mean window attention on each prefix token (before pooling). */
  private float[][] windowVotes(PagedLayerKv layer, int l) {
    int kvHeads = layer.kvHeads();
    int w = Math.min(window, windowRows[l]);
    float[][] votes = new float[kvHeads][];
    for (int g = 0; g < kvHeads; g++) {
      // heads hold equal counts, except after an Ada-KV compression inside a chunked prefill
      votes[g] = windowVotes(layer.store().head(g), l, g, kvHeads, w, layer.size(g) - w);
    }
    return votes;
  }

  private void compressLayer(PagedLayerKv layer, int l, int prefixBudget, float[][] raw) {
    int kvHeads = layer.kvHeads();
    int[] prefix = new int[kvHeads];
    float[][] votes = new float[kvHeads][];
    for (int g = 0; g < kvHeads; g++) {
      prefix[g] = raw[g].length;
      votes[g] = pool(raw[g]);
    }
    int[] keep = new int[kvHeads];
    if (allocation == Allocation.ADAPTIVE) {
      adaptiveBudgets(votes, prefixBudget, alpha, keep);
    } else {
      Arrays.fill(keep, prefixBudget);
    }
    BitSet evict = new BitSet();
    BitSet kept = new BitSet();
    for (int g = 0; g < kvHeads; g++) {
      if (prefix[g] <= keep[g]) {
        continue;
      }
      kept.clear();
      Selection.highest(votes[g], 0, prefix[g], keep[g], kept);
      evict.clear();
      evict.set(0, prefix[g]);
      evict.andNot(kept);
      layer.evict(g, evict);
    }
  }

  /** Mean attention of the window rows (and the KV head's query heads) on each prefix token. */
  private float[] windowVotes(HeadStore head, int l, int g, int kvHeads, int w, int prefix) {
    int n = head.size();
    float[] keys = new float[n * headDim];
    int[] pos = new int[n];
    head.readKeys(keys);
    head.positions(pos);
    int group = heads / kvHeads;
    float[] votes = new float[prefix];
    float[] logits = new float[n];
    float[] q = windowQueries[l];
    int rowLen = heads * headDim;
    int first = windowRows[l] - w;
    for (int r = first; r < windowRows[l]; r++) {
      int p = windowPositions[l][r];
      for (int h = g * group; h < (g + 1) * group; h++) {
        int qOff = r * rowLen + h * headDim;
        float max = Float.NEGATIVE_INFINITY;
        for (int j = 0; j < n; j++) {
          if (pos[j] > p) {
            logits[j] = Float.NEGATIVE_INFINITY;
            continue;
          }
          float dot = 0f;
          for (int d = 0; d < headDim; d++) {
            dot += q[qOff + d] * keys[j * headDim + d];
          }
          logits[j] = dot * scale;
          max = Math.max(max, logits[j]);
        }
        double sum = 0;
        for (int j = 0; j < n; j++) {
          sum += logits[j] == Float.NEGATIVE_INFINITY ? 0 : Math.exp(logits[j] - max);
        }
        for (int j = 0; j < prefix; j++) {
          if (logits[j] != Float.NEGATIVE_INFINITY) {
            votes[j] += (float) (Math.exp(logits[j] - max) / sum);
          }
        }
      }
    }
    float norm = 1f / (w * group);
    for (int j = 0; j < prefix; j++) {
      votes[j] *= norm;
    }
    return votes;
  }

  /** 1-D pooling with stride 1 and zero padding ⌊k/2⌋; average pooling divides by k. */
  float[] pool(float[] v) {
    if (kernel <= 1) {
      return v;
    }
    int half = kernel / 2;
    float[] out = new float[v.length];
    for (int i = 0; i < v.length; i++) {
      float acc = maxPool ? Float.NEGATIVE_INFINITY : 0f;
      for (int j = i - half; j <= i + half; j++) {
        float x = j >= 0 && j < v.length ? v[j] : 0f;
        acc = maxPool ? Math.max(acc, x) : acc + x;
      }
      out[i] = maxPool ? acc : acc / kernel;
    }
    return out;
  }

  /**
   * Ada-KV's head budgets (FFY0/AdaKV @efe4e2e, {@code adaptive_snapkv/monkeypatch/snapkv_utils.py}
   * lines 452–460): a global top-(G·B) over all heads' votes gives head g a count c_g, and its
   * budget is {@code round(c_g·(1−α) + ⌊αB⌋)}, computed as the reference computes it: in float32,
   * rounded half to even ({@code torch.round}). Rounding up can take the layer past its G·B tokens,
   * by up to G/2 (the reference asserts the sum only before rounding, line 459); here the heads
   * that rounded up the most (the lowest index first among equals) then give back one token each
   * until the layer is within G·B. No head keeps more than the {@code prefix} tokens it has.
   */
  static void adaptiveBudgets(float[][] votes, int prefix, int base, double alpha, int[] keep) {
    for (float[] v : votes) {
      if (v.length != prefix) {
        throw new IllegalArgumentException("votes of " + v.length + " tokens, not " + prefix);
      }
    }
    adaptiveBudgets(votes, base, alpha, keep);
  }

  /**
   * As above, head h's prefix being {@code votes[h].length} tokens (heads differ after a
   * compression inside a chunked prefill); with equal lengths it is the reference's allocation.
   */
  static void adaptiveBudgets(float[][] votes, int base, double alpha, int[] keep) {
    int g = votes.length;
    int[] off = new int[g + 1];
    for (int h = 0; h < g; h++) {
      off[h + 1] = off[h] + votes[h].length;
    }
    float[] flat = new float[off[g]];
    for (int h = 0; h < g; h++) {
      System.arraycopy(votes[h], 0, flat, off[h], votes[h].length);
    }
    BitSet top = new BitSet();
    Selection.highest(flat, 0, flat.length, g * base, top);
    int floor = (int) Math.floor(alpha * base);
    float share = (float) (1 - alpha);
    float[] exact = new float[g];
    long total = 0;
    for (int h = 0; h < g; h++) {
      int c = top.get(off[h], off[h + 1]).cardinality();
      exact[h] = (float) c * share + (float) floor;
      keep[h] = Math.min(votes[h].length, (int) Math.rint(exact[h]));
      total += keep[h];
    }
    for (; total > (long) g * base; total--) {
      int most = -1;
      for (int h = 0; h < g; h++) {
        if (keep[h] > 0 && (most < 0 || keep[h] - exact[h] > keep[most] - exact[most])) {
          most = h;
        }
      }
      keep[most]--;
    }
  }
}
