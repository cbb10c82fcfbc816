package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.choice;
import static io.kvslim.kv.method.Knob.integer;

import io.kvslim.calibrate.CalibrationProfile;
import io.kvslim.calibrate.LexicoDictionaries;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.format.LexicoFormat;
import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.store.KvCacheFormat;
import java.util.List;
import java.util.Set;

/**
 * Lexico (Kim et al., "Lexico: Extreme KV Cache Compression via Sparse Coding over Universal
 * Dictionaries", arXiv:2412.08890; METHODS.md Q9): every key and value is stored as {@code s} atoms
 * of its layer's dictionary chosen by orthogonal matching pursuit, a 12-bit index and an fp8
 * coefficient each ({@link LexicoFormat}); the dictionaries come from the calibration profile
 * ({@link LexicoDictionaries}, written by {@code kvslim calibrate}). The most recent {@code
 * residual} tokens stay in {@code rformat} (the authors' {@code buffer_length}, 128 in {@code
 * LexicoCacheConfig}, krafton-ai/lexico {@code lexico/cache_utils.py}).
 *
 * <p>CPU-faithful version, labelled: dictionaries of {@value LexicoDictionaries#ATOMS} atoms
 * learned on the calibration text by a few closed-form least-squares rounds (not the authors' Adam
 * training on WikiText-103 with 4096 atoms); one dictionary per layer for all its KV heads; keys
 * coded as stored (after RoPE); the window is refreshed per block of 32 tokens (the store's block),
 * not the authors' approximation_length batches.
 */
public final class LexicoMethod implements KvMethod {
  @Override
  public String name() {
    return "lexico";
  }

  @Override
  public Family family() {
    return Family.QUANTIZATION;
  }

  @Override
  public String paper() {
    return "Kim et al. 2024, Lexico: Extreme KV Cache Compression via Sparse Coding over Universal"
        + " Dictionaries, arXiv:2412.08890";
  }

  @Override
  public String summary() {
    return "Lexico: each key and value as s atoms of a learned per-layer dictionary (OMP codes).";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        integer("s", "8", "atoms per key or value (12-bit index + fp8 coefficient each)")
            .between(1, 128),
        integer(
                "residual",
                "128",
                "recent tokens kept uncoded (a multiple of 32; the authors' buffer_length)")
            .atLeast(0),
        choice("rformat", "f16", "format of the recent window", "f16", "f32"));
  }

  @Override
  public Set<Need> needs() {
    return Set.of(Need.CALIBRATION);
  }

  @Override
  public void validate(MethodCall c) {
    if (c.integer("residual") % KvCacheFormat.DEFAULT_BLOCK_TOKENS != 0) {
      throw new KvSpecException(
          "lexico:residual="
              + c.integer("residual")
              + " must be a multiple of "
              + KvCacheFormat.DEFAULT_BLOCK_TOKENS);
    }
  }

  /** Checks the profile against the model (the dictionaries are read by {@link #format}). */
  @Override
  public KvPolicy policy(MethodCall call, PolicyContext context) {
    call.profileFor(context);
    return null;
  }

  /** Needs the layer: every layer has its own dictionaries. */
  @Override
  public KvCacheFormat format(MethodCall call) {
    throw new KvSpecException("lexico has a dictionary per layer; ask for a layer's format");
  }

  /** Per layer: the key and the value dictionaries, N atoms × d f32 each (N from the profile). */
  @Override
  public long tableBytes(MethodCall call, int kvHeads, int headDim) {
    CalibrationProfile p = call.profile();
    if (p == null || p.lexico() == null) {
      throw new KvSpecException(KvSpec.missingProfile(this));
    }
    return 2L * 4 * p.lexico().atoms() * headDim;
  }

  @Override
  public KvCacheFormat format(MethodCall call, int layer, int layers) {
    CalibrationProfile p = call.profile();
    if (p == null) {
      throw new KvSpecException(KvSpec.missingProfile(this));
    }
    LexicoDictionaries dicts = p.lexico();
    String source = p.source() == null ? "the calibration profile" : p.source().toString();
    if (dicts == null) {
      throw new KvSpecException(
          source
              + " has no lexico dictionaries; make a new one with 'kvslim calibrate -f TEXT --out"
              + " profile.json'");
    }
    if (layer >= p.model().layers()) {
      throw new KvSpecException(
          source + " has lexico dictionaries for " + p.model().layers() + " layers");
    }
    int s = call.integer("s");
    String origin = "from " + source + ", measured on " + p.model().file();
    KvCacheFormat f =
        KvCacheFormat.of(
            new LexicoFormat(dicts.dictionary(layer, false), dicts.atoms(), s, "k" + layer, origin),
            new LexicoFormat(dicts.dictionary(layer, true), dicts.atoms(), s, "v" + layer, origin));
    int residual = call.integer("residual");
    return residual > 0 ? f.withResidual(residual, KvFormats.byName(call.string("rformat"))) : f;
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of("lexico:s=8", "lexico:s=16");
  }

  @Override
  public String specKeeping(int tokens) {
    return null;
  }

  @Override
  public String specCompressing(int tokens) {
    return "lexico:s=8";
  }
}
