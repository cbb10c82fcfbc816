package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import java.util.Arrays;
import java.util.Comparator;
import java.util.SplittableRandom;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

class KeyDiffMethodTest {
  /** The reference formula written out independently: -cos(k_i, mean_j(k_j/|k_j|)). */
  static double[] reference(double[][] keys) {
    int dim = keys[0].length;
    double[] anchor = new double[dim];
    for (double[] k : keys) {
      double norm = Math.sqrt(Arrays.stream(k).map(x -> x * x).sum());
      for (int d = 0; d < dim; d++) {
        anchor[d] += k[d] / norm / keys.length;
      }
    }
    double an = Math.sqrt(Arrays.stream(anchor).map(x -> x * x).sum());
    return Arrays.stream(keys)
        .mapToDouble(
            k -> {
              double dot = IntStream.range(0, dim).mapToDouble(d -> k[d] * anchor[d]).sum();
              double kn = Math.sqrt(Arrays.stream(k).map(x -> x * x).sum());
              return -dot / (kn * an);
            })
        .toArray();
  }

  static float[] flat(double[][] keys) {
    float[] out = new float[keys.length * keys[0].length];
    for (int i = 0; i < keys.length; i++) {
      for (int d = 0; d < keys[i].length; d++) {
        out[i * keys[i].length + d] = (float) keys[i][d];
      }
    }
    return out;
  }

  @Test
  void scoresFollowTheAuthorsFormulaOnHandBuiltKeys() {
    double[][] keys = {{1, 0, 0}, {0.9, 0.1, 0}, {0, 1, 0}, {-1, 0.2, 0.1}, {2, 0, 0}};
    float[] got = KeyDiffMethod.scores(flat(keys), keys.length, 3);
    double[] want = reference(keys);
    for (int i = 0; i < keys.length; i++) {
      assertThat((double) got[i]).as("key %d", i).isCloseTo(want[i], within(1e-6));
    }
    // the key opposite to the others is the most distinctive; keys equal up to scale tie
    assertThat(got[3]).isGreaterThan(got[0]).isGreaterThan(got[1]);
    assertThat(got[0]).isEqualTo(got[4]);
  }

  @Test
  void scoresOfRandomKeysMatchTheReference() {
    SplittableRandom r = new SplittableRandom(5);
    double[][] keys = new double[40][16];
    for (double[] k : keys) {
      for (int d = 0; d < k.length; d++) {
        k[d] = r.nextDouble(-1, 1) + 0.3;
      }
    }
    float[] got = KeyDiffMethod.scores(flat(keys), keys.length, 16);
    double[] want = reference(keys);
    for (int i = 0; i < keys.length; i++) {
      assertThat((double) got[i]).isCloseTo(want[i], within(1e-5));
    }
  }

  @Test
  void eachHeadKeepsItsBudgetOfHighestScoredKeysInPositionOrder() {
    SharedData.require();
    try (Model model = Model.load(SharedData.model("llama-spm-f32.gguf"));
        Engine engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      int n = 48;
      int budget = 12;
      SplittableRandom r = new SplittableRandom(3);
      int[] tokens = new int[n];
      for (int i = 0; i < n; i++) {
        tokens[i] = 3 + r.nextInt(model.config().vocabSize() - 3);
      }
      float[] logits = new float[model.config().vocabSize()];
      try (ManagedKvCache full = cache(model, "full");
          ManagedKvCache kd = cache(model, "keydiff:budget=" + budget)) {
        engine.prefill(full, tokens, 0, n, 0, false, logits);
        engine.prefill(kd, tokens, 0, n, 0, false, logits);
        for (int l = 0; l < full.layerCount(); l++) {
          PagedLayerKv a = full.paged(l);
          for (int g = 0; g < a.kvHeads(); g++) {
            double[][] keys = new double[n][a.headDim()];
            float[] row = new float[a.headDim()];
            for (int i = 0; i < n; i++) {
              a.head(g).readKey(i, row);
              for (int d = 0; d < row.length; d++) {
                keys[i][d] = row[d];
              }
            }
            double[] s = reference(keys);
            int[] want =
                IntStream.range(0, n)
                    .boxed()
                    .sorted(Comparator.comparingDouble((Integer i) -> -s[i]))
                    .limit(budget)
                    .mapToInt(Integer::intValue)
                    .sorted()
                    .toArray();
            assertThat(kd.paged(l).positions(g)).as("layer %d head %d", l, g).containsExactly(want);
          }
        }
      }
    }
  }

  static ManagedKvCache cache(Model model, String spec) {
    return KvSpecs.caches(KvSpec.parse(spec), new BlockPool(), model.config()).create();
  }
}
