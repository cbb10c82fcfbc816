package io.kvslim.kv.format;

import io.kvslim.ggml.Q4_1Codec;
import io.kvslim.ggml.Q5_0Codec;
import io.kvslim.ggml.Q5_1Codec;
import java.util.List;

/** The formats by name, one place for the names the CLI and specs accept. */
public final class KvFormats {
  private KvFormats() {}

  public static final KvFormat F32 = new F32Format();
  public static final KvFormat F16 = new F16Format();
  public static final KvFormat BF16 = new Bf16Format();
  public static final KvFormat Q8_0 = new Q8_0Format();
  public static final KvFormat Q4_0 = new Q4_0Format();
  public static final KvFormat Q4_1 = new GgmlBlockFormat("q4_1", Q4_1Codec.INSTANCE);
  public static final KvFormat Q5_0 = new GgmlBlockFormat("q5_0", Q5_0Codec.INSTANCE);
  public static final KvFormat Q5_1 = new GgmlBlockFormat("q5_1", Q5_1Codec.INSTANCE);

  /** The fixed-name formats: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1. */
  public static final List<KvFormat> NAMED = List.of(F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1);

  /**
   * A format by name: one of {@link #NAMED}, {@code kivi_k<bits>[_g<group>]} (KIVI keys, one group
   * per block or groups of that many tokens) or {@code kivi_v<bits>[_g<group>]} (KIVI values, group
   * 32 by default).
   *
   * @throws IllegalArgumentException naming the bad name and the accepted ones
   */
  public static KvFormat byName(String name) {
    String n = name.trim().toLowerCase(java.util.Locale.ROOT);
    for (KvFormat f : NAMED) {
      if (f.name().equals(n)) {
        return f;
      }
    }
    try {
      if (n.startsWith("kivi_k")) {
        String rest = n.substring(6);
        int g = rest.indexOf("_g");
        return g < 0
            ? new KiviKeyFormat(Integer.parseInt(rest))
            : new KiviKeyFormat(
                Integer.parseInt(rest.substring(0, g)), Integer.parseInt(rest.substring(g + 2)));
      }
      if (n.startsWith("kivi_v")) {
        String rest = n.substring(6);
        int g = rest.indexOf("_g");
        return g < 0
            ? new KiviValueFormat(Integer.parseInt(rest), 32)
            : new KiviValueFormat(
                Integer.parseInt(rest.substring(0, g)), Integer.parseInt(rest.substring(g + 2)));
      }
    } catch (NumberFormatException e) {
      // fall through to the message below
    }
    throw new IllegalArgumentException(
        "unknown KV format '"
            + name
            + "' (accepted: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, kivi_k<bits>[_g<group>],"
            + " kivi_v<bits>[_g<group>])");
  }
}
