package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.budget;
import static io.kvslim.kv.method.Knob.choice;
import static io.kvslim.kv.method.Knob.integer;
import static io.kvslim.kv.method.Knob.number;

import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.policy.SnapKvPolicy;
import java.util.List;
import java.util.Set;

/**
 * Ada-KV (Feng et al. 2024, "Ada-KV: Optimizing KV Cache Eviction by Adaptive Budget Allocation",
 * arXiv:2407.11550 Alg. 1): SnapKV's votes, with each layer's budget split over its heads by a
 * global top-k ({@link SnapKvPolicy.Allocation#ADAPTIVE}); heads really hold different memory.
 */
public final class AdaKvMethod implements KvMethod {
  @Override
  public String name() {
    return "adakv";
  }

  @Override
  public Family family() {
    return Family.EVICTION;
  }

  @Override
  public String paper() {
    return "Feng et al. 2024, Ada-KV: Optimizing KV Cache Eviction by Adaptive Budget"
        + " Allocation, arXiv:2407.11550 Alg. 1";
  }

  @Override
  public String summary() {
    return "Ada-KV: SnapKV scores, head-wise budgets by a global top-k in a layer.";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        budget("budget", "2048", "average tokens kept per head, window included"),
        integer("window", "32", "observation window").atLeast(1),
        integer("kernel", "7", "pooling kernel (odd)").atLeast(1),
        choice("pool", "max", "pooling", "avg", "max"),
        integer("chunk", "0", "compress inside the prefill every N prompt tokens (0: after it)")
            .atLeast(0),
        number("alpha", "0.2", "floor: share of the base budget every head keeps").between(0, 1));
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
    return SnapKvMethod.build(c, ctx, SnapKvPolicy.Allocation.ADAPTIVE, 1, c.number("alpha"));
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
        "adakv:budget=12.5%,window=32", "adakv:budget=25%,window=32", "adakv:budget=50%,window=32");
  }

  @Override
  public String specKeeping(int tokens) {
    return "adakv:budget=" + Math.max(tokens, 17) + ",window=16";
  }

  @Override
  public String specCompressing(int tokens) {
    return "adakv:budget=" + Math.max(9, tokens / 4) + ",window=8";
  }
}
