package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.bool;
import static io.kvslim.kv.method.Knob.budget;
import static io.kvslim.kv.method.Knob.integer;
import static io.kvslim.kv.method.Knob.number;

import io.kvslim.calibrate.AutoSensitivity;
import io.kvslim.calibrate.CalibrationProfile;
import io.kvslim.kv.policy.AutoPolicy;
import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.store.KvCacheFormat;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.function.IntToLongFunction;

/**
 * The adaptive controller (issue 23 item 4; {@link AutoPolicy}): per layer and KV head, the tokens
 * kept (SnapKV's selection, the evicted tokens merged into the kept ones as EMS does unless {@code
 * merge=false}) and the bit width ({@link AutoPolicy#LEVELS}: F32 down to q4_0 keys with KIVI-2
 * values, per head), chosen from the profile's measured sensitivities ({@link AutoSensitivity}) to
 * add the least KL divergence under a byte budget that holds after every step: {@code bytes=64MiB}
 * (a fixed cap) or {@code ratio=0.2} (a share of the F16 bytes of the tokens seen so far; 0.25 by
 * default). Our own method, no paper: the selection is SnapKV's (Li et al. 2024, arXiv:2404.14469
 * §4.2), the merge EMS's ({@link EmsMethod}, weighted by SnapKV's votes instead of its Global-Local
 * score), the formats ggml's and KIVI's values (Liu et al. 2024, arXiv:2402.02750).
 */
public final class AutoMethod implements KvMethod {
  @Override
  public String name() {
    return "auto";
  }

  @Override
  public Family family() {
    return Family.EVICTION;
  }

  @Override
  public String paper() {
    return "kvslim's adaptive controller (issue 23 item 4): SnapKV selection (Li et al. 2024,"
        + " arXiv:2404.14469 §4.2) with EMS-style merging, ggml formats and KIVI values"
        + " (arXiv:2402.02750) per head, planned by measured KLD per byte";
  }

  @Override
  public String summary() {
    return "Adaptive: per-head tokens and bits from a calibration profile, within a byte budget.";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        budget(
            "bytes", null, "bytes the cache may hold after any step, e.g. 64MiB (overrides ratio)"),
        number("ratio", "0.25", "share of the F16 bytes of the tokens seen the cache may hold")
            .between(0, 2),
        integer(
                "window",
                "80",
                "recent tokens every head keeps, and SnapKV's window (80: the best of 16–128 on"
                    + " the trained model's held-out ppl text at ratios 0.25, 0.15 and 0.1)")
            .atLeast(1),
        bool(
            "merge",
            "true",
            "merge the tokens a head lets go into their nearest kept key, as EMS (false: drop"
                + " them)"));
  }

  @Override
  public Set<Need> needs() {
    return Set.of(Need.QUERIES, Need.CALIBRATION);
  }

  @Override
  public void validate(MethodCall c) {
    if (c.params().get("bytes") != null && c.budget("bytes").kind() != Budget.Kind.BYTES) {
      throw new KvSpecException(
          "auto:bytes takes a byte count like 64MiB, not '" + c.budget("bytes") + "'");
    }
    if (!(c.number("ratio") > 0)) {
      throw new KvSpecException("auto:ratio must be above 0, got " + c.number("ratio"));
    }
  }

  /** The call as its budget reads, for messages: {@code auto:bytes=65536B} or {@code ratio=0.2}. */
  private static String label(MethodCall c) {
    return c.params().get("bytes") != null
        ? "auto:bytes=" + c.budget("bytes")
        : "auto:ratio=" + c.number("ratio");
  }

  @Override
  public KvCacheFormat format(MethodCall call) {
    return AutoPolicy.LAYER_FORMAT;
  }

  @Override
  public KvPolicy policy(MethodCall c, PolicyContext ctx) {
    CalibrationProfile p = c.profileFor(ctx);
    AutoSensitivity s;
    try {
      s = AutoSensitivity.of(p);
    } catch (CalibrationProfile.ProfileException e) {
      throw new KvSpecException(e.getMessage());
    }
    int scoped = 0;
    for (boolean b : ctx.layers()) {
      scoped += b ? 1 : 0;
    }
    int window = c.integer("window");
    boolean merge = c.bool("merge");
    long[] tokenBytes = AutoPolicy.tokenBytes(ctx.headDim(), merge);
    long heads = (long) scoped * ctx.kvHeads();
    IntToLongFunction budget;
    if (c.params().get("bytes") != null) {
      long bytes = (long) c.budget("bytes").value();
      // the smallest any sequence past the window can be: every head at its window in the
      // lowest level, plus its open tail block in F32
      long floor =
          heads
              * (window * tokenBytes[tokenBytes.length - 1]
                  + (AutoPolicy.BLOCK_TOKENS - 1) * tokenBytes[0]);
      if (bytes < floor) {
        throw new KvSpecException(
            String.format(
                Locale.ROOT,
                "%s is below the %d bytes the smallest plan takes (%d KV heads, each"
                    + " at its %d-token window in %s with an open F32 block)",
                label(c),
                floor,
                heads,
                window,
                AutoPolicy.LEVELS.get(AutoPolicy.LEVELS.size() - 1).name()));
      }
      budget = n -> bytes;
    } else {
      double ratio = c.number("ratio");
      long f16PerToken = heads * ctx.headDim() * 2L * 2L;
      budget = n -> (long) Math.floor(ratio * f16PerToken * n);
    }
    return new AutoPolicy(
        label(c),
        ctx.layers(),
        ctx.kvHeads(),
        ctx.headDim(),
        s.curves(merge),
        budget,
        c.params().get("bytes") != null,
        merge,
        null,
        window);
  }

  /** A byte budget holds whatever the length; a ratio at most its share of F32 past the prompt. */
  @Override
  public long heldTokens(MethodCall c, int prompt, int maxNew, double bytesPerToken) {
    if (c.params().get("bytes") != null) {
      long bytes = (long) c.budget("bytes").value();
      return Math.max(prompt, Math.min((long) prompt + maxNew, (long) (bytes / bytesPerToken) + 1));
    }
    return (long) prompt + maxNew;
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of("auto:ratio=0.25", "auto:ratio=0.15", "auto:ratio=0.1");
  }

  @Override
  public String specKeeping(int tokens) {
    return "auto:bytes=1GiB";
  }

  @Override
  public String specCompressing(int tokens) {
    return "auto:ratio=0.5,window=8";
  }
}
