package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.bool;
import static io.kvslim.kv.method.Knob.budget;
import static io.kvslim.kv.method.Knob.integer;

import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.policy.KvzipPolicy;
import java.util.List;

/**
 * KVzip (Kim et al. 2025, "KVzip: Query-Agnostic KV Cache Compression with Context Reconstruction",
 * arXiv:2505.23416; METHODS.md N4): the model repeats its prompt on top of the full cache, each
 * prompt token scores the largest attention a repeat query pays it, and the lowest scores over all
 * layers and heads are evicted once after prefill. The compressed cache does not depend on what is
 * asked next. {@link KvzipPolicy} has the algorithm and the reference's lines (NVIDIA/kvpress
 * {@code kvpress/presses/kvzip_press.py}).
 *
 * <p>{@code budget} is what stays: kvpress's {@code compression_ratio} r is {@code budget=(1−r)}
 * (the authors' {@code --ratio 0.3} keeps 30%). The repeat passes cost about one more prefill whose
 * attention also reads the whole prompt (measured in the README's method table). A repeat runs at
 * the positions after the prompt, up to prompt + {@code chunk} + about 20 tokens: beyond the
 * model's trained context when the prompt fills it (then a smaller {@code chunk} keeps the repeat
 * closer to it; README, "KVzip").
 */
public final class KvzipMethod implements KvMethod {
  @Override
  public String name() {
    return "kvzip";
  }

  @Override
  public Family family() {
    return Family.EVICTION;
  }

  @Override
  public String paper() {
    return "Kim et al. 2025, KVzip: Query-Agnostic KV Cache Compression with Context"
        + " Reconstruction, arXiv:2505.23416 (METHODS.md N4)";
  }

  @Override
  public String summary() {
    return "KVzip: the model repeats the prompt; each token scores its largest attention from the"
        + " repeat; lowest scores over all layers and heads evicted once (prefill ≈2.9x the time:"
        + " pycoder-6m, 1,024 tokens, 1 thread).";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        budget("budget", "25%", "average tokens kept per (layer, KV head), pooled (1 - ratio)"),
        integer("chunk", "2048", "prompt tokens repeated per pass").atLeast(1),
        integer("prev_postfix", "8", "previous chunk's last tokens quoted in a later pass")
            .atLeast(0),
        integer("n_sink", "4", "first tokens that score 1 and are never evicted").atLeast(0),
        bool("layerwise", "false", "every layer keeps the budget (heads still differ)"));
  }

  @Override
  public KvPolicy policy(MethodCall c, PolicyContext ctx) {
    return new KvzipPolicy(
        ctx.layers(),
        new KvzipPolicy.Settings(
            c.budget("budget"),
            c.integer("chunk"),
            c.integer("prev_postfix"),
            c.integer("n_sink"),
            c.bool("layerwise")),
        ctx.bytesPerToken());
  }

  @Override
  public long heldTokens(MethodCall c, int prompt, int maxNew, double bytesPerToken) {
    // pooled over layers and heads: one head may keep its whole prompt, the cache its budget
    return Math.max(prompt, (long) c.budgetTokens("budget", prompt, bytesPerToken) + maxNew);
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of("kvzip:budget=12.5%", "kvzip:budget=25%", "kvzip:budget=50%");
  }

  @Override
  public String specKeeping(int tokens) {
    return "kvzip:budget=" + tokens;
  }

  @Override
  public String specCompressing(int tokens) {
    return "kvzip:budget=" + Math.max(5, tokens / 4) + ",chunk=" + Math.max(1, tokens / 3);
  }
}
