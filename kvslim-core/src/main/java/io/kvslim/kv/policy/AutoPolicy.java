package io.kvslim.kv.policy;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.format.KvFormat;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.method.Budget;
import io.kvslim.kv.method.KvSpecException;
import io.kvslim.kv.method.NearestKey;
import io.kvslim.kv.store.EntryWeights;
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
 *   <li>With {@code merge}, the tokens a head lets go are not dropped but merged the way EMS does
 *       (METHODS.md M7, M2; {@link io.kvslim.kv.method.EmsMethod}): each joins the kept token
 *       outside the window (inside it if none is kept outside) whose key has the highest cosine
 *       with its own ({@link NearestKey}), that entry becoming the mean of the keys and values it
 *       stands for weighted by their scores (EMS weights by its Global-Local score, here SnapKV's
 *       votes; by entry weight when a member was never voted on, a token after the prompt), with
 *       the sum of their weights (an entry of weight w counts as w copies in attention). Merged
 *       entries keep their position; their score is the sum of the scores merged.
 * </ul>
 *
 * A budget at least the full F32 cache's bytes changes nothing: the cache is then the full cache.
 */
public final class AutoPolicy implements KvPolicy {
  /** A format level: the formats of a head's keys and values, named for profiles and tables. */
  public record Level(String name, KvFormat keys, KvFormat values) {
    static Level of(KvFormat f) {
      return new Level(f.name(), f, f);
    }
  }

  /**
   * The format levels a head can be stored at, fewest bytes last (strictly fewer each): ggml's
   * formats, and q8_0 or q4_0 keys with KIVI's per-token values (Liu et al. 2024, arXiv:2402.02750
   * §3.3: 4 or 2 bits per element, fp16 scale and zero point per 32 channels). KIVI's per-channel
   * keys are not a level: their groups would be this store's 8-token blocks, whose per-channel
   * scales cost as many bytes as q4_0's keys at 2 bits, and evicting a token from such a block
   * frees nothing.
   */
  public static final List<Level> LEVELS =
      List.of(
          Level.of(KvFormats.F32),
          Level.of(KvFormats.F16),
          Level.of(KvFormats.Q8_0),
          new Level("q8_0/kivi_v4", KvFormats.Q8_0, KvFormats.byName("kivi_v4_g32")),
          Level.of(KvFormats.Q5_0),
          Level.of(KvFormats.Q4_0),
          new Level("q4_0/kivi_v2", KvFormats.Q4_0, KvFormats.byName("kivi_v2_g32")));

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
  private final boolean merge;
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
   * @param merge whether evicted tokens merge into their nearest kept token (else they are dropped)
   */
  public AutoPolicy(
      String label,
      boolean[] layers,
      int kvHeads,
      int headDim,
      AutoPlanner.Head[][] curves,
      IntToLongFunction budget,
      boolean hard,
      boolean merge,
      Fixed fixed,
      int window) {
    this.label = label;
    this.layers = layers;
    this.curves = curves;
    this.budget = budget;
    this.fixed = fixed;
    this.hard = hard;
    this.merge = merge;
    this.window = window;
    this.tokenBytes = tokenBytes(headDim, merge);
    this.voter =
        new SnapKvPolicy(
            layers, Budget.parse("1"), window, 5, false, SnapKvPolicy.Allocation.UNIFORM, 1, 0, 0);
    this.level = new int[layers.length][kvHeads];
    this.scores = new float[layers.length][kvHeads][];
  }

  /**
   * Bytes one token of one KV head costs at each level (keys and values, rounded up; with {@code
   * merge}, plus its entry weight, {@link EntryWeights#BYTES_PER_ENTRY}).
   */
  public static long[] tokenBytes(int headDim, boolean merge) {
    long[] out = new long[LEVELS.size()];
    for (int b = 0; b < out.length; b++) {
      Level f = LEVELS.get(b);
      long block = KvBlock.bytesFor(BLOCK_TOKENS, headDim, f.keys(), f.values());
      out[b] =
          (block + BLOCK_TOKENS - 1) / BLOCK_TOKENS + (merge ? EntryWeights.BYTES_PER_ENTRY : 0);
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
    int prefix = Math.max(0, n - window);
    Selection.lowest(scores[l][g], 0, prefix, drop, out);
    float[] s = scores[l][g];
    if (!merge || !mergeInto(layer, g, out, prefix, s)) {
      layer.evict(g, out);
    }
    float[] kept = new float[n - out.cardinality()];
    int j = 0;
    for (int i = 0; i < n; i++) {
      if (!out.get(i)) {
        kept[j++] = s[i];
      }
    }
    scores[l][g] = kept;
  }

  /**
   * Merges the tokens of head g set in {@code out} into their nearest kept token before {@code
   * prefix}, or into the window's tokens when none is kept there (and evicts them); the merged
   * entries' scores in {@code s} become the sums. Returns false, changing nothing, when the head
   * keeps no token at all.
   */
  private static boolean mergeInto(PagedLayerKv layer, int g, BitSet out, int prefix, float[] s) {
    HeadStore head = layer.head(g);
    int n = head.size();
    BitSet kept = new BitSet();
    kept.set(0, prefix);
    kept.andNot(out);
    if (kept.isEmpty()) {
      kept.set(prefix, n); // the whole prefix goes: into the window's tokens
    }
    if (kept.isEmpty()) {
      return false;
    }
    int d = head.headDim();
    float[] keys = new float[n * d];
    float[] values = new float[n * d];
    head.readKeys(keys);
    head.readValues(values);
    int[] target = new int[n];
    float[] cos = new float[n];
    NearestKey.assign(keys, d, kept, out, target, cos);
    EntryWeights w = head.weights();
    int[] next = new int[n]; // members of each target: a list through next, ending at -1
    int[] last = new int[n];
    Arrays.fill(last, -1);
    int count = 0;
    for (int e = out.nextSetBit(0); e >= 0; e = out.nextSetBit(e + 1)) {
      int c = target[e];
      if (c < 0) {
        continue; // a zero key: dropped
      }
      if (last[c] < 0) {
        last[c] = c;
        count++;
      }
      next[last[c]] = e;
      last[c] = e;
      next[e] = -1;
    }
    int[] targets = new int[count];
    float[] mk = new float[count * d];
    float[] mv = new float[count * d];
    float[] mw = new float[count];
    double[] k = new double[d];
    double[] v = new double[d];
    int t = 0;
    for (int c = kept.nextSetBit(0); c >= 0; c = kept.nextSetBit(c + 1)) {
      if (last[c] < 0) {
        continue;
      }
      // EMS weights the mean by score; tokens never voted on (after the prompt) count alike
      double weight = 0;
      double mass = 0;
      boolean voted = true;
      for (int m = c; m >= 0; m = next[m]) {
        weight += w.weight(m);
        mass += s[m];
        voted &= s[m] < Float.MAX_VALUE;
      }
      boolean byScore = voted && mass > 0;
      Arrays.fill(k, 0);
      Arrays.fill(v, 0);
      for (int m = c; m >= 0; m = next[m]) {
        double a = byScore ? s[m] / mass : w.weight(m) / weight;
        for (int j = 0; j < d; j++) {
          k[j] += a * keys[m * d + j];
          v[j] += a * values[m * d + j];
        }
      }
      s[c] = (float) Math.min(Float.MAX_VALUE, mass);
      targets[t] = c;
      mw[t] = (float) weight;
      for (int j = 0; j < d; j++) {
        mk[t * d + j] = (float) k[j];
        mv[t * d + j] = (float) v[j];
      }
      t++;
    }
    layer.merge(g, targets, count, mk, mv, mw, out);
    return true;
  }

  /** Re-encodes every closed block of every head that is not at its head's level. */
  private void convertClosedBlocks(ManagedKvCache cache) {
    for (int l = 0; l < layers.length; l++) {
      if (!layers[l]) {
        continue;
      }
      PagedLayerKv layer = cache.paged(l);
      for (int g = 0; g < layer.kvHeads(); g++) {
        Level target = LEVELS.get(level[l][g]);
        HeadStore head = layer.head(g);
        List<KvBlock> blocks = head.blocks();
        for (int i = 0; i < blocks.size(); i++) {
          KvBlock b = blocks.get(i);
          boolean open = i == blocks.size() - 1 && b.filled() < b.capacity();
          if (!open && (b.keyFormat() != target.keys() || b.valueFormat() != target.values())) {
            layer.store().convertBlock(g, i, target.keys(), target.values());
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
