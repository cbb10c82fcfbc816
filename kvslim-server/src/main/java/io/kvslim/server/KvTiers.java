package io.kvslim.server;

import io.kvslim.kv.tier.DiskTier;
import io.kvslim.kv.tier.KvTier;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** The {@code --kv-tier} option: {@code disk:DIR} or {@code redis://HOST:PORT}, in order. */
public final class KvTiers {
  private KvTiers() {}

  /**
   * The tiers {@code specs} name, first looked up first.
   *
   * @throws IllegalArgumentException naming a spec that is neither form
   */
  public static List<KvTier> open(List<String> specs) {
    List<KvTier> tiers = new ArrayList<>();
    try {
      for (String s : specs) {
        tiers.add(open(s));
      }
    } catch (RuntimeException e) {
      tiers.forEach(KvTier::close);
      throw e;
    }
    return tiers;
  }

  /** One tier; see {@link #open(List)}. */
  public static KvTier open(String spec) {
    if (spec.startsWith("disk:") && spec.length() > 5) {
      return new DiskTier(Path.of(spec.substring(5)));
    }
    if (spec.startsWith("redis://") || spec.startsWith("rediss://")) {
      return new RedisTier(spec);
    }
    throw new IllegalArgumentException(
        "--kv-tier must be disk:DIR or redis://HOST:PORT, got '" + spec + "'");
  }
}
