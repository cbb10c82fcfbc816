package io.kvslim.engine;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.SharedData;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.policy.KvCaches;
import io.kvslim.kv.spec.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * A batched decode step of several sequences (attention one sequence per thread) gives every
 * sequence exactly the logits it gets decoding alone, for caches that quantize on append and caches
 * whose policies evict.
 */
class BatchedDecodeTest {

  @ParameterizedTest
  @ValueSource(
      strings = {
        "full",
        "kivi:kbits=2,vbits=2,residual=32",
        "h2o:budget=40",
        "snapkv:budget=40,window=8"
      })
  void batchedStepsEqualEachSequenceAlone(String spec) {
    int sequences = 5;
    int steps = 40;
    try (Model model = Model.load(SharedData.model("llama-spm-f32.gguf"));
        Engine engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      int vocab = engine.config().vocabSize();
      KvCaches kv = KvSpecs.caches(KvSpec.parse(spec), new BlockPool(), engine.config());
      Random random = new Random(11);
      int[][] tokens = new int[sequences][];
      KvCache[] batched = new KvCache[sequences];
      KvCache[] alone = new KvCache[sequences];
      float[] scratch = new float[vocab];
      for (int s = 0; s < sequences; s++) {
        int prompt = 20 + 7 * s; // different lengths, so sequences sit at different positions
        tokens[s] = random.ints(prompt + steps, 3, vocab).toArray();
        batched[s] = kv.create();
        alone[s] = kv.create();
        engine.prefill(batched[s], tokens[s], 0, prompt, 0, false, scratch);
        engine.prefill(alone[s], tokens[s], 0, prompt, 0, false, scratch);
      }
      float[] logits = new float[sequences * vocab];
      float[] one = new float[vocab];
      int[] step = new int[sequences];
      int[] positions = new int[sequences];
      for (int g = 0; g < steps; g++) {
        for (int s = 0; s < sequences; s++) {
          positions[s] = 20 + 7 * s + g;
          step[s] = tokens[s][positions[s]];
        }
        engine.decodeBatch(batched, step, positions, sequences, logits);
        for (int s = 0; s < sequences; s++) {
          engine.decode(alone[s], step[s], positions[s], one);
          assertThat(Arrays.copyOfRange(logits, s * vocab, (s + 1) * vocab))
              .as("%s sequence %d step %d", spec, s, g)
              .isEqualTo(one);
          assertThat(batched[s].bytes()).isEqualTo(alone[s].bytes());
        }
      }
      for (int s = 0; s < sequences; s++) {
        batched[s].close();
        alone[s].close();
      }
    }
  }
}
