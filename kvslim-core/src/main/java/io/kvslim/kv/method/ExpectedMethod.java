package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.bool;
import static io.kvslim.kv.method.Knob.budget;
import static io.kvslim.kv.method.Knob.integer;
import static io.kvslim.kv.method.Knob.number;

import io.kvslim.kv.policy.ChunkedPrefill;
import io.kvslim.kv.policy.ExpectedAttentionPolicy;
import io.kvslim.kv.policy.KvPolicy;
import java.util.List;
import java.util.Set;

/**
 * Expected Attention (Devoto et al. 2025, arXiv:2510.00636; METHODS.md N5): scores each cached key
 * by the attention the next {@code n_future} queries are expected to pay it, the queries modelled
 * as a Gaussian fitted to the prompt's pre-RoPE queries, weighted by the value's norm; selection by
 * kvpress's Ada-KV, as kvpress's {@code expected_attention} registry entry runs it (NVIDIA/kvpress
 * {@code evaluation/evaluate_registry.py} line 90). {@link ExpectedAttentionPolicy} has the
 * algorithm and the reference's lines.
 */
public final class ExpectedMethod implements KvMethod {
  @Override
  public String name() {
    return "expected";
  }

  @Override
  public Family family() {
    return Family.EVICTION;
  }

  @Override
  public String paper() {
    return "Devoto et al. 2025, Expected Attention: KV Cache Compression by Estimating Attention"
        + " from Future Queries Distribution, arXiv:2510.00636";
  }

  @Override
  public String summary() {
    return "Expected Attention: closed-form attention of Gaussian future queries × ‖v‖, Ada-KV"
        + " selection, once after prefill.";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        budget("budget", "25%", "average tokens kept per head (sinks included)"),
        integer("n_future", "512", "future positions the RoPE rotation is averaged over")
            .atLeast(1),
        integer("n_sink", "4", "first tokens always kept and left out of the query statistics")
            .atLeast(0),
        bool("cov", "true", "use the queries' covariance (false: the mean only)"),
        bool("vnorm", "true", "weight scores by the value's norm, (a + epsilon)·‖v‖"),
        number("epsilon", "0.01", "added to the attention before the value-norm weighting")
            .atLeast(0),
        number("safeguard", "0.2", "Ada-KV: share of the budget each head keeps by its own top")
            .between(0, 1),
        integer("chunk", "0", "compress inside the prefill every N prompt tokens (0: after it)")
            .atLeast(0));
  }

  @Override
  public Set<Need> needs() {
    return Set.of(Need.QUERIES);
  }

  @Override
  public KvPolicy policy(MethodCall c, PolicyContext ctx) {
    ExpectedAttentionPolicy p =
        new ExpectedAttentionPolicy(
            ctx.layers(),
            new ExpectedAttentionPolicy.Settings(
                c.budget("budget"),
                c.integer("n_future"),
                c.integer("n_sink"),
                c.bool("cov"),
                c.bool("vnorm"),
                c.number("epsilon"),
                c.number("safeguard")),
            ctx.rope(),
            ctx.bytesPerToken());
    return ChunkedPrefill.wrap(p, ctx.layers(), c.integer("chunk"));
  }

  @Override
  public long heldTokens(MethodCall c, int prompt, int maxNew, double bytesPerToken) {
    // as Ada-KV: heads differ, but a layer's heads together keep their budgets' sum
    return Math.max(prompt, (long) c.budgetTokens("budget", prompt, bytesPerToken) + maxNew);
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of("expected:budget=12.5%", "expected:budget=25%", "expected:budget=50%");
  }

  @Override
  public String specKeeping(int tokens) {
    return "expected:budget=" + tokens;
  }

  @Override
  public String specCompressing(int tokens) {
    return "expected:budget=" + Math.max(5, tokens / 4);
  }
}
