package io.kvslim.kv.policy;

import io.kvslim.kv.ContextReplay;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.method.Budget;
import java.util.Arrays;
import java.util.BitSet;

/**
 * ALISA (Zhao, Wu and Wang 2024, "ALISA: Accelerating Large Language Model Inference via
 * Sparsity-Aware KV Caching", arXiv:2403.17312; METHODS.md H2), on a single-tier CPU cache.
 *
 * <p><b>Sparse Window Attention.</b> Every token's score is the attention it has received, summed
 * over every query so far, prompt rows included (the query heads of a KV head summed, which ranks
 * as their mean: {@link HeadScores}, as {@link H2oPolicy}), multiplied by {@code decay} after each
 * decode step (1: H2O's plain sums). After each step each (layer, KV head) keeps a locally static
 * window, the {@code local} most recent tokens, plus the globally dynamic tokens: the highest
 * scores among every older token, retained or evicted, so that a token once evicted can be chosen
 * again. An evicted token's score is frozen at eviction (it receives no attention while out of the
 * cache, as in the paper, where SWA attends only to the selected tokens).
 *
 * <p><b>Caching vs recomputation.</b> The retained tokens are the hot tier and hold at most the
 * budget's capacity per head. An evicted prompt token keeps only its id (4 bytes) and its frozen
 * score; its key and value are dropped. When SWA selects evicted tokens (misses), the scheduler
 * either recomputes them or leaves them out for this step. Recomputing replays the prompt's tokens
 * up to the latest missed one through the model ({@link ContextReplay#forward}, lent by the engine
 * after the prompt) into a full-attention F32 cache of the policy's own ({@link AlisaRecompute}),
 * and appends the missed tokens' rows back into their heads (in the cache's format); one pass
 * serves every layer and head. The scheduler recomputes when its credit, {@code recompute} tokens
 * per decode step, covers the pass; otherwise the step keeps the best retained tokens (H2O's rule).
 * Each step is counted in one phase: I (nothing evicted yet, all cached), II (over the budget:
 * unselected KV dropped, misses left out) or III (misses recomputed), with the tokens the passes
 * replayed ({@link #stats}).
 *
 * <p><b>Unverified knobs and departures.</b> No public code of the authors was found (searched the
 * code, pages and issue corpora for ALISA and its title); the paper's abstract is the source. The
 * 1:1 split between window and global tokens ({@code local = 0.5}), the scoring by accumulated
 * attention over all queries, the decay, the frozen score of evicted tokens and the credit rule are
 * reconstructions. With plain sums ({@code decay = 1}) a retained token's score only grows, so an
 * evicted token (the lowest when it left) is never selected again and nothing is recomputed: the
 * policy is then H2O over an INT8 cache; the decay is what lets SWA's selection change its mind.
 * The paper's phase II offloads KV to CPU memory and fetches it back; a single-tier engine has no
 * slower tier to spill to within the byte budget, so phase II here drops the KV and keeps the ids.
 * Recomputed KV comes from a full-attention F32 pass, so it can differ from what the INT8 prefill
 * stored by the INT8 error of the earlier layers' keys and values. Generated tokens' ids are not
 * seen by policies, so an evicted generated token is dropped for good.
 */
public final class AlisaPolicy implements KvPolicy {
  /** What the scheduler did, summed over the sequence so far. */
  public record Stats(
      int phase1Steps,
      int phase2Steps,
      int phase3Steps,
      long recomputedTokens,
      long restoredEntries,
      long missedEntries) {
    /** Tokens replayed per decode step, on average over every decode step. */
    public double recomputedPerStep() {
      int steps = phase1Steps + phase2Steps + phase3Steps;
      return steps == 0 ? 0 : recomputedTokens / (double) steps;
    }
  }

  private final boolean[] layers;
  private final Budget budget;
  private final double localShare;
  private final double recomputePerStep;
  private final float decay;
  private final double bytesPerToken;
  private HeadScores scores;
  private int capacity = -1;
  private int local;
  private int[] prompt; // the prompt's ids, for recomputation; null until lent
  private int firstPosition;
  private ContextReplay replay;
  private boolean replayAsked;
  private double credit;
  private int[][][] coldPositions; // [layer][kvHead][i] evicted prompt tokens, ascending positions
  private float[][][] coldScores;
  private int[][] coldCount;
  private int phase1;
  private int phase2;
  private int phase3;
  private long recomputed;
  private long restored;
  private long missed;

  /**
   * @param localShare share of the capacity kept as the recent window
   * @param recomputePerStep tokens the scheduler may replay per decode step, on average (0: never)
   * @param decay factor on every retained token's score after each decode step (1: plain sums)
   */
  public AlisaPolicy(
      boolean[] layers,
      Budget budget,
      double localShare,
      double recomputePerStep,
      double decay,
      double bytesPerTokenAll) {
    this.layers = layers;
    this.budget = budget;
    this.localShare = localShare;
    this.recomputePerStep = recomputePerStep;
    this.decay = (float) decay;
    this.bytesPerToken = bytesPerTokenAll;
  }

  /** Tokens kept per (layer, KV head); known once the prompt length is, -1 before. */
  public int capacity() {
    return capacity;
  }

  /** Recent tokens always kept per (layer, KV head); known with {@link #capacity}. */
  public int local() {
    return local;
  }

  public Stats stats() {
    return new Stats(phase1, phase2, phase3, recomputed, restored, missed);
  }

  /** Positions of the evicted prompt tokens of one head that can be recomputed, ascending. */
  public int[] coldPositions(int layer, int kvHead) {
    return coldPositions == null
        ? new int[0]
        : Arrays.copyOf(coldPositions[layer][kvHead], coldCount[layer][kvHead]);
  }

  /** Frozen scores of {@link #coldPositions}, in the same order. */
  public float[] coldScores(int layer, int kvHead) {
    return coldScores == null
        ? new float[0]
        : Arrays.copyOf(coldScores[layer][kvHead], coldCount[layer][kvHead]);
  }

  /** The accumulated scores of one head's retained tokens, in retained order. */
  public float[] hotScores(int layer, int kvHead, int size) {
    return scores == null ? new float[size] : Arrays.copyOf(scores.of(layer, kvHead), size);
  }

  @Override
  public boolean observes(int layer) {
    return layers[layer];
  }

  @Override
  public void observe(
      ManagedKvCache cache,
      int layer,
      int queryIndex,
      int head,
      int kvHead,
      float[] probs,
      int count) {
    if (scores == null) {
      scores = new HeadScores(layers.length, cache.paged(0).kvHeads());
    }
    scores.add(layer, kvHead, probs, count, 1f);
  }

  @Override
  public boolean wantsReplay() {
    return !replayAsked && recomputePerStep > 0;
  }

  /**
   * Keeps the prompt's ids and the engine's passes for the recomputations of later steps: {@link
   * #afterStep} runs them after a decode step's forward pass has returned its logits, which is when
   * the engine's scratch buffers may be overwritten ({@link ContextReplay#forward}).
   */
  @Override
  public void replay(ManagedKvCache cache, ContextReplay r) {
    replayAsked = true;
    this.replay = r;
    this.prompt = r.prompt();
    this.firstPosition = r.firstPosition();
  }

  @Override
  public void afterStep(ManagedKvCache cache, KvCache.StepKind kind) {
    if (capacity < 0) {
      capacity = Math.max(2, budget.tokens(cache.promptTokens(), bytesPerToken));
      local = Math.min(capacity - 1, (int) Math.round(capacity * localShare));
      int kvHeads = cache.paged(0).kvHeads();
      coldPositions = new int[layers.length][kvHeads][0];
      coldScores = new float[layers.length][kvHeads][0];
      coldCount = new int[layers.length][kvHeads];
    }
    if (kind == KvCache.StepKind.DECODE && decay != 1f && scores != null) {
      for (int l = 0; l < layers.length; l++) {
        if (layers[l]) {
          for (int g = 0; g < cache.paged(l).kvHeads(); g++) {
            scores.scale(l, g, cache.paged(l).size(g), decay);
          }
        }
      }
    }
    if (kind == KvCache.StepKind.DECODE && recomputePerStep > 0) {
      credit = Math.min(credit + recomputePerStep, Math.max(recomputePerStep, promptLength()));
    }
    Plan[][] plans = new Plan[layers.length][];
    boolean over = false;
    int misses = 0;
    int latest = -1;
    for (int l = 0; l < layers.length; l++) {
      if (!layers[l]) {
        continue;
      }
      PagedLayerKv layer = cache.paged(l);
      plans[l] = new Plan[layer.kvHeads()];
      for (int g = 0; g < layer.kvHeads(); g++) {
        Plan p = plan(layer, l, g);
        plans[l][g] = p;
        if (p != null) {
          over = true;
          misses += p.missCount;
          for (int i = 0; i < p.missCount; i++) {
            latest = Math.max(latest, p.missPositions[i]);
          }
        }
      }
    }
    int cost = latest < 0 ? 0 : latest - firstPosition + 1;
    boolean recompute = misses > 0 && replay != null && recomputePerStep > 0 && credit >= cost;
    AlisaRecompute pass = null;
    if (recompute) {
      pass = new AlisaRecompute(cache.layerCount(), cache.paged(0).kvHeads(), headDim(cache));
      replay.forward(pass, prompt, cost, firstPosition);
      credit -= cost;
      recomputed += cost;
      restored += misses;
    } else {
      missed += misses;
    }
    if (kind == KvCache.StepKind.DECODE) {
      if (recompute) {
        phase3++;
      } else if (over) {
        phase2++;
      } else {
        phase1++;
      }
    }
    for (int l = 0; l < layers.length; l++) {
      if (plans[l] == null) {
        continue;
      }
      for (int g = 0; g < plans[l].length; g++) {
        if (plans[l][g] != null) {
          apply(cache.paged(l), l, g, plans[l][g], pass);
        }
      }
    }
  }

  private static int headDim(ManagedKvCache cache) {
    return cache.paged(0).headDim();
  }

  private int promptLength() {
    return prompt == null ? 0 : prompt.length;
  }

  /**
   * SWA's selection for one head, or null when it holds no more than the capacity and has nothing
   * evicted: the retained tokens it drops with and without recomputation, and the evicted tokens it
   * selects (misses).
   */
  private Plan plan(PagedLayerKv layer, int l, int g) {
    int size = layer.size(g);
    int cold = coldCount[l][g];
    if (size <= capacity && cold == 0) {
      return null;
    }
    int[] pos = layer.positions(g);
    float[] s = scores == null ? new float[size] : scores.of(l, g);
    int newest = -1;
    for (int p : pos) {
      newest = Math.max(newest, p);
    }
    int windowFrom = newest - local + 1; // the window: the local most recent positions
    // the candidates (retained outside the window, then evicted) in position order
    int hot = 0;
    for (int p : pos) {
      hot += p < windowFrom ? 1 : 0;
    }
    int window = size - hot;
    int keep = Math.max(0, capacity - window);
    long[] order = new long[hot + cold];
    int m = 0;
    for (int i = 0; i < size; i++) {
      if (pos[i] < windowFrom) {
        order[m++] = ((long) pos[i] << 32) | i; // retained: its index
      }
    }
    for (int c = 0; c < cold; c++) {
      order[m++] = ((long) coldPositions[l][g][c] << 32) | (0x80000000L | c); // evicted
    }
    Arrays.sort(order);
    float[] cand = new float[m];
    for (int j = 0; j < m; j++) {
      int tag = (int) order[j];
      cand[j] = tag < 0 ? coldScores[l][g][tag & 0x7fffffff] : s[tag];
    }
    BitSet chosen = new BitSet(m);
    Selection.highest(cand, 0, m, keep, chosen);
    Plan p = new Plan();
    p.evictWith = new BitSet(size);
    p.missPositions = new int[Math.min(cold, keep)];
    p.missCold = new int[p.missPositions.length];
    float[] hotCand = new float[hot];
    int[] hotIndex = new int[hot];
    int h = 0;
    for (int j = 0; j < m; j++) {
      int tag = (int) order[j];
      if (tag < 0) {
        if (chosen.get(j)) {
          p.missPositions[p.missCount] = (int) (order[j] >>> 32);
          p.missCold[p.missCount++] = tag & 0x7fffffff;
        }
      } else {
        if (!chosen.get(j)) {
          p.evictWith.set(tag);
        }
        hotCand[h] = s[tag];
        hotIndex[h++] = tag;
      }
    }
    // without recomputation: the best retained tokens (H2O's rule over the retained ones)
    p.evictWithout = new BitSet(size);
    if (size > capacity) {
      BitSet kept = new BitSet(hot);
      Selection.highest(hotCand, 0, hot, keep, kept);
      for (int j = kept.nextClearBit(0); j < hot; j = kept.nextClearBit(j + 1)) {
        p.evictWithout.set(hotIndex[j]);
      }
    }
    p.positions = pos;
    return p;
  }

  /** Evicts, keeps the evicted prompt tokens' ids and scores, and brings recomputed misses back. */
  private void apply(PagedLayerKv layer, int l, int g, Plan p, AlisaRecompute pass) {
    BitSet evict = pass != null ? p.evictWith : p.evictWithout;
    int size = p.positions.length;
    float[] s = scores == null ? new float[size] : scores.of(l, g);
    // the cold list after this step: minus the recomputed misses, plus the evicted prompt tokens
    BitSet back = new BitSet();
    if (pass != null) {
      for (int i = 0; i < p.missCount; i++) {
        back.set(p.missCold[i]);
      }
    }
    int cold = coldCount[l][g];
    int promptEnd = firstPosition + promptLength();
    int room = cold + evict.cardinality();
    int[] np = new int[room];
    float[] ns = new float[room];
    int n = 0;
    for (int c = 0; c < cold; c++) {
      if (!back.get(c)) {
        np[n] = coldPositions[l][g][c];
        ns[n++] = coldScores[l][g][c];
      }
    }
    for (int i = evict.nextSetBit(0); i >= 0; i = evict.nextSetBit(i + 1)) {
      int q = p.positions[i];
      if (prompt != null && q >= firstPosition && q < promptEnd) {
        np[n] = q; // recomputable: its id is kept
        ns[n++] = s[i];
      }
    }
    sortByPosition(np, ns, n);
    float[] backScores = new float[p.missCount];
    for (int i = 0; i < p.missCount && pass != null; i++) {
      backScores[i] = coldScores[l][g][p.missCold[i]];
    }
    coldPositions[l][g] = np;
    coldScores[l][g] = ns;
    coldCount[l][g] = n;
    if (!evict.isEmpty()) {
      layer.evict(g, evict);
      if (scores != null) {
        scores.evict(l, g, evict, size);
      }
    }
    if (pass == null || p.missCount == 0) {
      return;
    }
    int d = layer.headDim();
    float[] k = new float[p.missCount * d];
    float[] v = new float[p.missCount * d];
    for (int i = 0; i < p.missCount; i++) {
      pass.copyRow(l, g, p.missPositions[i] - firstPosition, k, v, i);
    }
    int at = layer.size(g);
    layer.appendHead(g, p.missCount, p.missPositions, k, v);
    if (scores == null) {
      scores = new HeadScores(layers.length, layer.kvHeads());
    }
    for (int i = 0; i < p.missCount; i++) {
      scores.put(l, g, at + i, backScores[i]);
    }
  }

  private static void sortByPosition(int[] pos, float[] s, int n) {
    long[] keyed = new long[n];
    for (int i = 0; i < n; i++) {
      keyed[i] = ((long) pos[i] << 32) | i;
    }
    Arrays.sort(keyed);
    int[] p2 = new int[n];
    float[] s2 = new float[n];
    for (int i = 0; i < n; i++) {
      int j = (int) keyed[i];
      p2[i] = pos[j];
      s2[i] = s[j];
    }
    System.arraycopy(p2, 0, pos, 0, n);
    System.arraycopy(s2, 0, s, 0, n);
  }

  /** One head's selection for a step. */
  private static final class Plan {
    int[] positions; // retained positions before the step's eviction
    BitSet evictWith; // retained indices dropped when the misses come back
    BitSet evictWithout; // retained indices dropped when they do not
    int[] missPositions; // evicted tokens SWA selects, ascending positions
    int[] missCold; // their indices in the cold list
    int missCount;
  }
}
