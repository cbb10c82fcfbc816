package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.choice;

import io.kvslim.calibrate.CalibrationProfile;
import io.kvslim.calibrate.KvQuantCalibration;
import io.kvslim.calibrate.KvQuantTables;
import io.kvslim.kv.format.KvQuantKeyFormat;
import io.kvslim.kv.format.KvQuantValueFormat;
import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.store.KvCacheFormat;
import java.util.List;
import java.util.Set;

/**
 * KVQuant (Hooper et al. 2024, "KVQuant: Towards 10 Million Context Length LLM Inference with KV
 * Cache Quantization", arXiv:2401.18079; METHODS.md Q4), from the authors' simulated quantizer
 * ({@code quant/kvquant/simquant_module_quantizer.py} and {@code quant/llama_simquant.py} of
 * SqueezeAILab/KVQuant): keys quantized per channel <em>before</em> RoPE ({@link KvQuantKeyFormat};
 * the cache stores them as projected and rotates each key at its own position when it attends, as
 * the authors quantize the {@code k_proj} output, {@code llama_simquant.py} lines 336–341), values
 * per token ({@link KvQuantValueFormat}), both coded by per-layer non-uniform codebooks from
 * calibration, with per-vector dense-and-sparse outliers in fp16.
 *
 * <p>The tables (per-channel key offsets and ranges, the codebooks) come from the calibration
 * profile ({@code @profile=FILE}, written by {@code kvslim calibrate}; {@link KvQuantCalibration}),
 * which is refused for another model. The codebooks are fitted by k-means, unweighted ({@code
 * weights=uniform}) or weighted by the squared activation ({@code act2}); the authors' Fisher
 * weights need gradients this engine does not compute.
 *
 * <p>The first token of each head (the attention sink; {@code sink}, the authors' {@code
 * first_few_fp16}) is kept in fp16, keys and values. Not implemented: Q-Norm (off in the authors'
 * defaults).
 */
public final class KvQuantMethod implements KvMethod {

  @Override
  public String name() {
    return "kvquant";
  }

  @Override
  public Family family() {
    return Family.QUANTIZATION;
  }

  @Override
  public String paper() {
    return "Hooper et al. 2024, KVQuant: Towards 10 Million Context Length LLM Inference with KV"
        + " Cache Quantization, arXiv:2401.18079";
  }

  @Override
  public String summary() {
    return "KVQuant: pre-RoPE per-channel keys, per-token values, calibrated non-uniform codes,"
        + " sparse fp16 outliers.";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        choice("bits", "3", "bits per key and value element (nuq2, nuq3, nuq4)", "2", "3", "4"),
        choice(
            "weights",
            "act2",
            "k-means sample weights of the codebooks: uniform, or act2 (squared activation, a"
                + " stand-in for the paper's Fisher information)",
            KvQuantTables.WEIGHTINGS),
        Knob.integer(
                "sink",
                "1",
                "first tokens of each head kept in fp16 (the authors' first_few_fp16; 0 for none)")
            .between(0, 32));
  }

  @Override
  public Set<Need> needs() {
    return Set.of(Need.CALIBRATION);
  }

  /** Checks the profile against the model (the formats themselves are built without it). */
  @Override
  public KvPolicy policy(MethodCall c, PolicyContext context) {
    CalibrationProfile p = c.profileFor(context);
    tables(c, p);
    return null;
  }

  private static KvQuantTables tables(MethodCall c, CalibrationProfile p) {
    if (p == null) {
      throw new KvSpecException(KvSpec.missingProfile(c.method()));
    }
    if (p.kvQuant() == null) {
      throw new KvSpecException(
          "calibration profile "
              + (p.source() == null ? "" : p.source() + " ")
              + "has no kvquant tables; make it again with 'kvslim calibrate'");
    }
    return p.kvQuant();
  }

  @Override
  public KvCacheFormat format(MethodCall c) {
    return format(c, 0, 1);
  }

  /**
   * Per layer, as f32: the key and the value codebooks (2^bits centroids each) and every KV head's
   * key offset and range per channel.
   */
  @Override
  public long tableBytes(MethodCall c, int kvHeads, int headDim) {
    int levels = 1 << Integer.parseInt(c.string("bits"));
    return 4L * (2L * levels + 2L * kvHeads * headDim);
  }

  @Override
  public KvCacheFormat format(MethodCall c, int layer, int layers) {
    KvQuantTables t = tables(c, c.profile());
    if (t.layers() != layers) {
      throw new KvSpecException(
          "the kvquant tables of calibration profile "
              + c.profile().source()
              + " cover "
              + t.layers()
              + " layers, this model has "
              + layers);
    }
    int bits = Integer.parseInt(c.string("bits"));
    String w = c.string("weights");
    int headDim = t.keyOffset()[layer][0].length;
    return KvCacheFormat.of(
        new KvQuantKeyFormat(
            bits,
            t.codebook(w, false, bits, layer),
            t.keyOffset()[layer],
            t.keyRange()[layer],
            KvQuantCalibration.keyOutliers(headDim, t.outlierFraction()),
            c.integer("sink")),
        new KvQuantValueFormat(
            bits,
            t.codebook(w, true, bits, layer),
            KvQuantCalibration.valueOutliersPerSide(headDim, t.outlierFraction())));
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of(
        "kvquant:bits=4",
        "kvquant:bits=3",
        "kvquant:bits=2",
        "kvquant:bits=3 + snapkv:budget=25%,window=32");
  }

  @Override
  public String specKeeping(int tokens) {
    return null;
  }

  @Override
  public String specCompressing(int tokens) {
    return "kvquant:bits=3";
  }
}
