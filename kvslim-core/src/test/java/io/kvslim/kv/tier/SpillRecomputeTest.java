package io.kvslim.kv.tier;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.SharedData;
import io.kvslim.SpmEngineTest;
import io.kvslim.engine.Engine;
import io.kvslim.engine.Generator;
import io.kvslim.engine.KvSpecs;
import io.kvslim.engine.Sampler;
import io.kvslim.engine.SamplerConfig;
import io.kvslim.kv.KvUnavailableException;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.ColdStorage;
import io.kvslim.kv.store.ColdStore;
import io.kvslim.kv.store.SpillStats;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * A spilled block lost mid-generation (flipped in the tier, or its key gone) is recomputed, never
 * used and never the end of the request: {@link Generator} recomputes the sequence from its token
 * ids into a cache spilling to a local file and gives the greedy tokens of the same method with
 * everything in RAM, with one warning line and the recompute counted; a recompute that loses a
 * block again ends in one sentence with the pool balanced. {@code SpillRecomputeRedisTest} in the
 * server module kills a real Redis.
 */
class SpillRecomputeTest extends SpmEngineTest {
  private static final int PROMPT = 201;
  private static final int TOKENS = 8;

  /** The greedy tokens of {@code spec} from a fresh engine drawing from {@code pool}. */
  private static Generator.Result generate(
      String spec, BlockPool pool, int[] prompt, Generator.TokenListener l, List<String> warn) {
    try (Engine e = new Engine(model, 2, KvSpecs.factory(KvSpec.parse(spec), pool))) {
      return new Generator(e)
          .withWarnings(warn::add)
          .generate(prompt, TOKENS, new Sampler(SamplerConfig.GREEDY), t -> false, l);
    }
  }

  @ParameterizedTest
  @CsvSource({"0,true", "1,false", "2,true"})
  void aLostBlockMidGenerationIsRecomputedWithTheRamOnlyTokens(int which, boolean flip) {
    SharedData.require();
    String spec = SpillIntoTierTest.SPECS[which];
    int[] prompt = tokens(PROMPT, 40 + which);
    List<String> none = new ArrayList<>();
    int[] ram = generate(spec, new BlockPool(), prompt, t -> true, none).tokens();
    SpillIntoTierTest.MapTier tier = new SpillIntoTierTest.MapTier();
    List<String> warnings = new ArrayList<>();
    TierColdStorage storage = new TierColdStorage(tier, warnings::add);
    BlockPool pool = new BlockPool().withColdStorage(storage);
    int[] seen = {0};
    Generator.Result r =
        generate(
            spec + ",spill=true",
            pool,
            prompt,
            t -> {
              if (++seen[0] == 3) { // the tier's copies go bad between two decode steps
                assertThat(tier.map).isNotEmpty();
                for (Map.Entry<String, byte[]> e : new ArrayList<>(tier.map.entrySet())) {
                  if (flip) {
                    for (int i = 0; i < e.getValue().length; i++) {
                      e.getValue()[i] ^= 0x04; // whatever sub-block is read
                    }
                  } else {
                    tier.map.remove(e.getKey());
                  }
                }
              }
              return true;
            },
            warnings);
    assertThat(r.tokens())
        .as("%s after a %s block", spec, flip ? "flipped" : "missing")
        .isEqualTo(ram);
    assertThat(r.generatedTokens()).isEqualTo(TOKENS);
    SpillStats st = storage.stats();
    assertThat(st.recomputes.get()).isEqualTo(1);
    assertThat(warnings).hasSize(1);
    assertThat(warnings.get(0))
        .startsWith("kvslim: warning: a spilled KV block")
        .contains(flip ? "failed its checksum" : "is missing from the KV tier map:test")
        .contains("recomputing the sequence's " + (PROMPT + 3) + " tokens")
        .doesNotContain("\n");
    assertThat(pool.usedBytes()).isZero();
    assertThat(st.coldBytes.get()).isZero();
    assertThat(tier.map).as("the broken cache's keys were deleted").isEmpty();
  }

  /** A tier that has lost every block it was given. */
  static final class LosingTier extends SpillIntoTierTest.MapTier {
    @Override
    public byte[] get(String key) {
      return null;
    }

    @Override
    public List<byte[]> getAll(List<String> keys) {
      return new ArrayList<>(java.util.Collections.nCopies(keys.size(), (byte[]) null));
    }
  }

  @Test
  void aRecomputeThatLosesABlockAgainFailsInOneSentence() {
    SharedData.require();
    String spec = SpillIntoTierTest.SPECS[1] + ",spill=true";
    int[] prompt = tokens(PROMPT, 44);
    LosingTier tier = new LosingTier();
    TierColdStorage inner = new TierColdStorage(tier, w -> {});
    // a storage without a local place for recomputed caches: they spill into the losing tier too
    ColdStorage losing =
        new ColdStorage() {
          @Override
          public ColdStore open() {
            return inner.open();
          }

          @Override
          public SpillStats stats() {
            return inner.stats();
          }

          @Override
          public String name() {
            return inner.name();
          }
        };
    BlockPool pool = new BlockPool().withColdStorage(losing);
    List<String> warnings = new ArrayList<>();
    assertThatThrownBy(() -> generate(spec, pool, prompt, t -> true, warnings))
        .isInstanceOf(KvUnavailableException.class)
        .hasMessageStartingWith("recomputing the sequence after a lost spilled KV block failed")
        .hasMessageContaining("is missing from the KV tier map:test")
        .hasMessageNotContaining("\n");
    assertThat(losing.stats().recomputes.get()).isEqualTo(1);
    assertThat(warnings).hasSize(1);
    assertThat(pool.usedBytes()).isZero();
    assertThat(losing.stats().coldBytes.get()).isZero();
  }
}
