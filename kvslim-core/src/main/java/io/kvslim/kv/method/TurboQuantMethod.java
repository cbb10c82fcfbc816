package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.bool;
import static io.kvslim.kv.method.Knob.choice;
import static io.kvslim.kv.method.Knob.integer;

import io.kvslim.kv.format.Fp8E4m3Format;
import io.kvslim.kv.format.KvFormat;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.format.TurboQuantKeyFormat;
import io.kvslim.kv.format.TurboQuantProdKeyFormat;
import io.kvslim.kv.format.TurboQuantValueFormat;
import io.kvslim.kv.store.KvCacheFormat;
import java.util.List;
import java.util.Map;

/**
 * TurboQuant (Zandieh et al., "TurboQuant: Online Vector Quantization with Near-optimal Distortion
 * Rate", arXiv:2504.19874; METHODS.md N1) as vLLM ships it: keys rotated by a Hadamard matrix and
 * coded per coordinate by a Lloyd–Max codebook with an fp16 norm ({@link TurboQuantKeyFormat}),
 * values uniform per token ({@link TurboQuantValueFormat}), the first and last layers unquantized.
 *
 * <p>Presets are vLLM's (vllm-project/vllm, {@code
 * vllm/model_executor/layers/quantization/turboquant/config.py}, {@code TQ_PRESETS}, lines 20–41):
 * {@code k8v4} (keys cast to fp8 e4m3, {@link Fp8E4m3Format}, no rotation; values 4), {@code
 * 4bit_nc} (keys 4, values 4, norm correction), {@code k3v4_nc} (3, 4, nc), {@code 3bit_nc} (3, 3,
 * nc), plus the three without norm correction. {@code skip_layers} follows {@code
 * get_boundary_skip_layers} in the same file: n = min(skip_layers, layers/2), the first n and last
 * n layers keep the unquantized cache (fp16 by default, as vLLM's skipped layers keep the model's
 * 16-bit dtype). {@code qjl=true} gives the paper's TurboQuant_prod keys ({@link
 * TurboQuantProdKeyFormat}), which vLLM leaves out.
 *
 * <p>One deviation: a prefill chunk here attends over its own keys and values as stored
 * (quantized), where vLLM's prefill attends the chunk's raw K/V and reads only earlier chunks
 * quantized (METHODS.md N1 step 6); decode steps read the cache as vLLM's do, the new token's key
 * and value quantized first.
 */
public final class TurboQuantMethod implements KvMethod {
  /** Preset → {key bits, value bits, norm correction (1/0)}. */
  static final Map<String, int[]> PRESETS =
      Map.of(
          "k8v4", new int[] {8, 4, 0},
          "4bit_nc", new int[] {4, 4, 1},
          "k3v4_nc", new int[] {3, 4, 1},
          "3bit_nc", new int[] {3, 3, 1},
          "4bit", new int[] {4, 4, 0},
          "k3v4", new int[] {3, 4, 0},
          "3bit", new int[] {3, 3, 0});

  /** Seed of the QJL projection (vLLM's config keeps {@code seed: int = 42}, now unused). */
  static final long QJL_SEED = 42;

  @Override
  public String name() {
    return "turboquant";
  }

  @Override
  public Family family() {
    return Family.QUANTIZATION;
  }

  @Override
  public String paper() {
    return "Zandieh et al. 2025, TurboQuant: Online Vector Quantization with Near-optimal"
        + " Distortion Rate, arXiv:2504.19874 (as shipped in vLLM)";
  }

  @Override
  public String summary() {
    return "TurboQuant: Hadamard-rotated keys, Lloyd-Max codes + fp16 norm; uniform values.";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        choice(
            "preset",
            null,
            "vLLM's presets (keys/values bits, k8 = fp8 e4m3 keys, nc = norm correction); not with"
                + " kbits/vbits/nc",
            "k8v4",
            "4bit_nc",
            "k3v4_nc",
            "3bit_nc",
            "4bit",
            "k3v4",
            "3bit"),
        choice(
            "kbits",
            null,
            "key bits per coordinate, 8 = fp8 e4m3 keys without rotation (4 unless a preset says)",
            "2",
            "3",
            "4",
            "8"),
        choice("vbits", null, "value bits per channel (4 unless a preset says)", "2", "3", "4"),
        bool(
            "nc",
            null,
            "norm correction: unit-length centroid vectors (true unless a preset says)"),
        integer(
                "skip_layers",
                "2",
                "the first and last N layers stay unquantized (N at most half the layers)")
            .atLeast(0),
        choice("skip_format", "f16", "format of the unquantized layers", "f16", "f32"),
        bool(
            "qjl",
            "false",
            "the paper's TurboQuant_prod keys: kbits-1 codebook bits + a 1-bit QJL sketch of the"
                + " residual (unbiased scores; not in vLLM)"));
  }

  @Override
  public void validate(MethodCall c) {
    if (c.string("preset") != null
        && (c.string("kbits") != null
            || c.string("vbits") != null
            || c.params().get("nc") != null)) {
      throw new KvSpecException(
          "turboquant:preset="
              + c.string("preset")
              + " sets kbits, vbits and nc; give either a preset or those keys");
    }
    if (c.bool("qjl")) {
      String preset = c.string("preset");
      boolean nc =
          preset != null
              ? PRESETS.get(preset)[2] == 1
              : c.params().get("nc") != null && c.bool("nc");
      if (settings(c)[0] == 8 || nc) {
        throw new KvSpecException(
            "turboquant:qjl=true needs codebook keys without norm correction (kbits 2..4 and"
                + " nc=false, or a preset without _nc)");
      }
    }
    if ("8".equals(c.string("kbits")) && c.params().get("nc") != null && c.bool("nc")) {
      throw new KvSpecException(
          "turboquant:nc=true applies to codebook keys, not to kbits=8 (fp8 keys)");
    }
  }

  /** {key bits, value bits, norm correction (1/0)} of a call. */
  static int[] settings(MethodCall c) {
    String preset = c.string("preset");
    if (preset != null) {
      return PRESETS.get(preset);
    }
    int kbits = c.string("kbits") != null ? Integer.parseInt(c.string("kbits")) : 4;
    int vbits = c.string("vbits") != null ? Integer.parseInt(c.string("vbits")) : 4;
    boolean nc = kbits != 8 && !c.bool("qjl") && (c.params().get("nc") == null || c.bool("nc"));
    return new int[] {kbits, vbits, nc ? 1 : 0};
  }

  /** The quantized format (the layers not skipped). */
  @Override
  public KvCacheFormat format(MethodCall c) {
    int[] s = settings(c);
    KvFormat keys =
        s[0] == 8
            ? new Fp8E4m3Format()
            : c.bool("qjl")
                ? new TurboQuantProdKeyFormat(s[0], QJL_SEED)
                : new TurboQuantKeyFormat(s[0], s[2] == 1);
    return KvCacheFormat.of(keys, new TurboQuantValueFormat(s[1]));
  }

  /** The first and last n = min(skip_layers, layers/2) layers in {@code skip_format}. */
  @Override
  public KvCacheFormat format(MethodCall c, int layer, int layers) {
    int n = Math.min(c.integer("skip_layers"), layers / 2);
    if (layer < n || layer >= layers - n) {
      return KvCacheFormat.of(KvFormats.byName(c.string("skip_format")));
    }
    return format(c);
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of(
        "turboquant:preset=k8v4",
        "turboquant:preset=4bit_nc",
        "turboquant:preset=k3v4_nc",
        "turboquant:preset=3bit_nc",
        // every layer quantized: the codecs at their own compression (vLLM keeps 2 + 2 layers)
        "turboquant:preset=4bit_nc,skip_layers=0",
        "turboquant:preset=3bit_nc,skip_layers=0");
  }

  @Override
  public String specKeeping(int tokens) {
    return null;
  }

  @Override
  public String specCompressing(int tokens) {
    return "turboquant:preset=3bit_nc,skip_layers=0";
  }
}
