package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.budget;
import static io.kvslim.kv.method.Knob.choice;
import static io.kvslim.kv.method.Knob.integer;

import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.policy.StreamingPolicy;
import java.util.List;

/**
 * StreamingLLM (Xiao et al. 2023, "Efficient Streaming Language Models with Attention Sinks",
 * arXiv:2309.17453 §3.2): the first tokens (attention sinks) and a window of recent tokens,
 * evicting every step; {@link StreamingPolicy} has the algorithm.
 */
public final class StreamingMethod implements KvMethod {
  @Override
  public String name() {
    return "streaming";
  }

  @Override
  public Family family() {
    return Family.EVICTION;
  }

  @Override
  public String paper() {
    return "Xiao et al. 2023, Efficient Streaming Language Models with Attention Sinks,"
        + " arXiv:2309.17453 §3.2";
  }

  @Override
  public String summary() {
    return "StreamingLLM: attention sinks plus a window of recent tokens.";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        integer("sinks", "4", "first tokens always kept").atLeast(0),
        integer("window", "1020", "recent tokens kept").atLeast(1),
        budget("budget", null, "total kept per head (sinks + window); overrides window"),
        choice(
            "positions",
            "rolling",
            "RoPE positions: rolling = index in the cache (the paper), original = in the text",
            "rolling",
            "original"));
  }

  @Override
  public void validate(MethodCall c) {
    Checks.budgetAboveSinks(c, c.integer("sinks"));
    Budget b = c.budget("budget");
    if (b != null && b.kind() == Budget.Kind.RATIO) {
      throw new KvSpecException(
          "streaming:budget must be in tokens or bytes (the cache is fixed before the prompt is"
              + " known), got "
              + b);
    }
  }

  @Override
  public KvPolicy policy(MethodCall c, PolicyContext ctx) {
    int sinks = c.integer("sinks");
    Budget b = c.budget("budget");
    int window =
        b == null
            ? c.integer("window")
            : b.tokens(Integer.MAX_VALUE / 2, ctx.bytesPerToken()) - sinks;
    if (window < 1) {
      throw new KvSpecException(
          "streaming:budget=" + b + " leaves no room beyond " + sinks + " sinks");
    }
    return new StreamingPolicy(
        ctx.layers(), sinks, window, c.string("positions").equals("rolling"));
  }

  @Override
  public long heldTokens(MethodCall c, int prompt, int maxNew, double bytesPerToken) {
    long capacity =
        c.budget("budget") != null
            ? c.budgetTokens("budget", prompt, bytesPerToken)
            : c.integer("sinks") + (long) c.integer("window");
    return Math.max(prompt, capacity + 2);
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of("streaming:sinks=4,window=124", "streaming:sinks=4,window=252");
  }

  @Override
  public String specKeeping(int tokens) {
    return "streaming:sinks=4,window=" + tokens;
  }

  @Override
  public String specCompressing(int tokens) {
    return "streaming:sinks=4,window=" + Math.max(1, tokens / 4);
  }
}
