package io.kvslim;

import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

/**
 * Base of the tests that run the shared random-weight model {@code llama-spm-f32.gguf} through one
 * full-cache engine of two threads, loaded once per test class. Without {@code ../shared} both stay
 * null; such tests call {@link SharedData#require()} first.
 */
public abstract class SpmEngineTest {
  protected static Model model;
  protected static Engine engine;

  @BeforeAll
  static void loadSpmEngine() {
    if (SharedData.present()) {
      model = Model.load(SharedData.model("llama-spm-f32.gguf"));
      engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()));
    }
  }

  /** {@code n} random token ids of the model's vocabulary past its first three (special) ones. */
  protected static int[] tokens(int n, long seed) {
    SplittableRandom r = new SplittableRandom(seed);
    int vocab = model.config().vocabSize();
    int[] toks = new int[n];
    for (int i = 0; i < n; i++) {
      toks[i] = 3 + r.nextInt(vocab - 3);
    }
    return toks;
  }

  @AfterAll
  static void closeSpmEngine() {
    if (engine != null) {
      engine.close();
      model.close();
      engine = null;
      model = null;
    }
  }
}
