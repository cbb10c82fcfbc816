package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.integer;
import static io.kvslim.kv.method.Knob.number;

import io.kvslim.calibrate.CalibrationProfile;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.policy.KvPolicy;
import java.util.BitSet;
import java.util.List;
import java.util.Set;

/**
 * DuoAttention (Xiao et al. 2024, "DuoAttention: Efficient Long-Context LLM Inference with
 * Retrieval and Streaming Heads", arXiv:2410.10819 §3; METHODS.md S2): retrieval KV heads keep the
 * full cache, streaming KV heads keep the first {@code sinks} tokens and the last {@code recent}.
 *
 * <p><b>Head classification</b> (training-free substitute, METHODS.md S2 step 4b; the paper trains
 * a gate per head instead): the profile's {@code duo.scores}, kvpress's on-the-fly score ({@link
 * io.kvslim.calibrate.CalibrationProfile}), ranked over the KV heads of the layers the rule covers.
 * With {@code ratio}, kvpress's {@code head_compression_ratio}: the {@code round(ratio × heads)}
 * lowest scores become streaming heads ({@code DuoAttentionPress.post_init_from_model}, {@code
 * kvpress/presses/duo_attention_press.py} lines 83–87 of NVIDIA/kvpress: {@code n_pruned =
 * round(size × ratio)}, Python's round half to even, and {@code argsort(scores)[:n_pruned]}; ties
 * here go to the earlier layer and head). With {@code threshold}, heads scoring below it (the
 * paper's deployment threshold τ).
 *
 * <p><b>Streaming heads</b> keep sinks + recent window at every step: after each step (the prompt
 * is taken whole, then cut), the tokens between the sinks and the last {@code recent} are evicted,
 * so a streaming head holds {@code min(n, sinks + recent)} tokens after every step and attends over
 * at most one more (the step's token). Keys keep their original positions, as kvpress's mask does
 * ({@code compress}, lines 107–112: keys {@code sink_size : -recent_size} of streaming heads are
 * masked). The defaults are DuoAttention's released patterns' 64 sinks and 256 recent tokens
 * (kvpress's on-the-fly setting uses 128/256) scaled by 1/4 to the 1,024-token context of the
 * bundled model: 16 + 64 = 80 tokens, about 8% of it.
 */
public final class DuoMethod implements KvMethod {
  @Override
  public String name() {
    return "duo";
  }

  @Override
  public Family family() {
    return Family.EVICTION;
  }

  @Override
  public String paper() {
    return "Xiao et al. 2024, DuoAttention: Efficient Long-Context LLM Inference with Retrieval and"
        + " Streaming Heads, arXiv:2410.10819 §3 (heads from kvpress's training-free scores)";
  }

  @Override
  public String summary() {
    return "DuoAttention: retrieval heads keep everything, streaming heads sinks + recent window.";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        number("ratio", "0.5", "fraction of KV heads made streaming (lowest profile scores)")
            .between(0, 1),
        number("threshold", null, "streaming heads: profile score below this (overrides ratio)")
            .between(0, 1),
        integer("sinks", "16", "first tokens a streaming head keeps").atLeast(0),
        integer("recent", "64", "recent tokens a streaming head keeps").atLeast(1));
  }

  @Override
  public Set<Need> needs() {
    return Set.of(Need.CALIBRATION);
  }

  @Override
  public KvPolicy policy(MethodCall c, PolicyContext ctx) {
    CalibrationProfile p = c.profileFor(ctx);
    Double threshold = (Double) c.params().get("threshold");
    boolean[][] streaming = streamingHeads(p.duo(), ctx.layers(), c.number("ratio"), threshold);
    return new Policy(streaming, c.integer("sinks"), c.integer("recent"));
  }

  /**
   * Which KV heads of the covered layers stream ({@code [layer][kvHead]}): those scoring below
   * {@code threshold}, or else the {@code round(ratio × heads)} lowest.
   */
  static boolean[][] streamingHeads(
      double[][] scores, boolean[] layers, double ratio, Double threshold) {
    boolean[][] out = new boolean[layers.length][scores[0].length];
    java.util.List<int[]> heads = new java.util.ArrayList<>(); // {layer, kvHead}, in order
    for (int l = 0; l < layers.length; l++) {
      for (int g = 0; layers[l] && g < scores[l].length; g++) {
        heads.add(new int[] {l, g});
        if (threshold != null && scores[l][g] < threshold) {
          out[l][g] = true;
        }
      }
    }
    if (threshold == null) {
      // stable: equal scores go to the earlier layer and head
      heads.sort(java.util.Comparator.comparingDouble(h -> scores[h[0]][h[1]]));
      int pruned = (int) Math.rint(heads.size() * ratio);
      for (int k = 0; k < pruned; k++) {
        out[heads.get(k)[0]][heads.get(k)[1]] = true;
      }
    }
    return out;
  }

  /** Streaming heads evicted down to sinks + recent after every step. */
  static final class Policy implements KvPolicy {
    private final boolean[][] streaming;
    private final int sinks;
    private final int recent;
    private final BitSet scratch = new BitSet();

    Policy(boolean[][] streaming, int sinks, int recent) {
      this.streaming = streaming;
      this.sinks = sinks;
      this.recent = recent;
    }

    @Override
    public void afterStep(ManagedKvCache cache, KvCache.StepKind kind) {
      for (int l = 0; l < streaming.length; l++) {
        PagedLayerKv layer = null;
        for (int g = 0; g < streaming[l].length; g++) {
          if (!streaming[l][g]) {
            continue;
          }
          layer = layer == null ? cache.paged(l) : layer;
          int size = layer.size(g);
          if (size > sinks + recent) {
            scratch.clear();
            scratch.set(sinks, size - recent);
            layer.evict(g, scratch);
          }
        }
      }
    }
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of("duo:ratio=0.5", "duo:ratio=0.75");
  }

  @Override
  public String specKeeping(int tokens) {
    return "duo:ratio=0";
  }

  @Override
  public String specCompressing(int tokens) {
    return "duo:ratio=0.5,sinks=4,recent=" + Math.max(1, tokens / 4);
  }
}
