package io.kvslim.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.SharedData;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The server's warm-up runs every batch size up to 16 and leaves no trace: an engine decodes a
 * sequence to the same logits after it as a fresh engine does.
 */
class JitWarmupTest {
  @ParameterizedTest
  @ValueSource(strings = {"full", "kivi:kbits=2,vbits=2,residual=32"})
  void warmUpCoversEveryBatchSizeAndLeavesTheEngineAsItWas(String spec) {
    try (Model model = Model.load(SharedData.model("llama-spm-f32.gguf"));
        Engine warmed = new Engine(model, 2, KvSpecs.factory(KvSpec.parse(spec), new BlockPool()));
        Engine fresh = new Engine(model, 2, KvSpecs.factory(KvSpec.parse(spec), new BlockPool()))) {
      JitWarmup.Report r = JitWarmup.run(warmed, KvSpec.parse(spec), 40, 24, 2);
      assertThat(r.batchSizes()).isEqualTo(JitWarmup.MAX_BATCH);
      assertThat(r.stepsPerSize()).isEqualTo(2);
      assertThat(JitWarmup.run(warmed, KvSpec.parse(spec), 3, 24, 1).batchSizes()).isEqualTo(3);
      int vocab = warmed.config().vocabSize();
      int[] tokens = new Random(5).ints(30, 3, vocab).toArray();
      float[] a = new float[vocab];
      float[] b = new float[vocab];
      try (KvCache ca = warmed.newCache();
          KvCache cb = fresh.newCache()) {
        warmed.prefill(ca, tokens, 0, 20, 0, false, a);
        fresh.prefill(cb, tokens, 0, 20, 0, false, b);
        assertThat(a).isEqualTo(b);
        for (int p = 20; p < 30; p++) {
          warmed.decode(ca, tokens[p], p, a);
          fresh.decode(cb, tokens[p], p, b);
          assertThat(a).as("position %d", p).isEqualTo(b);
        }
      }
    }
  }

  /** More steps than the context holds are cut to what fits, instead of failing at startup. */
  @org.junit.jupiter.api.Test
  void stepsBeyondTheContextAreCut() {
    try (Model model = Model.load(SharedData.model("llama-spm-f32.gguf"));
        Engine engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      int context = engine.config().contextLength();
      JitWarmup.Report r = JitWarmup.run(engine, KvSpec.FULL, 16, 8, 1_000_000);
      assertThat(r.stepsPerSize()).isPositive().isLessThanOrEqualTo((context - 8) / 16);
    }
  }

  @org.junit.jupiter.api.Test
  void rejectsImpossibleCounts() {
    try (Model model = Model.load(SharedData.model("llama-spm-f32.gguf"));
        Engine engine = new Engine(model, 1, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      assertThatThrownBy(() -> JitWarmup.run(engine, KvSpec.FULL, 0, 8, 1))
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessageContaining("maxBatch >= 1");
      assertThatThrownBy(() -> JitWarmup.run(engine, KvSpec.FULL, 4, 8, -1))
          .isInstanceOf(IllegalArgumentException.class);
    }
  }
}
