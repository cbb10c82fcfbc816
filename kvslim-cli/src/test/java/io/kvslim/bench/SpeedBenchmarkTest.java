package io.kvslim.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import org.junit.jupiter.api.Test;

/** How {@link SpeedBenchmark} runs decode at a depth. */
class SpeedBenchmarkTest {

  /** The bytes of a full cache holding {@code tokens} tokens of the benchmark's token stream. */
  private static long bytesAt(Engine engine, int tokens) {
    try (KvCache cache = engine.newCache()) {
      int[] ids = new int[tokens];
      engine.prefill(cache, ids, 0, tokens, 0, false, new float[engine.config().vocabSize()]);
      return cache.bytes();
    }
  }

  @Test
  void runsAtADepthContinueOnePrefilledCacheWhereTheContextHasRoom() {
    try (Model model = Model.load(SharedData.require().resolve("models/llama-spm-f32.gguf"));
        Engine engine = new Engine(model, 1, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      // depth 40, 2 runs of 16 after a warm-up of 16: the last run ends at 40 + 3·16 = 88 tokens
      SpeedBenchmark.Result continued =
          new SpeedBenchmark(engine).run(new SpeedBenchmark.Settings(0, 16, 40, 1, 2, 1, 1));
      assertThat(continued.kvBytesAfterDecode()).isEqualTo(bytesAt(engine, 88));
      // the default two warm-up runs: 40 + 4·16 = 104; none: 40 + 2·16 = 72
      assertThat(
              new SpeedBenchmark(engine)
                  .run(new SpeedBenchmark.Settings(0, 16, 40, 1, 2, 1))
                  .kvBytesAfterDecode())
          .isEqualTo(bytesAt(engine, 104));
      assertThat(
              new SpeedBenchmark(engine)
                  .run(new SpeedBenchmark.Settings(0, 16, 40, 1, 2, 0, 1))
                  .kvBytesAfterDecode())
          .isEqualTo(bytesAt(engine, 72));
      assertThat(continued.decodeTokensPerSecond().runs()).hasSize(2).doesNotContain(0.0);
      // no room for three runs after the depth: each run prefills its own cache (ends at 40+16)
      int ctx = engine.config().contextLength();
      SpeedBenchmark.Result separate =
          new SpeedBenchmark(engine).run(new SpeedBenchmark.Settings(0, 16, ctx - 16, 1, 2, 1, 1));
      assertThat(separate.kvBytesAfterDecode()).isEqualTo(bytesAt(engine, ctx));
    }
  }

  @Test
  void aNegativeWarmupIsRefusedInOneSentence() {
    assertThatThrownBy(() -> new SpeedBenchmark.Settings(0, 16, 40, 1, 2, -1, 1))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessage("--warmup must be >= 0, got -1");
  }
}
