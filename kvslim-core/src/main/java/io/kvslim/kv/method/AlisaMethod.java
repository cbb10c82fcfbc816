package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.budget;
import static io.kvslim.kv.method.Knob.choice;
import static io.kvslim.kv.method.Knob.number;

import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.policy.AlisaPolicy;
import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.store.KvCacheFormat;
import java.util.List;
import java.util.Set;

/**
 * ALISA (Zhao, Wu and Wang 2024, "ALISA: Accelerating Large Language Model Inference via
 * Sparsity-Aware KV Caching", arXiv:2403.17312; METHODS.md H2): Sparse Window Attention (a recent
 * window plus the tokens with the highest accumulated attention, evicted ones included), the cache
 * in INT8 (llama.cpp's {@code q8_0}, 8-bit symmetric per 32 values with an f16 scale) and a
 * scheduler that recomputes evicted prompt tokens SWA selects again, within a per-step token
 * credit; {@link AlisaPolicy} has the algorithm and what is unverified.
 */
public final class AlisaMethod implements KvMethod {
  @Override
  public String name() {
    return "alisa";
  }

  @Override
  public Family family() {
    return Family.EVICTION;
  }

  @Override
  public String paper() {
    return "Zhao, Wu, Wang 2024, ALISA: Accelerating LLM Inference via Sparsity-Aware KV Caching,"
        + " arXiv:2403.17312 (SWA, INT8 KV, caching vs recomputation)";
  }

  @Override
  public String summary() {
    return "ALISA: recent window plus top accumulated-attention tokens in INT8, recomputing"
        + " evicted prompt tokens selected again.";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        budget("budget", "20%", "tokens kept per head (window + global), in the cache's format"),
        number("local", "0.5", "share of the budget kept as the recent window (1:1, unverified)")
            .between(0, 1),
        choice("bits", "8", "cache format: 8 stores q8_0 (INT8), 32 stores F32", "8", "32"),
        number(
                "recompute",
                "64",
                "tokens the scheduler may replay per decode step on average to bring selected"
                    + " evicted prompt tokens back (0: never, drop them)")
            .atLeast(0),
        number(
                "decay",
                "0.95",
                "factor on retained tokens' accumulated scores per decode step; evicted tokens keep"
                    + " theirs, so they can be selected again (1: H2O's plain sums; unverified)")
            .between(0, 1));
  }

  @Override
  public Set<Need> needs() {
    return Set.of(Need.ATTENTION_PROBS);
  }

  @Override
  public void validate(MethodCall c) {
    Budget b = c.budget("budget");
    if (b.kind() == Budget.Kind.TOKENS && b.value() < 2) {
      throw new KvSpecException(
          "alisa:budget=" + (long) b.value() + " must keep at least 2 tokens (window and global)");
    }
    if (c.number("decay") <= 0) {
      throw new KvSpecException("alisa:decay=" + c.number("decay") + " must be above 0");
    }
  }

  @Override
  public KvPolicy policy(MethodCall c, PolicyContext ctx) {
    return new AlisaPolicy(
        ctx.layers(),
        c.budget("budget"),
        c.number("local"),
        c.number("recompute"),
        c.number("decay"),
        ctx.bytesPerToken());
  }

  @Override
  public KvCacheFormat format(MethodCall c) {
    return c.string("bits").equals("8") ? KvCacheFormat.of(KvFormats.Q8_0) : null;
  }

  @Override
  public long heldTokens(MethodCall c, int prompt, int maxNew, double bytesPerToken) {
    return Math.max(prompt, c.budgetTokens("budget", prompt, bytesPerToken) + 2L);
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of("alisa:budget=12.5%", "alisa:budget=25%", "alisa:budget=50%");
  }

  @Override
  public String specKeeping(int tokens) {
    return "alisa:budget=" + tokens + ",bits=32";
  }

  @Override
  public String specCompressing(int tokens) {
    return "alisa:budget=" + Math.max(2, tokens / 4);
  }
}
