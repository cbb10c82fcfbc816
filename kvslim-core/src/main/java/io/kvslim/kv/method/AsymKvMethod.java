package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.choice;
import static io.kvslim.kv.method.Knob.integer;

import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.store.KvCacheFormat;
import java.util.List;

/**
 * AsymKV (Tao, Yu and Zhou 2024, "AsymKV: Enabling 1-Bit Quantization of KV Cache with Layer-Wise
 * Asymmetric Quantization Configurations", arXiv:2410.13212; METHODS.md Q7): KIVI's scheme (keys
 * per channel over a group of tokens, values per token over a group of channels, a full-precision
 * residual window; {@link KiviMethod}) with a bit width per layer and per matrix. Configuration
 * "AsymKV-l_k/l_v" (the paper's layer-wise asymmetric configuration; the section number was not
 * checked, the paper's text was not available here): layers {@code l < l_k} store keys at 2 bits
 * and the others at 1 bit; layers {@code l < l_v} store values at 2 bits and the others at 1 bit.
 * The 1-bit quantizer is KIVI's asymmetric one with one level: {@code s = max − min}, {@code q ∈
 * {0, 1}}, every element its group's min or max, threshold at the midpoint ({@code KiviKeyFormat},
 * {@code KiviValueFormat} with {@code bits = 1}).
 *
 * <p>No code by the authors was found (a search for an AsymKV repository found only an unrelated
 * 2025 paper of the same name, the-scale-lab/Asymkv); this follows the paper's description as
 * METHODS.md Q7 quotes it. Group and residual defaults are KIVI's (METHODS.md marks them unverified
 * for AsymKV). {@code l_k, l_v ≥ L} (the layer count) is KIVI-2bit on every layer.
 */
public final class AsymKvMethod implements KvMethod {
  @Override
  public String name() {
    return "asymkv";
  }

  @Override
  public Family family() {
    return Family.QUANTIZATION;
  }

  @Override
  public String paper() {
    return "Tao, Yu and Zhou 2024, AsymKV: Enabling 1-Bit Quantization of KV Cache with Layer-Wise"
        + " Asymmetric Quantization Configurations, arXiv:2410.13212 (COLING 2025)";
  }

  @Override
  public String summary() {
    return "AsymKV: KIVI with 2-bit keys below layer lk, 2-bit values below lv, 1 bit above.";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        integer(
                "lk",
                null,
                "layers below lk keep 2-bit keys, the others 1-bit keys (half the layers unless"
                    + " given)")
            .atLeast(0),
        integer(
                "lv",
                null,
                "layers below lv keep 2-bit values, the others 1-bit values (0 unless given)")
            .atLeast(0),
        integer("group", "32", "tokens per key group and channels per value group").atLeast(1),
        integer("residual", "128", "recent tokens kept in full precision (a multiple of group)")
            .atLeast(0),
        choice(
            "rformat",
            "f16",
            "format of the residual window: KIVI's fp16; f32 keeps it exact; q8_0 makes it 1.9x"
                + " smaller",
            "f16",
            "f32",
            "q8_0"));
  }

  @Override
  public void validate(MethodCall c) {
    if (c.integer("residual") % c.integer("group") != 0) {
      throw new KvSpecException(
          "asymkv:residual="
              + c.integer("residual")
              + " must be a multiple of group="
              + c.integer("group"));
    }
    if (c.integer("group") % 8 != 0) {
      throw new KvSpecException(
          "asymkv:group="
              + c.integer("group")
              + " must be a multiple of 8 (1-bit codes fill bytes)");
    }
  }

  /**
   * l_k of a model with {@code layers} layers: the knob, or half the layers when it is unset (with
   * l_v = 0 that quantizes 75% of the key and value matrices to 1 bit, the share the paper's
   * abstract reports; unverified as the paper's default).
   */
  static int lk(MethodCall c, int layers) {
    return c.params().get("lk") != null ? c.integer("lk") : layers / 2;
  }

  /** l_v: the knob, or 0 (every layer's values at 1 bit) when it is unset. */
  static int lv(MethodCall c) {
    return c.params().get("lv") != null ? c.integer("lv") : 0;
  }

  /** Key bits of layer {@code layer}: 2 below l_k, 1 from there on. */
  public static int keyBits(MethodCall c, int layer, int layers) {
    return layer < lk(c, layers) ? 2 : 1;
  }

  /** Value bits of layer {@code layer}: 2 below l_v, 1 from there on. */
  public static int valueBits(MethodCall c, int layer) {
    return layer < lv(c) ? 2 : 1;
  }

  private static KvCacheFormat kivi(MethodCall c, int keyBits, int valueBits) {
    return KvCacheFormat.kivi(keyBits, valueBits, c.integer("group"), c.integer("residual"))
        .withResidual(c.integer("residual"), KvFormats.byName(c.string("rformat")));
  }

  /** The format of layer 0 (for callers without a layer); the cache asks per layer. */
  @Override
  public KvCacheFormat format(MethodCall c) {
    return format(c, 0, 1);
  }

  @Override
  public KvCacheFormat format(MethodCall c, int layer, int layers) {
    return kivi(c, keyBits(c, layer, layers), valueBits(c, layer));
  }

  /** For the bundled 6-layer model: 2-bit keys in 4 layers, values in 2; keys 2, values 1 bit. */
  @Override
  public List<String> benchmarkSpecs() {
    return List.of("asymkv:lk=4,lv=2", "asymkv:lk=2,lv=0");
  }

  @Override
  public String specKeeping(int tokens) {
    int residual = (tokens + 31) / 32 * 32;
    return "asymkv:lk=0,lv=0,group=32,residual=" + residual + ",rformat=f32";
  }

  @Override
  public String specCompressing(int tokens) {
    return "asymkv:lk=1,lv=0,group=32,residual=32";
  }
}
