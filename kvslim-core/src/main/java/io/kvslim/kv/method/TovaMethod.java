package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.budget;

import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.policy.TovaPolicy;
import java.util.List;
import java.util.Set;

/**
 * TOVA (Oren et al. 2024, "Transformers are Multi-State RNNs", arXiv:2401.06104 §4): drop the token
 * the current query attends to least, per layer; {@link TovaPolicy} has the algorithm.
 */
public final class TovaMethod implements KvMethod {
  @Override
  public String name() {
    return "tova";
  }

  @Override
  public Family family() {
    return Family.EVICTION;
  }

  @Override
  public String paper() {
    return "Oren et al. 2024, Transformers are Multi-State RNNs, arXiv:2401.06104 §4";
  }

  @Override
  public String summary() {
    return "TOVA: evict the token the current query attends to least, per layer.";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(budget("budget", "25%", "tokens kept per head"));
  }

  @Override
  public Set<Need> needs() {
    return Set.of(Need.ATTENTION_PROBS);
  }

  @Override
  public KvPolicy policy(MethodCall c, PolicyContext ctx) {
    return new TovaPolicy(ctx.layers(), c.budget("budget"), ctx.bytesPerToken());
  }

  @Override
  public long heldTokens(MethodCall c, int prompt, int maxNew, double bytesPerToken) {
    return Math.max(prompt, c.budgetTokens("budget", prompt, bytesPerToken) + 2L);
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of("tova:budget=12.5%", "tova:budget=25%", "tova:budget=50%");
  }

  @Override
  public String specKeeping(int tokens) {
    return "tova:budget=" + tokens;
  }

  @Override
  public String specCompressing(int tokens) {
    return "tova:budget=" + Math.max(1, tokens / 4);
  }
}
