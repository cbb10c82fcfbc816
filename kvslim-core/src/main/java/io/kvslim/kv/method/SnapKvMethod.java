package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.budget;
import static io.kvslim.kv.method.Knob.choice;
import static io.kvslim.kv.method.Knob.integer;

import io.kvslim.kv.policy.ChunkedPrefill;
import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.policy.SnapKvPolicy;
import java.util.List;
import java.util.Set;

/**
 * SnapKV (Li et al. 2024, "SnapKV: LLM Knows What You are Looking for Before Generation",
 * arXiv:2404.14469 §4.2): the last prompt queries vote, votes are pooled, each head keeps its top
 * tokens plus the window, once after prefill; {@link SnapKvPolicy} has the algorithm.
 */
public final class SnapKvMethod implements KvMethod {
  @Override
  public String name() {
    return "snapkv";
  }

  @Override
  public Family family() {
    return Family.EVICTION;
  }

  @Override
  public String paper() {
    return "Li et al. 2024, SnapKV: LLM Knows What You are Looking for Before Generation,"
        + " arXiv:2404.14469 §4.2";
  }

  @Override
  public String summary() {
    return "SnapKV: observation-window queries vote, pooled, once after prefill.";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        budget("budget", "2048", "tokens kept per head, window included"),
        integer("window", "32", "observation window (last prompt tokens)").atLeast(1),
        integer("kernel", "5", "pooling kernel (odd)").atLeast(1),
        choice("pool", "avg", "pooling", "avg", "max"),
        integer("chunk", "0", "compress inside the prefill every N prompt tokens (0: after it)")
            .atLeast(0));
  }

  @Override
  public Set<Need> needs() {
    return Set.of(Need.QUERIES);
  }

  @Override
  public void validate(MethodCall c) {
    Checks.windowed(c);
  }

  @Override
  public KvPolicy policy(MethodCall c, PolicyContext ctx) {
    return build(c, ctx, SnapKvPolicy.Allocation.UNIFORM, 1, 0);
  }

  /**
   * The policy of SnapKV and its budget variants (PyramidKV, Ada-KV), compressing inside the
   * prefill when the call has {@code chunk > 0} ({@link ChunkedPrefill}).
   */
  static KvPolicy build(
      MethodCall c, PolicyContext ctx, SnapKvPolicy.Allocation a, double beta, double alpha) {
    return ChunkedPrefill.wrap(scorer(c, ctx, a, beta, alpha), ctx.layers(), c.integer("chunk"));
  }

  private static SnapKvPolicy scorer(
      MethodCall c, PolicyContext ctx, SnapKvPolicy.Allocation a, double beta, double alpha) {
    return new SnapKvPolicy(
        ctx.layers(),
        c.budget("budget"),
        c.integer("window"),
        c.integer("kernel"),
        c.string("pool").equals("max"),
        a,
        beta,
        alpha,
        ctx.bytesPerToken(),
        a == SnapKvPolicy.Allocation.PYRAMID ? null : ctx.allocator());
  }

  @Override
  public boolean takesAllocator() {
    return true;
  }

  @Override
  public long heldTokens(MethodCall c, int prompt, int maxNew, double bytesPerToken) {
    return Math.max(prompt, (long) c.budgetTokens("budget", prompt, bytesPerToken) + maxNew);
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of(
        "snapkv:budget=12.5%,window=32",
        "snapkv:budget=25%,window=32",
        "snapkv:budget=50%,window=32",
        "snapkv:budget=25%,window=32,chunk=128"); // compressing inside the prefill (N10)
  }

  @Override
  public String specKeeping(int tokens) {
    return "snapkv:budget=" + Math.max(tokens, 17) + ",window=16";
  }

  @Override
  public String specCompressing(int tokens) {
    return "snapkv:budget=" + Math.max(9, tokens / 4) + ",window=8";
  }
}
