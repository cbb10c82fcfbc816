package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.choice;
import static io.kvslim.kv.method.Knob.integer;
import static io.kvslim.kv.method.Knob.number;

import io.kvslim.kv.format.GearKeyFormat;
import io.kvslim.kv.format.GearValueFormat;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.store.KvCacheFormat;
import java.util.List;

/**
 * GEAR (Kang et al. 2024, "GEAR: An Efficient KV Cache Compression Recipe for Near-Lossless
 * Generative Inference of LLM", arXiv:2403.05527; METHODS.md H3), the GEAR-KIVI variant: per block
 * of {@code group} tokens and per head, keys and values each stored as a KIVI-quantized block plus
 * a rank-r power-iteration approximation of the residual plus exact outliers ({@link
 * GearKeyFormat}, {@link GearValueFormat}). New tokens wait in full precision (the authors' {@code
 * streaming_gap}) and are compressed a block at a time.
 *
 * <p>Defaults are the authors' run scripts ({@code GenerationBench/GenerationTest/
 * run_template_llama-3-8b.sh}, the GEAR lines): {@code --group_size 64 --loop 3 --rank 2 --rankv 2
 * --left 0.02 --streaming_gap 64}, 4 or 2 bits. One deviation: the authors compress the whole
 * prompt at once with {@code prefillrank 4}; here every block of 64 tokens, prompt or not, gets
 * {@code rank} (their streaming rank), so the factors scale with the length.
 */
public final class GearMethod implements KvMethod {
  @Override
  public String name() {
    return "gear";
  }

  @Override
  public Family family() {
    return Family.QUANTIZATION;
  }

  @Override
  public String paper() {
    return "Kang et al. 2024, GEAR: An Efficient KV Cache Compression Recipe for Near-Lossless"
        + " Generative Inference of LLM, arXiv:2403.05527";
  }

  @Override
  public String summary() {
    return "GEAR: KIVI codes + low-rank residual (power iteration) + exact outliers.";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        choice("bits", "4", "bits per quantized entry", "2", "4"),
        integer("group", "64", "tokens per block (key group) and channels per value group")
            .atLeast(8),
        integer("rank", "2", "rank of the residual's approximation per block (0: none)")
            .between(0, 16),
        integer("loop", "3", "power iterations").between(1, 16),
        number("outliers", "0.02", "fraction of each vector's entries kept exact (s)")
            .between(0, 0.5),
        integer("residual", "64", "recent tokens kept in full precision (a multiple of group)")
            .atLeast(0),
        choice(
            "rformat",
            "f16",
            "format of the recent tokens: fp16 as the authors' cache; f32 keeps them exact",
            "f16",
            "f32"));
  }

  @Override
  public void validate(MethodCall c) {
    if (c.integer("group") % 8 != 0) {
      throw new KvSpecException("gear:group=" + c.integer("group") + " must be a multiple of 8");
    }
    if (c.integer("residual") % c.integer("group") != 0) {
      throw new KvSpecException(
          "gear:residual="
              + c.integer("residual")
              + " must be a multiple of group="
              + c.integer("group"));
    }
  }

  @Override
  public KvCacheFormat format(MethodCall c) {
    int bits = Integer.parseInt(c.string("bits"));
    int group = c.integer("group");
    int rank = c.integer("rank");
    int loop = c.integer("loop");
    double outliers = c.number("outliers");
    return new KvCacheFormat(
        new GearKeyFormat(bits, rank, loop, outliers),
        new GearValueFormat(bits, group, rank, loop, outliers),
        group,
        c.integer("residual"),
        KvFormats.byName(c.string("rformat")),
        KvFormats.byName(c.string("rformat")));
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of("gear:bits=4", "gear:bits=2");
  }

  @Override
  public String specKeeping(int tokens) {
    return null;
  }

  @Override
  public String specCompressing(int tokens) {
    return "gear:bits=2,group=16,residual=16";
  }
}
