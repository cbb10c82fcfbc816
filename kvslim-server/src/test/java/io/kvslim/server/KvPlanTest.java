package io.kvslim.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.engine.Engine;
import io.kvslim.engine.Generator;
import io.kvslim.engine.KvCacheFactory;
import io.kvslim.engine.Sampler;
import io.kvslim.engine.SamplerConfig;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

class KvPlanTest {
  @Test
  void aRequestSpecNamingAProfileIsRefusedHoweverTheOptionIsSpaced() {
    // the spec parser trims an option (every char up to U+0020) before it reads "profile=", so
    // the check must see through control characters as well as spaces and case
    for (String kv :
        new String[] {
          "duo@profile=/etc/passwd",
          "duo@ profile=/dev/zero",
          "duo@\u0001profile=/dev/zero",
          "snapkv:budget=64 + kvquant:bits=3@\tPROFILE=x"
        }) {
      assertThat(KvPlan.namesProfile(kv)).as(kv).isTrue();
      assertThatThrownBy(() -> KvPlan.refuseProfile(kv))
          .as(kv)
          .isInstanceOf(ApiException.class)
          .hasMessageStartingWith("a request's kv spec may not name a profile file");
    }
    assertThat(KvPlan.namesProfile("snapkv:budget=64 + q8_0@layers=0-1")).isFalse();
  }

  @ParameterizedTest
  @ValueSource(
      strings = {"full", "q4_0", "kivi:kbits=2,vbits=2,residual=32", "snapkv:budget=25%,window=4"})
  void estimateCoversWhatASequenceReallyHolds(String spec) {
    try (Model model = TestServer.loadModel()) {
      BlockPool pool = new BlockPool();
      KvPlan plan = KvPlan.resolve(spec, pool, model.config());
      KvCacheFactory factory = cfg -> plan.create();
      int[] prompt = new Random(3).ints(70, 3, 32000).toArray();
      prompt[0] = 1;
      try (Engine engine = new Engine(model, 2, factory)) {
        new Generator(engine)
            .generate(prompt, 3, new Sampler(SamplerConfig.GREEDY), t -> false, t -> true);
        // the pool saw the whole prompt before any policy compressed it
        assertThat(pool.peakBytes()).isPositive().isLessThanOrEqualTo(plan.estimateBytes(70, 3));
      }
      assertThat(pool.usedBytes()).isZero();
      assertThat(plan.f16Bytes(10))
          .isEqualTo(
              10L
                  * model.config().layers()
                  * model.config().kvHeads()
                  * model.config().headDim()
                  * 4);
    }
  }

  /**
   * KIVI's estimate follows its layout (DESIGN.md §4): for prompts appended in chunks and a long
   * generation, the pool's peak never exceeds it, and it is tight (within 25% of the peak; the
   * slack left is the window's worst case, which a given run need not reach).
   */
  @ParameterizedTest
  @CsvSource({
    "'kivi:kbits=2,vbits=2', 40, 16",
    "'kivi:kbits=2,vbits=2', 200, 64",
    "'kivi:kbits=2,vbits=2', 200, 512",
    "'kivi:kbits=2,vbits=2,residual=32', 75, 8",
    "'kivi:kbits=4,vbits=2,group=16,residual=64', 130, 100",
    "'kivi:kbits=2,vbits=4,residual=0', 33, 32"
  })
  void kiviEstimateIsAnExactUpperBoundForChunkedPrefill(String spec, int promptLength, int chunk) {
    int generated = 150;
    try (Model model = TestServer.loadModel()) {
      BlockPool pool = new BlockPool();
      KvPlan plan = KvPlan.resolve(spec, pool, model.config(), chunk);
      int[] prompt = new Random(5).ints(promptLength, 3, 32000).toArray();
      try (Engine engine = new Engine(model, 2, cfg -> plan.create())) {
        engine.setPrefillChunk(chunk);
        float[] logits = new float[model.config().vocabSize()];
        try (KvCache cache = engine.newCache()) {
          engine.prefill(cache, prompt, 0, promptLength, 0, false, logits);
          Random random = new Random(6);
          for (int i = 0; i < generated - 1; i++) {
            engine.decode(cache, random.nextInt(3, 32000), promptLength + i, logits);
          }
        }
      }
      long estimate = plan.estimateBytes(promptLength, generated);
      long oneBlockPerHead =
          (long) model.config().layers()
              * model.config().kvHeads()
              * estimate
              / Math.max(1, estimate / 1)
              * 0;
      assertThat(pool.peakBytes()).as(spec).isPositive().isLessThanOrEqualTo(estimate);
      assertThat(estimate).as(spec).isLessThanOrEqualTo(pool.peakBytes() * 5 / 4);
      assertThat(pool.usedBytes()).isZero();
      System.out.printf(
          "%s prompt %d chunk %d: peak %d estimate %d (%.1f%% over)%n",
          spec,
          promptLength,
          chunk,
          pool.peakBytes(),
          estimate,
          100.0 * (estimate - pool.peakBytes()) / pool.peakBytes());
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"", "nosuch", "snapkv:budget=0", "full;q8_0@layers=9-12"})
  void badSpecsAre400sAboutKv(String spec) {
    try (Model model = TestServer.loadModel()) {
      assertThatThrownBy(() -> KvPlan.resolve(spec, new BlockPool(), model.config()))
          .isInstanceOfSatisfying(
              ApiException.class,
              e -> {
                assertThat(e.status()).isEqualTo(400);
                assertThat(e.param()).isEqualTo("kv");
                assertThat(e.getMessage()).isNotBlank();
              });
    }
  }
}
