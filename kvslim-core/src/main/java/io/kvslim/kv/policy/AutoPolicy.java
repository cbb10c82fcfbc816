package io.kvslim.kv.policy;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.format.KvFormat;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.method.Budget;
import io.kvslim.kv.method.KvSpecException;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvBlock;
import io.kvslim.kv.store.KvCacheFormat;
import java.util.Arrays;
import java.util.BitSet;
import java.util.List;
import java.util.Locale;
import java.util.function.IntToLongFunction;

/**
 * The adaptive controller (issue 23 item 4, {@code auto}): per layer and KV head, how many tokens
 * it keeps and at which bit width, chosen by {@link AutoPlanner} from a calibration profile's
 * measured sensitivities so that the cache's bytes stay within a budget after every step.
 *
 * <ul>
 *   <li>Layers are stored in F32 blocks of {@link #BLOCK_TOKENS} tokens; the store keeps a format
 *       per block, so heads really hold different formats: every closed block of a head is
 *       re-encoded ({@link io.kvslim.kv.store.LayerStore#convertBlock}) to the head's level of
 *       {@link #LEVELS}, the open tail block stays F32 until it fills.
 *   <li>Tokens are ranked by SnapKV's pooled window votes (Li et al. 2024, arXiv:2404.14469 §4.2,
 *       {@link SnapKvPolicy#pooledVotes}); the last {@code window} tokens of every head always
 *       stay, and tokens that came after the prompt rank above every voted one, oldest first out.
 *   <li>After the prompt and after every later step whose cache is over the budget, the planner
 *       lowers the least sensitive heads (drop tokens, or one level down) until the estimate fits;
 *       the cache is then measured and, if block rounding left it over, planned again. A sequence
 *       that cannot fit a byte cap even with every head at its window in the lowest level is
 *       refused in one sentence; under a share of the tokens seen (a short sequence) it keeps that
 *       smallest plan.
 * </ul>
 *
 * A budget at least the full F32 cache's bytes changes nothing: the cache is then the full cache.
 */
public final class AutoPolicy implements KvPolicy {
  /** The format levels a head goes through, highest first. */
  public static final List<KvFormat> LEVELS =
      List.of(KvFormats.F32, KvFormats.F16, KvFormats.Q8_0, KvFormats.Q5_0, KvFormats.Q4_0);

  /** Tokens per block: the tail each head holds in F32, and the conversion granule. */
  public static final int BLOCK_TOKENS = 8;

  /** The storage format of every layer the controller covers. */
  public static final KvCacheFormat LAYER_FORMAT =
      KvCacheFormat.of(KvFormats.F32).withBlockTokens(BLOCK_TOKENS);

  /** A fixed choice per (layer, KV head): calibration measures one head at one setting. */
  public record Fixed(double[][] keep, int[][] level) {}

  private final String label;
  private final boolean[] layers;
  private final AutoPlanner.Head[][] curves;
  private final IntToLongFunction budget; // bytes allowed with n tokens seen; null when fixed
  private final Fixed fixed;
  private final boolean hard;
  private final int window;
  private final long[] tokenBytes;
  private SnapKvPolicy voter;
  private final int[][] level;
  private final float[][][] scores;
  private boolean prefilled;

  /**
   * @param label the spec, for messages
   * @param curves per layer and KV head, the measured sensitivities ({@code null} with {@code
   *     fixed})
   * @param budget the bytes the covered layers may hold once {@code n} tokens were seen
   * @param hard whether a sequence the budget cannot hold is refused (a byte cap) or kept at the
   *     smallest plan (a share of the tokens seen, below what a short sequence's windows take)
   */
  public AutoPolicy(
      String label,
      boolean[] layers,
      int kvHeads,
      int headDim,
      AutoPlanner.Head[][] curves,
      IntToLongFunction budget,
      boolean hard,
      Fixed fixed,
      int window) {
    this.label = label;
    this.layers = layers;
    this.curves = curves;
    this.budget = budget;
    this.fixed = fixed;
    this.hard = hard;
    this.window = window;
    this.tokenBytes = tokenBytes(headDim);
    this.voter =
        new SnapKvPolicy(
            layers, Budget.parse("1"), window, 5, false, SnapKvPolicy.Allocation.UNIFORM, 1, 0, 0);
    this.level = new int[layers.length][kvHeads];
    this.scores = new float[layers.length][kvHeads][];
  }

  /** Bytes one token of one KV head costs at each level (keys and values, rounded up). */
  public static long[] tokenBytes(int headDim) {
    long[] out = new long[LEVELS.size()];
    for (int b = 0; b < out.length; b++) {
      KvFormat f = LEVELS.get(b);
      long block = KvBlock.bytesFor(BLOCK_TOKENS, headDim, f, f);
      out[b] = (block + BLOCK_TOKENS - 1) / BLOCK_TOKENS;
    }
    return out;
  }

  @Override
  public boolean wantsQueries(int layer) {
    return !prefilled && voter.wantsQueries(layer);
  }

  @Override
  public void onQueries(
      ManagedKvCache cache, int layer, int n, int[] positions, int heads, float[] q, float scale) {
    voter.onQueries(cache, layer, n, positions, heads, q, scale);
  }

  @Override
  public void afterStep(ManagedKvCache cache, KvCache.StepKind kind) {
    if (!prefilled) {
      prefilled = true;
      scoreThePrompt(cache);
      voter = null;
      if (fixed != null) {
        applyFixed(cache);
      }
    } else {
      syncScores(cache);
    }
    convertClosedBlocks(cache);
    if (budget != null) {
      fit(cache);
    }
  }

  /** The format level of each covered head ({@code [layer][kvHead]}), for the plan table. */
  public int[][] levels() {
    int[][] out = new int[level.length][];
    for (int l = 0; l < level.length; l++) {
      out[l] = level[l].clone();
    }
    return out;
  }

  private void scoreThePrompt(ManagedKvCache cache) {
    for (int l = 0; l < layers.length; l++) {
      if (!layers[l]) {
        continue;
      }
      PagedLayerKv layer = cache.paged(l);
      float[][] votes = voter.pooledVotes(cache, l);
      for (int g = 0; g < layer.kvHeads(); g++) {
        float[] s = new float[layer.size(g)];
        Arrays.fill(s, Float.MAX_VALUE);
        if (votes != null) {
          System.arraycopy(votes[g], 0, s, 0, Math.min(s.length, votes[g].length));
        }
        scores[l][g] = s;
      }
    }
  }

  /** New tokens rank above every voted one; a head another method evicted from restarts. */
  private void syncScores(ManagedKvCache cache) {
    for (int l = 0; l < layers.length; l++) {
      if (!layers[l]) {
        continue;
      }
      PagedLayerKv layer = cache.paged(l);
      for (int g = 0; g < layer.kvHeads(); g++) {
        float[] s = scores[l][g];
        int n = layer.size(g);
        if (s.length != n) {
          float[] grown = new float[n];
          Arrays.fill(grown, Float.MAX_VALUE);
          if (s.length < n) {
            System.arraycopy(s, 0, grown, 0, s.length);
          }
          scores[l][g] = grown;
        }
      }
    }
  }

  private void applyFixed(ManagedKvCache cache) {
    for (int l = 0; l < layers.length; l++) {
      if (!layers[l]) {
        continue;
      }
      PagedLayerKv layer = cache.paged(l);
      for (int g = 0; g < layer.kvHeads(); g++) {
        int n = layer.size(g);
        int prefix = Math.max(0, n - window);
        int keep = (int) Math.round(fixed.keep()[l][g] * prefix);
        evictLowest(layer, l, g, n - (prefix - keep));
        level[l][g] = fixed.level()[l][g];
      }
    }
  }

  /** Cuts head g of layer l to {@code keep} tokens: the lowest-scored outside the window go. */
  private void evictLowest(PagedLayerKv layer, int l, int g, int keep) {
    int n = layer.size(g);
    int drop = n - keep;
    if (drop <= 0) {
      return;
    }
    BitSet out = new BitSet();
    Selection.lowest(scores[l][g], 0, Math.max(0, n - window), drop, out);
    layer.evict(g, out);
    float[] s = scores[l][g];
    float[] kept = new float[n - out.cardinality()];
    int j = 0;
    for (int i = 0; i < n; i++) {
      if (!out.get(i)) {
        kept[j++] = s[i];
      }
    }
    scores[l][g] = kept;
  }

  /** Re-encodes every closed block of every head that is not at its head's level. */
  private void convertClosedBlocks(ManagedKvCache cache) {
    for (int l = 0; l < layers.length; l++) {
      if (!layers[l]) {
        continue;
      }
      PagedLayerKv layer = cache.paged(l);
      for (int g = 0; g < layer.kvHeads(); g++) {
        KvFormat target = LEVELS.get(level[l][g]);
        HeadStore head = layer.head(g);
        List<KvBlock> blocks = head.blocks();
        for (int i = 0; i < blocks.size(); i++) {
          KvBlock b = blocks.get(i);
          boolean open = i == blocks.size() - 1 && b.filled() < b.capacity();
          if (!open && b.keyFormat() != target) {
            layer.store().convertBlock(g, i, target, target);
          }
        }
      }
    }
  }

  private long held(ManagedKvCache cache) {
    long total = 0;
    for (int l = 0; l < layers.length; l++) {
      total += layers[l] ? cache.paged(l).bytes() : 0;
    }
    return total;
  }

  /** Plans, applies and measures until the covered layers hold at most the budget. */
  private void fit(ManagedKvCache cache) {
    int seen = cache.tokens();
    long limit = budget.applyAsLong(seen);
    long held = held(cache);
    for (int round = 0; held > limit; round++) {
      int heads = 0;
      for (int l = 0; l < layers.length; l++) {
        heads += layers[l] ? level[l].length : 0;
      }
      AutoPlanner.Head[] hs = new AutoPlanner.Head[heads];
      int[] tokens = new int[heads];
      int[] floor = new int[heads];
      int[] lv = new int[heads];
      long estimate = 0;
      int h = 0;
      for (int l = 0; l < layers.length; l++) {
        for (int g = 0; layers[l] && g < level[l].length; g++, h++) {
          hs[h] = curves[l][g];
          tokens[h] = cache.paged(l).size(g);
          floor[h] = Math.min(tokens[h], window);
          lv[h] = level[l][g];
          estimate += tokens[h] * tokenBytes[lv[h]];
        }
      }
      boolean fits =
          AutoPlanner.plan(
              hs, tokens, floor, lv, tokenBytes, seen, limit, Math.max(0, held - estimate));
      h = 0;
      for (int l = 0; l < layers.length; l++) {
        for (int g = 0; layers[l] && g < level[l].length; g++, h++) {
          evictLowest(cache.paged(l), l, g, tokens[h]);
          level[l][g] = lv[h];
        }
      }
      convertClosedBlocks(cache);
      held = held(cache);
      if (held > limit && (!fits || round > 64)) {
        if (hard) {
          throw new KvSpecException(impossible(seen, held, limit));
        }
        return; // a share of a short sequence below the smallest plan: the smallest plan
      }
    }
  }

  private String impossible(int seen, long held, long limit) {
    return String.format(
        Locale.ROOT,
        "%s cannot hold %d tokens in %d bytes: with every KV head cut to its %d-token"
            + " window in %s the cache still takes %d bytes",
        label,
        seen,
        limit,
        window,
        LEVELS.get(LEVELS.size() - 1).name(),
        held);
  }
}
