package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.choice;
import static io.kvslim.kv.method.Knob.integer;

import io.kvslim.calibrate.CalibrationProfile;
import io.kvslim.calibrate.CqCodebooks;
import io.kvslim.kv.format.CqFormat;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.store.KvCacheFormat;
import java.util.List;
import java.util.Set;

/**
 * Coupled Quantization (Zhang et al. 2024, "KV Cache is 1 Bit Per Channel: Efficient Large Language
 * Model Inference with Coupled Quantization", arXiv:2405.03917; METHODS.md Q5): keys and values
 * stored as one 8-bit codebook index per group of {@code c} channels ({@link CqFormat}), with the
 * layer's k-means codebooks from the calibration profile ({@link CqCodebooks}, written by {@code
 * kvslim calibrate}). {@code c=2} is CQ-2c8b (4 bits per channel), {@code c=4} CQ-4c8b (2), {@code
 * c=8} CQ-8c8b (1).
 *
 * <p>CPU-faithful version, labelled: uniform k-means instead of the paper's Fisher-guided centroids
 * (which need gradients); one codebook per layer for all its KV heads by default, one per (layer,
 * KV head) as in the paper with {@code codebooks=head}; keys quantized as stored (after RoPE). The
 * authors' code is not public (the paper links none; a search for a repository of the method found
 * only unrelated ones), so this follows the paper's §3 and METHODS.md Q5.
 */
public final class CqMethod implements KvMethod {
  @Override
  public String name() {
    return "cq";
  }

  @Override
  public Family family() {
    return Family.QUANTIZATION;
  }

  @Override
  public String paper() {
    return "Zhang et al. 2024, KV Cache is 1 Bit Per Channel: Efficient Large Language Model"
        + " Inference with Coupled Quantization, arXiv:2405.03917 §3";
  }

  @Override
  public String summary() {
    return "Coupled Quantization: c channels per 8-bit k-means codebook index, keys and values.";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        choice(
            "c",
            "4",
            "channels coupled per 8-bit code: 2 = 4 bits per channel, 4 = 2, 8 = 1",
            "2",
            "4",
            "8"),
        integer(
                "residual",
                "0",
                "recent tokens kept unquantized (a multiple of 32; the paper's optional window)")
            .atLeast(0),
        choice("rformat", "f16", "format of the recent window", "f16", "f32"),
        choice(
            "codebooks",
            "layer",
            "one codebook per layer for all its KV heads, or one per (layer, KV head) as in the"
                + " paper (KV heads times the table bytes)",
            "layer",
            "head"));
  }

  @Override
  public Set<Need> needs() {
    return Set.of(Need.CALIBRATION);
  }

  @Override
  public void validate(MethodCall c) {
    if (c.integer("residual") % KvCacheFormat.DEFAULT_BLOCK_TOKENS != 0) {
      throw new KvSpecException(
          "cq:residual="
              + c.integer("residual")
              + " must be a multiple of "
              + KvCacheFormat.DEFAULT_BLOCK_TOKENS);
    }
  }

  /** Checks the profile against the model (the codebooks are read by {@link #format}). */
  @Override
  public KvPolicy policy(MethodCall call, PolicyContext context) {
    call.profileFor(context);
    return null;
  }

  /** Needs the layer: every layer has its own codebooks. */
  @Override
  public KvCacheFormat format(MethodCall call) {
    throw new KvSpecException("cq has a codebook per layer; ask for a layer's format");
  }

  /**
   * Per layer: the key and the value codebooks, {@value CqFormat#CENTROIDS} × d f32 each, once or
   * (codebooks=head) once per KV head.
   */
  @Override
  public long tableBytes(MethodCall call, int kvHeads, int headDim) {
    long layer = 2L * 4 * CqFormat.CENTROIDS * headDim;
    return call.string("codebooks").equals("head") ? kvHeads * layer : layer;
  }

  @Override
  public KvCacheFormat format(MethodCall call, int layer, int layers) {
    CalibrationProfile p = call.profile();
    if (p == null) {
      throw new KvSpecException(KvSpec.missingProfile(this));
    }
    int c = Integer.parseInt(call.string("c"));
    CqCodebooks books = p.cq();
    String source = p.source() == null ? "the calibration profile" : p.source().toString();
    if (books == null || books.book(c, layer, false) == null) {
      throw new KvSpecException(
          source
              + " has no cq codebooks for c="
              + c
              + "; make a new one with 'kvslim calibrate -f TEXT --out profile.json'");
    }
    if (layer >= p.model().layers()) {
      throw new KvSpecException(source + " has cq codebooks for " + p.model().layers() + " layers");
    }
    String origin = "from " + source + ", measured on " + p.model().file();
    KvCacheFormat f;
    if (call.string("codebooks").equals("head")) {
      int kv = p.model().kvHeads();
      if (books.headBook(c, layer, 0, false) == null) {
        throw new KvSpecException(
            source
                + " has no per-head cq codebooks; make a new one with 'kvslim calibrate -f TEXT"
                + " --out profile.json'");
      }
      float[][] k = new float[kv][];
      float[][] v = new float[kv][];
      for (int g = 0; g < kv; g++) {
        k[g] = books.headBook(c, layer, g, false);
        v[g] = books.headBook(c, layer, g, true);
      }
      f =
          KvCacheFormat.of(
              CqFormat.perHead(c, k, "k" + layer, origin),
              CqFormat.perHead(c, v, "v" + layer, origin));
    } else {
      f =
          KvCacheFormat.of(
              new CqFormat(c, books.book(c, layer, false), "k" + layer, origin),
              new CqFormat(c, books.book(c, layer, true), "v" + layer, origin));
    }
    int residual = call.integer("residual");
    return residual > 0 ? f.withResidual(residual, KvFormats.byName(call.string("rformat"))) : f;
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of("cq:c=2", "cq:c=4", "cq:c=8");
  }

  @Override
  public String specKeeping(int tokens) {
    return null;
  }

  @Override
  public String specCompressing(int tokens) {
    return "cq:c=4";
  }
}
