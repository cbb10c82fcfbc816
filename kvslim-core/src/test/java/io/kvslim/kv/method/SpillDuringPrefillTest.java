package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.SharedData;
import io.kvslim.SpmEngineTest;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.store.BlockPool;
import java.util.SplittableRandom;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Spill during a chunked prefill ({@code spill=true}): each layer's settled blocks leave RAM right
 * after its attention, and a decode step's fetched blocks after their layer's, so a long prompt's
 * KV is in RAM about one layer at a time, not whole; the logits after the prompt and at each decode
 * step equal those of the method with everything in RAM, and the pool's peak (every reservation,
 * inside steps too) is a fraction of the in-RAM one.
 */
class SpillDuringPrefillTest extends SpmEngineTest {
  @BeforeAll
  static void chunks() {
    if (engine != null) {
      engine.setPrefillChunk(64); // several chunks: later ones fetch the layer back
    }
  }

  @ParameterizedTest
  @ValueSource(
      strings = {
        "quest:token_budget=64,page_size=16,skip_layers=1",
        "shadowkv:budget=40,outliers=3",
        "pqcache:budget=16,sink=4,bits=4,cache_blocks=2"
      })
  void blocksSpillAsTheySettleAndTheLogitsAreThoseInRam(String spec) {
    SharedData.require();
    int n = 400;
    int steps = 4;
    int vocab = model.config().vocabSize();
    int layers = model.config().layers();
    SplittableRandom rnd = new SplittableRandom(41);
    int[] toks = new int[n + steps];
    for (int i = 0; i < toks.length; i++) {
      toks[i] = 3 + rnd.nextInt(vocab - 3);
    }
    BlockPool ramPool = new BlockPool();
    BlockPool spillPool = new BlockPool();
    float[] lr = new float[vocab];
    float[] ls = new float[vocab];
    try (ManagedKvCache r = KvSpecs.caches(KvSpec.parse(spec), ramPool, model.config()).create();
        ManagedKvCache s =
            KvSpecs.caches(KvSpec.parse(spec + ",spill=true"), spillPool, model.config())
                .create()) {
      engine.prefill(r, toks, 0, n, 0, false, lr);
      engine.prefill(s, toks, 0, n, 0, false, ls);
      assertThat(ls).isEqualTo(lr);
      long full = r.bytes(); // the whole prompt's KV, every layer
      assertThat(s.coldBytes()).as("the prompt's settled blocks are cold").isPositive();
      assertThat(s.bytes() + s.coldBytes()).isEqualTo(full);
      long prefillPeak = spillPool.peakBytes();
      for (int i = 0; i < steps; i++) {
        engine.decode(r, toks[n + i], n + i, lr);
        engine.decode(s, toks[n + i], n + i, ls);
        assertThat(ls).as("%s step %d", spec, i).isEqualTo(lr);
      }
      // one layer whole (its attention) and the next one's new chunk, plus every layer's
      // unsettled tail and the layers the method does not select in (Quest's skip_layers=1):
      // under two layers' worth of the whole prompt beyond those
      int kept = spec.startsWith("quest") ? 1 : 0;
      double perLayer = (double) full / layers;
      assertThat((double) prefillPeak)
          .as("peak in RAM during the prefill, %d layers of %.0f bytes", layers, perLayer)
          .isLessThan((kept + 2) * perLayer)
          .isLessThan(0.75 * ramPool.peakBytes());
      assertThat(ramPool.peakBytes()).isGreaterThanOrEqualTo(full);
      // the first decode step reads every key once (the index), and each step's selected blocks
      // go cold again after their layer's attention: a layer at a time too
      assertThat((double) spillPool.peakBytes()).isLessThan((kept + 2) * perLayer);
    }
    assertThat(spillPool.usedBytes()).isZero();
  }
}
