package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.budget;
import static io.kvslim.kv.method.Knob.integer;
import static io.kvslim.kv.method.Knob.number;

import io.kvslim.kv.policy.H2oPolicy;
import io.kvslim.kv.policy.KvPolicy;
import java.util.List;
import java.util.Set;

/**
 * H2O (Zhang et al. 2023, "H2O: Heavy-Hitter Oracle", arXiv:2306.14048, Alg. 1): heavy hitters by
 * accumulated attention plus a recent window, evicting every decode step; {@link H2oPolicy} has the
 * algorithm.
 */
public final class H2oMethod implements KvMethod {
  @Override
  public String name() {
    return "h2o";
  }

  @Override
  public Family family() {
    return Family.EVICTION;
  }

  @Override
  public String paper() {
    return "Zhang et al. 2023, H2O: Heavy-Hitter Oracle, arXiv:2306.14048 Alg. 1";
  }

  @Override
  public String summary() {
    return "H2O: heavy hitters by accumulated attention plus recent tokens, evicting during"
        + " decode.";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        budget("budget", "20%", "tokens kept per head (heavy + recent)"),
        number("recent", "0.5", "share of the budget kept as the recent window").between(0, 1),
        integer("sinks", "0", "first tokens always kept").atLeast(0));
  }

  @Override
  public Set<Need> needs() {
    return Set.of(Need.ATTENTION_PROBS);
  }

  @Override
  public void validate(MethodCall c) {
    Checks.budgetAboveSinks(c, c.integer("sinks"));
  }

  @Override
  public KvPolicy policy(MethodCall c, PolicyContext ctx) {
    return new H2oPolicy(
        ctx.layers(),
        c.budget("budget"),
        c.number("recent"),
        c.integer("sinks"),
        ctx.bytesPerToken());
  }

  @Override
  public long heldTokens(MethodCall c, int prompt, int maxNew, double bytesPerToken) {
    return Math.max(prompt, c.budgetTokens("budget", prompt, bytesPerToken) + 2L);
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of("h2o:budget=12.5%", "h2o:budget=25%", "h2o:budget=50%");
  }

  @Override
  public String specKeeping(int tokens) {
    return "h2o:budget=" + tokens;
  }

  @Override
  public String specCompressing(int tokens) {
    return "h2o:budget=" + Math.max(2, tokens / 4);
  }
}
