package io.kvslim.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.engine.Engine;
import io.kvslim.engine.Generator;
import io.kvslim.engine.KvCacheFactory;
import io.kvslim.engine.Sampler;
import io.kvslim.engine.SamplerConfig;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class KvPlanTest {
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
