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
 * PyramidKV (Cai et al. 2024, "PyramidKV: Dynamic KV Cache Compression based on Pyramidal
 * Information Funneling", arXiv:2406.02069 §3.2): SnapKV's selection with per-layer budgets that
 * decrease linearly with depth ({@link SnapKvPolicy.Allocation#PYRAMID}).
 */
public final class PyramidKvMethod implements KvMethod {
  @Override
  public String name() {
    return "pyramidkv";
  }

  @Override
  public Family family() {
    return Family.EVICTION;
  }

  @Override
  public String paper() {
    return "Cai et al. 2024, PyramidKV: Dynamic KV Cache Compression based on Pyramidal"
        + " Information Funneling, arXiv:2406.02069 §3.2";
  }

  @Override
  public String summary() {
    return "PyramidKV: SnapKV with linearly decreasing per-layer budgets.";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        budget("budget", "320", "average tokens kept per head, window included"),
        integer("window", "64", "observation window").atLeast(1),
        integer("kernel", "5", "pooling kernel (odd)").atLeast(1),
        choice("pool", "avg", "pooling", "avg", "max"),
        integer("chunk", "0", "compress inside the prefill every N prompt tokens (0: after it)")
            .atLeast(0),
        number("beta", "20", "pyramid steepness (1 = uniform)").atLeast(1));
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
    return SnapKvMethod.build(c, ctx, SnapKvPolicy.Allocation.PYRAMID, c.number("beta"), 0);
  }

  /** The bottom layer keeps up to twice the average budget. */
  @Override
  public long heldTokens(MethodCall c, int prompt, int maxNew, double bytesPerToken) {
    return Math.max(prompt, 2L * c.budgetTokens("budget", prompt, bytesPerToken) + maxNew);
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of(
        "pyramidkv:budget=12.5%,window=32",
        "pyramidkv:budget=25%,window=32", "pyramidkv:budget=50%,window=32");
  }

  @Override
  public String specKeeping(int tokens) {
    return "pyramidkv:budget=" + Math.max(tokens, 17) + ",window=16";
  }

  @Override
  public String specCompressing(int tokens) {
    return "pyramidkv:budget=" + Math.max(9, tokens / 4) + ",window=8";
  }
}
