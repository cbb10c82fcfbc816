package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.choice;
import static io.kvslim.kv.method.Knob.integer;

import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.store.KvCacheFormat;
import java.util.List;

/**
 * KIVI (Liu et al. 2024, "KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache",
 * arXiv:2402.02750 §3.3): keys quantized per channel, values per token, asymmetric, with a window
 * of recent tokens in full precision; the formats ({@code KiviKeyFormat}, {@code KiviValueFormat})
 * and {@code HeadStore}'s residual have the algorithm.
 */
public final class KiviMethod implements KvMethod {
  @Override
  public String name() {
    return "kivi";
  }

  @Override
  public Family family() {
    return Family.QUANTIZATION;
  }

  @Override
  public String paper() {
    return "Liu et al. 2024, KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache,"
        + " arXiv:2402.02750 §3.3";
  }

  @Override
  public String summary() {
    return "KIVI: keys per channel, values per token, asymmetric, fp residual.";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        choice("kbits", "2", "key bits", "2", "4", "8"),
        choice("vbits", "2", "value bits", "2", "4", "8"),
        integer("group", "32", "tokens per key group and channels per value group").atLeast(1),
        integer("residual", "128", "recent tokens kept in full precision (a multiple of group)")
            .atLeast(0),
        choice(
            "rformat",
            "f16",
            "format of the residual window: the paper's fp16; f32 keeps it exact; q8_0 is a"
                + " deviation from the paper that makes the window 1.9x smaller",
            "f16",
            "f32",
            "q8_0"));
  }

  @Override
  public void validate(MethodCall c) {
    if (c.integer("residual") % c.integer("group") != 0) {
      throw new KvSpecException(
          "kivi:residual="
              + c.integer("residual")
              + " must be a multiple of group="
              + c.integer("group"));
    }
  }

  @Override
  public KvCacheFormat format(MethodCall c) {
    return KvCacheFormat.kivi(
            Integer.parseInt(c.string("kbits")),
            Integer.parseInt(c.string("vbits")),
            c.integer("group"),
            c.integer("residual"))
        .withResidual(c.integer("residual"), KvFormats.byName(c.string("rformat")));
  }

  /** With an F32 residual at least as long as the sequence nothing is quantized. */
  @Override
  public List<String> benchmarkSpecs() {
    return List.of(
        "kivi:kbits=4,vbits=4,group=32,residual=128", "kivi:kbits=2,vbits=2,group=32,residual=128");
  }

  @Override
  public String specKeeping(int tokens) {
    int residual = (tokens + 31) / 32 * 32;
    return "kivi:kbits=2,vbits=2,group=32,residual=" + residual + ",rformat=f32";
  }

  @Override
  public String specCompressing(int tokens) {
    return "kivi:kbits=2,vbits=2,group=32,residual=32";
  }
}
