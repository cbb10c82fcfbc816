package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.budget;
import static io.kvslim.kv.method.Knob.integer;
import static io.kvslim.kv.method.Knob.number;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.policy.H2oPolicy;
import io.kvslim.kv.policy.KvPolicy;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;

/**
 * Keyformer (Adnan et al. 2024, "Keyformer: KV Cache Reduction through Key Tokens Selection for
 * Efficient Generative Inference", arXiv:2403.09054; METHODS.md E5): key tokens by an accumulated
 * Gumbel-softmax score with a temperature that rises during decoding, plus a recent window; {@link
 * Policy} has the algorithm and the authors' code it follows. Defaults from the authors' {@code
 * models/gptj-keyformer-lib/configuration_gptj.py} ({@code kv_cache 60, recent 30, tau_init 1.0,
 * tau_delta 0.01}); {@code noise=0} turns the Gumbel noise off (with {@code tau_delta=0} the method
 * is then H2O with the same budget and window).
 */
public final class KeyformerMethod implements KvMethod {
  @Override
  public String name() {
    return "keyformer";
  }

  @Override
  public Family family() {
    return Family.EVICTION;
  }

  @Override
  public String paper() {
    return "Adnan et al. 2024, Keyformer: KV Cache Reduction through Key Tokens Selection,"
        + " arXiv:2403.09054 §3";
  }

  @Override
  public String summary() {
    return "Keyformer: key tokens by accumulated Gumbel-softmax scores (temperature rising per"
        + " decode step) plus recent tokens, evicting during decode.";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        budget("budget", "60%", "tokens kept per head (key + recent)"),
        number("recent", "0.3", "share of the budget kept as the recent window").between(0, 1),
        number("tau", "1.0", "temperature of the score at the prompt (tau_init)").atLeast(1e-3),
        number("tau_delta", "0.01", "temperature added per decode step").atLeast(0),
        integer("noise", "1", "1: Gumbel noise in the score, 0: none").between(0, 1),
        integer("seed", "0", "seed of the Gumbel noise").atLeast(0));
  }

  @Override
  public Set<Need> needs() {
    return Set.of(Need.ATTENTION_PROBS);
  }

  @Override
  public void validate(MethodCall c) {
    Checks.budgetAboveSinks(c, 0);
  }

  @Override
  public KvPolicy policy(MethodCall c, PolicyContext ctx) {
    return new Policy(
        ctx.layers(),
        c.budget("budget"),
        c.number("recent"),
        c.number("tau"),
        c.number("tau_delta"),
        c.integer("seed"),
        c.integer("noise") == 1,
        ctx.bytesPerToken());
  }

  @Override
  public long heldTokens(MethodCall c, int prompt, int maxNew, double bytesPerToken) {
    return Math.max(prompt, c.budgetTokens("budget", prompt, bytesPerToken) + 2L);
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of("keyformer:budget=12.5%", "keyformer:budget=25%", "keyformer:budget=50%");
  }

  @Override
  public String specKeeping(int tokens) {
    return "keyformer:budget=" + tokens;
  }

  @Override
  public String specCompressing(int tokens) {
    return "keyformer:budget=" + Math.max(2, tokens / 4);
  }

  /**
   * Keyformer (Adnan et al. 2024, arXiv:2403.09054): {@link H2oPolicy}'s eviction (key tokens by an
   * accumulated score plus a recent window, evicting every decode step) with the score of the
   * authors' code, d-matrix-ai/keyformer-llm f327831, {@code
   * models/gptj-keyformer-lib/modeling_gptj.py} lines 237–304: each query row adds {@code
   * gumbel_softmax(z, τ)} = {@code softmax((z + ζ)/τ)} of its attention logits {@code z} (ζ
   * standard Gumbel noise, {@code −ln(−ln U)}), not their softmax; {@code τ = tau_init +
   * t·tau_delta} where {@code t} counts the attention calls since the prompt (0 for the prompt,
   * {@code t} at the {@code t}-th decode step; line 247). The attention output itself uses the
   * plain softmax.
   *
   * <p>The logits are recovered from the probabilities the cache hands observers: {@code ln p_i =
   * z_i − c} with one constant {@code c} per row, which the softmax of {@code (ln p + ζ)/τ}
   * cancels, so the score is the authors' exactly; a token with {@code p = 0} (masked, or
   * underflowed) scores 0, as the authors' {@code min_val} mask gives. The noise is drawn from a
   * {@link SplittableRandom} seeded by the seed, the layer, the step, the query and the head, so
   * runs repeat. GQA: the group's query heads add their scores to their KV head (the authors'
   * models are MHA).
   */
  public static final class Policy extends H2oPolicy {
    private final double tauInit;
    private final double tauDelta;
    private final long seed;
    private final boolean noise;
    private int step; // attention calls (steps) after the prompt's
    private float[] work = new float[64];
    private double[] logits = new double[64];

    public Policy(
        boolean[] layers,
        Budget budget,
        double recentShare,
        double tauInit,
        double tauDelta,
        long seed,
        boolean noise,
        double bytesPerTokenAll) {
      super(layers, budget, recentShare, 0, bytesPerTokenAll);
      this.tauInit = tauInit;
      this.tauDelta = tauDelta;
      this.seed = seed;
      this.noise = noise;
    }

    /** The temperature of step {@code t} (0: the prompt). */
    double tau(int t) {
      return tauInit + t * tauDelta;
    }

    @Override
    protected void accumulate(
        int layer, int queryIndex, int head, int kvHead, float[] probs, int count) {
      if (work.length < count) {
        work = new float[Math.max(count, 2 * work.length)];
        logits = new double[work.length];
      }
      score(
          probs, count, tau(step), noise ? noiseFor(layer, queryIndex, head) : null, logits, work);
      super.accumulate(layer, queryIndex, head, kvHead, work, count);
    }

    private SplittableRandom noiseFor(int layer, int queryIndex, int head) {
      long h = seed;
      h = h * 0x9E3779B97F4A7C15L + layer;
      h = h * 0x9E3779B97F4A7C15L + step;
      h = h * 0x9E3779B97F4A7C15L + queryIndex;
      h = h * 0x9E3779B97F4A7C15L + head;
      return new SplittableRandom(h);
    }

    /**
     * {@code out[i] = softmax_i((ln probs[i] + ζ_i)/τ)} over the tokens with {@code probs[i] > 0}
     * (others 0); ζ from {@code rnd} ({@code −ln(−ln U)}, U uniform in (0, 1)), none when null;
     * {@code z} is scratch of at least {@code count}.
     */
    static void score(
        float[] probs, int count, double tau, SplittableRandom rnd, double[] z, float[] out) {
      double max = Double.NEGATIVE_INFINITY;
      for (int i = 0; i < count; i++) {
        double g = 0;
        if (rnd != null) {
          double u = rnd.nextDouble();
          while (u == 0) {
            u = rnd.nextDouble();
          }
          g = -Math.log(-Math.log(u));
        }
        z[i] = probs[i] > 0 ? (Math.log(probs[i]) + g) / tau : Double.NEGATIVE_INFINITY;
        max = Math.max(max, z[i]);
      }
      if (max == Double.NEGATIVE_INFINITY) {
        java.util.Arrays.fill(out, 0, count, 0f);
        return;
      }
      double sum = 0;
      for (int i = 0; i < count; i++) {
        z[i] = Math.exp(z[i] - max);
        sum += z[i];
      }
      for (int i = 0; i < count; i++) {
        out[i] = (float) (z[i] / sum);
      }
    }

    @Override
    public void afterStep(ManagedKvCache cache, KvCache.StepKind kind) {
      super.afterStep(cache, kind);
      step++; // the authors' itr_count: 0 for the prompt, then one per decode step
    }
  }
}
