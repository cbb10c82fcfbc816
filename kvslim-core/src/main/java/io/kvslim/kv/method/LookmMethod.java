package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.bool;
import static io.kvslim.kv.method.Knob.budget;
import static io.kvslim.kv.method.Knob.choice;
import static io.kvslim.kv.method.Knob.number;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.PromptSegments;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.policy.HeadScores;
import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.policy.Selection;
import io.kvslim.kv.store.HeadStore;
import java.util.BitSet;
import java.util.List;
import java.util.Set;

/**
 * LOOK-M (Wan et al. 2024, "LOOK-M: Look-Once Optimization in KV Cache for Efficient Multimodal
 * Long-Context Inference", arXiv:2406.18139; METHODS.md H4) for a text model: once after prefill,
 * per (layer, KV head), H2O's accumulated attention ranks the prompt's tokens, tokens outside the
 * priority segments ({@link PromptSegments}: the chat's earlier turns and documents, the paper's
 * image tokens) lose a large bonus so priority tokens are kept first (the paper's text prior), the
 * recent window and the top-scored tokens stay, and every evicted token is merged into the kept
 * token whose key is most cosine-similar. Nothing changes during decoding (look-once). Without
 * labels every token is priority: H2O's one-shot kept set plus merging. {@link Policy} has the
 * algorithm.
 *
 * <p><b>Authors' code</b> ({@code SUSTechBruce/LOOK-M}, {@code
 * LLaVA-mix_merge_v1/llava/model/kv_token_merge/modify_llama.py}): scores {@code hh_score} summed
 * over the prompt's queries ({@code _update_hh_score}, lines 318-328); hh_size and recent_size as
 * ratios of the prompt (lines 261-262); the text prior subtracts 65516 from the image tokens'
 * scores before the top-k (TextPivotMerge_LayerWise, lines 682-687; TextAVGMerge, lines 381-386);
 * cosine of the keys and the best kept token (lines 303-304); the merges: avg (scatter_reduce mean
 * with the kept row included, lines 411-413), pivot ({@code (k_e + k_c)/2} then that mean, lines
 * 305-313) and weighted (lines 607-616). Here the budget is given as in the other methods (tokens
 * kept per head, {@code recent} its share as the window; the authors' hh_ratio = recent_ratio = 0.1
 * is {@code budget=20%,recent=0.5}). Differences, on purpose: the weighted merge follows METHODS.md
 * M7 (ω = (cos + 1)/2, {@code k_c ← (k_c + Σ ω k_e)/(1 + Σ ω)}), a convex mean, where the code
 * averages {@code cos·k_e} with {@code k_c} (which shrinks the merged key); avg and weighted merge
 * every evicted token, where the code's {@code filter_indices} (lines 405-408) keeps only those of
 * above-mean similarity (line 405) but then reads the unfiltered rows (line 411); the text
 * variants' mask keeps every text token even past the budget (line 693), while here the bonus only
 * orders them, so the byte budget holds, unless {@code protect=true} asks for the authors' rule;
 * the non-text variants' four always-kept first tokens (line 284) are not forced. A merged entry
 * carries the weight of the tokens it stands for (1 + |A|, or 1 + Σ ω for weighted), which
 * attention adds as {@code ln w} (METHODS.md M2, {@link HeadStore#merge}); the authors' cache has
 * no weights.
 */
public final class LookmMethod implements KvMethod {
  /** The authors' text-prior bonus (modify_llama.py line 684: {@code -65516} on image tokens). */
  static final String DEFAULT_BONUS = "65516";

  @Override
  public String name() {
    return "lookm";
  }

  @Override
  public Family family() {
    return Family.EVICTION;
  }

  @Override
  public String paper() {
    return "Wan et al. 2024, LOOK-M: Look-Once Optimization in KV Cache for Efficient Multimodal"
        + " Long-Context Inference, arXiv:2406.18139 §3";
  }

  @Override
  public String summary() {
    return "LOOK-M: once after prefill, H2O scores with a priority-segment prior pick the kept"
        + " tokens; each evicted token merges into its most key-similar kept one.";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        budget("budget", "20%", "tokens kept per head (heavy + recent)"),
        number("recent", "0.5", "share of the budget kept as the recent window").between(0, 1),
        choice("merge", "pivot", "merge rule (M7), or none", "avg", "pivot", "weighted", "none"),
        number("bonus", DEFAULT_BONUS, "score bonus of priority-segment tokens").atLeast(0),
        bool("protect", "false", "never evict a priority token, even past the budget"));
  }

  @Override
  public Set<Need> needs() {
    return Set.of(Need.ATTENTION_PROBS);
  }

  @Override
  public KvPolicy policy(MethodCall c, PolicyContext ctx) {
    return new Policy(
        ctx.layers(),
        c.budget("budget"),
        c.number("recent"),
        Merge.valueOf(c.string("merge").toUpperCase(java.util.Locale.ROOT)),
        (float) c.number("bonus"),
        c.bool("protect"),
        ctx.bytesPerToken());
  }

  @Override
  public long heldTokens(MethodCall c, int prompt, int maxNew, double bytesPerToken) {
    // the whole prompt until it is compressed; then the budget's entries, their weights (8 bytes
    // an entry, at most half a token's key and value in one head) and the decoded tokens
    // (protect: priority tokens may keep the whole prompt)
    long budget = c.bool("protect") ? prompt : c.budgetTokens("budget", prompt, bytesPerToken);
    return Math.max(prompt, budget + (budget + 1) / 2 + maxNew);
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of(
        "lookm:budget=12.5%",
        "lookm:budget=25%",
        "lookm:budget=25%,merge=avg",
        "lookm:budget=25%,merge=weighted",
        "lookm:budget=25%,merge=none");
  }

  @Override
  public String specKeeping(int tokens) {
    return "lookm:budget=" + tokens;
  }

  @Override
  public String specCompressing(int tokens) {
    return "lookm:budget=" + Math.max(2, tokens / 4);
  }

  /** The merge rules of METHODS.md M7, and none (pure eviction). */
  public enum Merge {
    AVG,
    PIVOT,
    WEIGHTED,
    NONE
  }

  /**
   * LOOK-M once after the prompt, per scoped layer and KV head holding n tokens, with capacity C
   * (the budget), the recent window R = min(C, round(C·recent)):
   *
   * <ol>
   *   <li>{@code S_i} = the attention every prompt query paid to token i, summed over the KV head's
   *       query heads (H2O's score, METHODS.md M3a).
   *   <li>{@code S_i −= bonus} for a token outside the priority segments (the same order as adding
   *       it to the priority ones; with every token priority the scores are H2O's, unchanged).
   *   <li>Keep the last R tokens and the C − R highest S among the others (ties: the earlier).
   *   <li>Each evicted token e joins the kept c of highest {@code cos(k_e, k_c)} (ties: the
   *       earlier; a zero key joins none and is dropped). A kept c that absorbed the set A becomes
   *       {@link #mergeRow}'s merge of c and A under the rule, at c's position (keys post-RoPE, no
   *       re-rotation), with weight {@link #mergeWeight}.
   * </ol>
   */
  public static final class Policy implements KvPolicy {
    private final boolean[] layers;
    private final Budget budget;
    private final double recentShare;
    private final Merge merge;
    private final float bonus;
    private final boolean protect;
    private final double bytesPerToken;
    private HeadScores scores;
    private boolean done;

    public Policy(
        boolean[] layers,
        Budget budget,
        double recentShare,
        Merge merge,
        float bonus,
        boolean protect,
        double bytesPerToken) {
      this.layers = layers;
      this.budget = budget;
      this.recentShare = recentShare;
      this.merge = merge;
      this.bonus = bonus;
      this.protect = protect;
      this.bytesPerToken = bytesPerToken;
    }

    @Override
    public boolean observes(int layer) {
      return layers[layer] && !done;
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
    public void afterStep(ManagedKvCache cache, KvCache.StepKind kind) {
      if (done || kind != KvCache.StepKind.PREFILL) {
        return;
      }
      done = true;
      int capacity = Math.max(1, budget.tokens(cache.promptTokens(), bytesPerToken));
      int recent = Math.min(capacity, (int) Math.round(capacity * recentShare));
      PromptSegments labels = cache.promptSegments();
      for (int l = 0; l < layers.length; l++) {
        if (!layers[l]) {
          continue;
        }
        PagedLayerKv layer = cache.paged(l);
        for (int g = 0; g < layer.kvHeads(); g++) {
          if (layer.size(g) > capacity) {
            compressHead(layer, l, g, capacity, recent, labels);
          }
        }
      }
      scores = null;
    }

    private void compressHead(
        PagedLayerKv layer, int l, int g, int capacity, int recent, PromptSegments labels) {
      HeadStore head = layer.store().head(g);
      int n = head.size();
      int[] pos = new int[n];
      head.positions(pos);
      float[] s = scores == null ? new float[n] : java.util.Arrays.copyOf(scores.of(l, g), n);
      BitSet evicted = evicted(s, pos, labels, bonus, protect, capacity, recent);
      if (evicted.isEmpty()) {
        return;
      }
      if (merge == Merge.NONE) {
        layer.evict(g, evicted);
        return;
      }
      int d = head.headDim();
      float[] keys = new float[n * d];
      float[] values = new float[n * d];
      head.readKeys(keys);
      head.readValues(values);
      BitSet kept = new BitSet();
      kept.set(0, n);
      kept.andNot(evicted);
      int[] target = new int[n];
      float[] cos = new float[n];
      NearestKey.assign(keys, d, kept, evicted, target, cos);
      int[] absorbed = new int[n];
      for (int e = evicted.nextSetBit(0); e >= 0; e = evicted.nextSetBit(e + 1)) {
        if (target[e] >= 0) {
          absorbed[target[e]]++;
        }
      }
      int count = 0;
      for (int c = kept.nextSetBit(0); c >= 0; c = kept.nextSetBit(c + 1)) {
        count += absorbed[c] > 0 ? 1 : 0;
      }
      int[] targets = new int[count];
      float[] mk = new float[count * d];
      float[] mv = new float[count * d];
      float[] w = new float[count];
      int t = 0;
      for (int c = kept.nextSetBit(0); c >= 0; c = kept.nextSetBit(c + 1)) {
        if (absorbed[c] > 0) {
          targets[t] = c;
          w[t] = mergeWeight(merge, c, target, cos, n);
          mergeRow(merge, keys, d, c, target, cos, n, mk, t * d);
          mergeRow(merge, values, d, c, target, cos, n, mv, t * d);
          t++;
        }
      }
      layer.merge(g, targets, count, mk, mv, w, evicted);
    }
  }

  /**
   * The tokens to evict from a head of {@code scores.length} tokens at {@code positions}: none when
   * they fit {@code capacity}; else, outside the last {@code recent}, the {@code n − capacity}
   * lowest scores after subtracting {@code bonus} from the tokens {@code labels} (null: all
   * priority) does not mark priority (ties: the earlier goes). With {@code protect}, only
   * non-priority tokens are evicted, as many of those as the excess asks at most: the head may then
   * keep more than {@code capacity} (the authors' text variants, modify_llama.py line 693).
   */
  static BitSet evicted(
      float[] scores,
      int[] positions,
      PromptSegments labels,
      float bonus,
      boolean protect,
      int capacity,
      int recent) {
    int n = scores.length;
    BitSet out = new BitSet();
    if (n <= capacity) {
      return out;
    }
    int to = Math.max(0, n - recent);
    int excess = n - capacity;
    float[] s = scores;
    if (labels != null) {
      s = scores.clone();
      int candidates = 0;
      for (int i = 0; i < n; i++) {
        if (!labels.isPriority(positions[i])) {
          s[i] -= bonus;
          candidates += i < to ? 1 : 0;
        } else if (protect) {
          s[i] = Float.POSITIVE_INFINITY;
        }
      }
      if (protect) {
        excess = Math.min(excess, candidates);
      }
    }
    Selection.lowest(s, 0, to, excess, out);
    return out;
  }

  /**
   * The weight of kept token c after the merge (METHODS.md M7, M2): how many tokens its entry
   * stands for, {@code 1 + |A|} for avg and pivot, {@code 1 + Σ_{e∈A} (cos_e + 1)/2} for weighted
   * (A: the tokens with {@code target[e] == c}).
   */
  static float mergeWeight(Merge rule, int c, int[] target, float[] cos, int n) {
    double w = 1;
    for (int e = 0; e < n; e++) {
      if (target[e] == c) {
        w += rule == Merge.WEIGHTED ? (cos[e] + 1) / 2.0 : 1;
      }
    }
    return (float) w;
  }

  /**
   * Writes into {@code out[off..off+d)} kept row c of {@code rows} merged with the rows e of {@code
   * target[e] == c} (A), METHODS.md M7: avg {@code (x_c + Σ x_e)/(1 + |A|)}; pivot {@code (x_c + Σ
   * (x_e + x_c)/2)/(1 + |A|)} (modify_llama.py lines 307-309); weighted {@code (x_c + Σ ω_e x_e)/(1
   * + Σ ω_e)}, {@code ω_e = (cos_e + 1)/2}. Each is a convex combination of the members' rows.
   */
  static void mergeRow(
      Merge rule,
      float[] rows,
      int d,
      int c,
      int[] target,
      float[] cos,
      int n,
      float[] out,
      int off) {
    double[] acc = new double[d];
    double total = 1;
    for (int j = 0; j < d; j++) {
      acc[j] = rows[c * d + j];
    }
    for (int e = 0; e < n; e++) {
      if (target[e] != c) {
        continue;
      }
      double a = rule == Merge.WEIGHTED ? (cos[e] + 1) / 2.0 : 1;
      total += a;
      for (int j = 0; j < d; j++) {
        double x = rows[e * d + j];
        acc[j] += rule == Merge.PIVOT ? (x + rows[c * d + j]) / 2 : a * x;
      }
    }
    for (int j = 0; j < d; j++) {
      float v = (float) (acc[j] / total);
      out[off + j] = v;
    }
  }
}
