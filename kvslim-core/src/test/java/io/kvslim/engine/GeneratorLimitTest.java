package io.kvslim.engine;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.TinyModel;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A token limit far beyond the context is clamped to it before anything is sized by it. */
class GeneratorLimitTest {
  @TempDir Path dir;

  @Test
  void hugeTokenLimitsStopAtTheContext() {
    int ctx = 16;
    try (Model model = Model.load(TinyModel.write(dir.resolve("tiny.gguf"), ctx));
        Engine engine = new Engine(model, 1, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      for (int limit : new int[] {Integer.MAX_VALUE, 1_000_000_000, ctx}) {
        Generator.Result r =
            new Generator(engine)
                .generate(
                    new int[] {1, 30},
                    limit,
                    new Sampler(new SamplerConfig(0f, 0, 1f, 0f, 1f, 64, 1)),
                    t -> false,
                    t -> true);
        assertThat(r.tokens()).as("limit %d", limit).hasSize(ctx);
        assertThat(r.generatedTokens()).isEqualTo(ctx - 2);
        assertThat(r.stopReason()).isEqualTo(Generator.StopReason.CONTEXT_FULL);
      }
    }
  }
}
