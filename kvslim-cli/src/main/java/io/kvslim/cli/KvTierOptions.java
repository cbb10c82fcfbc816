package io.kvslim.cli;

import io.kvslim.kv.store.ColdStorage;
import io.kvslim.kv.tier.KvTier;
import io.kvslim.kv.tier.PrefixCache;
import io.kvslim.kv.tier.TierColdStorage;
import io.kvslim.kv.tier.TierStats;
import io.kvslim.model.ModelConfig;
import io.kvslim.model.Numerics;
import io.kvslim.server.KvTiers;
import java.util.ArrayList;
import java.util.List;
import picocli.CommandLine.Option;

/** The {@code --kv-tier} option shared by {@code serve}, {@code generate} and {@code bench}. */
public final class KvTierOptions {
  @Option(
      names = "--kv-tier",
      paramLabel = "TIER",
      description =
          "A KV tier below RAM holding prompt prefixes' blocks in their compressed format:"
              + " disk:DIR or redis://HOST:PORT; repeatable, looked up in order. A prompt whose"
              + " prefix a tier holds restores it instead of prefilling it (storage-format specs"
              + " without eviction); the first also holds the cold blocks of spill=true methods.")
  List<String> tiers = new ArrayList<>();

  /** Checks the option's form before any model is loaded. */
  public void check() {
    for (String t : tiers) {
      if (!(t.startsWith("disk:") && t.length() > 5)
          && !t.startsWith("redis://")
          && !t.startsWith("rediss://")) {
        throw new IllegalArgumentException(
            "--kv-tier must be disk:DIR or redis://HOST:PORT, got '" + t + "'");
      }
    }
  }

  /**
   * Where {@code spill=true} methods put their cold blocks: the first tier ({@code disk:DIR}: a
   * spill file per cache in DIR; {@code redis://}: the blocks in Redis, a local spill file when it
   * is unreachable), or null without {@code --kv-tier}. The caller closes it.
   */
  public ColdStorage spillStorage() {
    if (tiers.isEmpty()) {
      return null;
    }
    return TierColdStorage.of(KvTiers.open(tiers.get(0)), System.err::println);
  }

  /** The prefix cache over the tiers for this model, or null without {@code --kv-tier}. */
  public PrefixCache open(ModelConfig config, Numerics numerics) {
    if (tiers.isEmpty()) {
      return null;
    }
    List<KvTier> opened = KvTiers.open(tiers);
    return new PrefixCache(
        opened,
        PrefixCache.identityOf(config, numerics.name()),
        new TierStats(),
        System.err::println);
  }
}
