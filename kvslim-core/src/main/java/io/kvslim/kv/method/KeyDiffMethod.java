package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.budget;
import static io.kvslim.kv.method.Knob.integer;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.policy.ChunkedPrefill;
import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.policy.Selection;
import io.kvslim.kv.store.HeadStore;
import java.util.BitSet;
import java.util.List;

/**
 * KeyDiff (Park et al. 2025, "KeyDiff: Key Similarity-Based KV Cache Eviction for Long-Context LLM
 * Inference in Resource-Constrained Environments", arXiv:2504.15364; METHODS.md N9): attention-free
 * eviction that keeps the keys least like the average key. Per (layer, KV head), once after
 * prefill, as kvpress's {@code KeyDiffPress} (NVIDIA/kvpress {@code
 * kvpress/presses/keydiff_press.py} lines 45-46, applied by {@code ScorerPress.compress} in {@code
 * scorer_press.py} lines 93-100):
 *
 * <ol>
 *   <li>anchor {@code a = mean_i(k_i / ‖k_i‖)} over the head's cached (post-RoPE) keys;
 *   <li>score {@code s_i = −cos(k_i, a)};
 *   <li>keep the {@code budget} highest scores (ties to the earlier token; the reference's {@code
 *       topk} leaves tie order open), in position order; evict the rest.
 * </ol>
 *
 * Like the reference press, no recent window is protected and decode steps evict nothing. The
 * paper's block-wise prefill (score kept ∪ next block of 128, kvpress's {@code block_keydiff}) is
 * {@code chunk=128}, the chunked-prefill option of METHODS.md N10 ({@link ChunkedPrefill}); with a
 * chunk at least the prompt's length it equals this one-shot form.
 */
public final class KeyDiffMethod implements KvMethod {
  @Override
  public String name() {
    return "keydiff";
  }

  @Override
  public Family family() {
    return Family.EVICTION;
  }

  @Override
  public String paper() {
    return "Park et al. 2025, KeyDiff: Key Similarity-Based KV Cache Eviction, arXiv:2504.15364";
  }

  @Override
  public String summary() {
    return "KeyDiff: keep the keys least similar to the head's mean key, once after prefill.";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        budget("budget", "25%", "tokens kept per head"),
        integer("chunk", "0", "compress inside the prefill every N prompt tokens (0: after it)")
            .atLeast(0));
  }

  @Override
  public KvPolicy policy(MethodCall c, PolicyContext ctx) {
    return ChunkedPrefill.wrap(
        new Policy(ctx.layers(), c.budget("budget"), ctx.bytesPerToken()),
        ctx.layers(),
        c.integer("chunk"));
  }

  @Override
  public long heldTokens(MethodCall c, int prompt, int maxNew, double bytesPerToken) {
    return Math.max(prompt, (long) c.budgetTokens("budget", prompt, bytesPerToken) + maxNew);
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of(
        "keydiff:budget=12.5%",
        "keydiff:budget=25%", "keydiff:budget=50%", "keydiff:budget=25%,chunk=128");
  }

  @Override
  public String specKeeping(int tokens) {
    return "keydiff:budget=" + tokens;
  }

  @Override
  public String specCompressing(int tokens) {
    return "keydiff:budget=" + Math.max(1, tokens / 4);
  }

  /**
   * KeyDiff scores of {@code n} keys of {@code dim} floats each, laid out one after another: {@code
   * −cos(k_i, a)} with {@code a} the mean of the unit keys. A zero key has norm 0: it adds nothing
   * to the anchor and scores 0 (as {@code F.normalize}'s and {@code cosine_similarity}'s eps make
   * it in the reference).
   */
  static float[] scores(float[] keys, int n, int dim) {
    double[] anchor = new double[dim];
    double[] norms = new double[n];
    for (int i = 0; i < n; i++) {
      double sq = 0;
      for (int d = 0; d < dim; d++) {
        double k = keys[i * dim + d];
        sq += k * k;
      }
      norms[i] = Math.sqrt(sq);
      if (norms[i] > 0) {
        for (int d = 0; d < dim; d++) {
          anchor[d] += keys[i * dim + d] / norms[i];
        }
      }
    }
    double anchorSq = 0;
    for (int d = 0; d < dim; d++) {
      anchor[d] /= n;
      anchorSq += anchor[d] * anchor[d];
    }
    double anchorNorm = Math.sqrt(anchorSq);
    float[] out = new float[n];
    for (int i = 0; i < n; i++) {
      if (norms[i] == 0 || anchorNorm == 0) {
        continue;
      }
      double dot = 0;
      for (int d = 0; d < dim; d++) {
        dot += keys[i * dim + d] * anchor[d];
      }
      out[i] = (float) (-dot / (norms[i] * anchorNorm));
    }
    return out;
  }

  /** The eviction: once, after the prefill. */
  static final class Policy implements ChunkedPrefill.Compressor {
    private final boolean[] layers;
    private final Budget budget;
    private final double bytesPerToken;
    private boolean done;

    Policy(boolean[] layers, Budget budget, double bytesPerToken) {
      this.layers = layers;
      this.budget = budget;
      this.bytesPerToken = bytesPerToken;
    }

    @Override
    public void afterStep(ManagedKvCache cache, KvCache.StepKind kind) {
      if (done || kind != KvCache.StepKind.PREFILL) {
        return;
      }
      done = true;
      for (int l = 0; l < layers.length; l++) {
        compressLayer(cache, l, cache.promptTokens());
      }
    }

    /** Inside a chunked prefill: scores kept ∪ chunk (the anchor recomputed), keeps the budget. */
    @Override
    public void compressLayer(ManagedKvCache cache, int l, int promptTokens) {
      if (!layers[l]) {
        return;
      }
      int keep = budget.tokens(promptTokens, bytesPerToken);
      BitSet kept = new BitSet();
      PagedLayerKv layer = cache.paged(l);
      int dim = layer.headDim();
      for (int g = 0; g < layer.kvHeads(); g++) {
        int n = layer.size(g);
        if (n <= keep) {
          continue;
        }
        HeadStore head = layer.head(g);
        float[] keys = new float[n * dim];
        head.readKeys(keys);
        float[] s = scores(keys, n, dim);
        kept.clear();
        Selection.highest(s, 0, n, keep, kept);
        kept.flip(0, n);
        layer.evict(g, kept);
      }
    }
  }
}
