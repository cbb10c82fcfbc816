package io.kvslim.engine;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.SharedData;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.KvCaches;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Batch;
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
        "snapkv:budget=40,window=8",
        // sequences alternate: caches that apply RoPE themselves next to ones that do not
        "full|streaming:sinks=4,window=28|streaming:sinks=4,window=28,positions=original"
      })
  void batchedStepsEqualEachSequenceAlone(String spec) {
    int sequences = 5;
    int steps = 40;
    try (Model model = Model.load(SharedData.model("llama-spm-f32.gguf"));
        Engine engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      int vocab = engine.config().vocabSize();
      String[] specs = spec.split("\\|");
      KvCaches[] kvs = new KvCaches[specs.length];
      for (int i = 0; i < specs.length; i++) {
        kvs[i] = KvSpecs.caches(KvSpec.parse(specs[i]), new BlockPool(), engine.config());
      }
      Random random = new Random(11);
      int[][] tokens = new int[sequences][];
      KvCache[] batched = new KvCache[sequences];
      KvCache[] alone = new KvCache[sequences];
      float[] scratch = new float[vocab];
      for (int s = 0; s < sequences; s++) {
        int prompt = 20 + 7 * s; // different lengths, so sequences sit at different positions
        tokens[s] = random.ints(prompt + steps, 3, vocab).toArray();
        batched[s] = kvs[s % kvs.length].create();
        alone[s] = kvs[s % kvs.length].create();
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

  /**
   * A server step: a prompt chunk of one sequence next to decode rows of others. Every segment's
   * logits equal the same segment run alone (the prompt's heads over the pool, the decode rows one
   * sequence per thread).
   */
  @ParameterizedTest
  @ValueSource(
      strings = {
        "full",
        "kivi:kbits=2,vbits=2,residual=32",
        "h2o:budget=40",
        "streaming:sinks=4,window=28"
      })
  void promptChunksNextToDecodeRowsEqualEachAlone(String spec) {
    int decoding = 3;
    try (Model model = Model.load(SharedData.model("llama-spm-f32.gguf"));
        Engine engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      int vocab = engine.config().vocabSize();
      KvCaches kv = KvSpecs.caches(KvSpec.parse(spec), new BlockPool(), engine.config());
      Random random = new Random(13);
      int[][] tokens = new int[decoding + 1][];
      KvCache[] together = new KvCache[decoding + 1];
      KvCache[] alone = new KvCache[decoding + 1];
      float[] scratch = new float[vocab];
      int[] length = new int[decoding + 1];
      for (int s = 0; s <= decoding; s++) {
        tokens[s] = random.ints(200, 3, vocab).toArray();
        together[s] = kv.create();
        alone[s] = kv.create();
        if (s < decoding) {
          length[s] = 30 + 11 * s;
          engine.prefill(together[s], tokens[s], 0, length[s], 0, false, scratch);
          engine.prefill(alone[s], tokens[s], 0, length[s], 0, false, scratch);
        }
      }
      int prompt = decoding; // the last sequence arrives with a prompt, in chunks of 16
      float[] logits = new float[(decoding + 1) * vocab];
      float[] one = new float[vocab];
      Batch batch = new Batch();
      Batch single = new Batch();
      for (int step = 0; step < 4; step++) {
        batch.clear();
        int from = length[prompt];
        batch.add(together[prompt], tokens[prompt], from, from + 16, from, false, true);
        for (int s = 0; s < decoding; s++) {
          batch.add(together[s], tokens[s], length[s], length[s] + 1, length[s], false, true);
        }
        engine.forward().run(batch, logits);
        together[prompt].afterStep(KvCache.StepKind.PREFILL);
        for (int s = 0; s < decoding; s++) {
          together[s].afterStep(KvCache.StepKind.DECODE);
        }
        // the same rows, one segment at a time
        single.clear().add(alone[prompt], tokens[prompt], from, from + 16, from, false, true);
        engine.forward().run(single, one);
        alone[prompt].afterStep(KvCache.StepKind.PREFILL);
        assertThat(Arrays.copyOfRange(logits, 0, vocab))
            .as("%s prompt step %d", spec, step)
            .isEqualTo(one);
        for (int s = 0; s < decoding; s++) {
          single.clear().add(alone[s], tokens[s], length[s], length[s] + 1, length[s], false, true);
          engine.forward().run(single, one);
          alone[s].afterStep(KvCache.StepKind.DECODE);
          assertThat(Arrays.copyOfRange(logits, (s + 1) * vocab, (s + 2) * vocab))
              .as("%s sequence %d step %d", spec, s, step)
              .isEqualTo(one);
          length[s]++;
        }
        length[prompt] += 16;
      }
      for (int s = 0; s <= decoding; s++) {
        assertThat(together[s].bytes()).isEqualTo(alone[s].bytes());
        together[s].close();
        alone[s].close();
      }
    }
  }
}
