package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class KeyformerMethodTest {
  /** gumbel_softmax(z, τ) written out: softmax((z + g)/τ) with z = ln p. */
  static double[] reference(double[] p, double[] g, double tau) {
    double[] e = new double[p.length];
    double sum = 0;
    for (int i = 0; i < p.length; i++) {
      e[i] = p[i] > 0 ? Math.exp((Math.log(p[i]) + g[i]) / tau) : 0;
      sum += e[i];
    }
    for (int i = 0; i < p.length; i++) {
      e[i] /= sum;
    }
    return e;
  }

  @Test
  void scoreIsTheGumbelSoftmaxOfTheLogits() {
    float[] p = {0.5f, 0.25f, 0.125f, 0.125f, 0f};
    double[] pd = {0.5, 0.25, 0.125, 0.125, 0};
    float[] out = new float[5];
    double[] z = new double[5];
    // no noise, τ = 1: the probabilities themselves
    KeyformerMethod.Policy.score(p, 5, 1.0, null, z, out);
    assertThat(out).containsExactly(new float[] {0.5f, 0.25f, 0.125f, 0.125f, 0f}, within(1e-7f));
    // τ = 2 flattens: ∝ sqrt(p)
    KeyformerMethod.Policy.score(p, 5, 2.0, null, z, out);
    double[] flat = reference(pd, new double[5], 2.0);
    for (int i = 0; i < 5; i++) {
      assertThat((double) out[i]).isCloseTo(flat[i], within(1e-7));
    }
    assertThat(out[0] / out[2]).isCloseTo(2f, within(1e-5f));
    // with noise: the same uniforms drawn by hand give the same scores; masked tokens stay 0
    SplittableRandom draws = new SplittableRandom(42);
    double[] g = new double[5];
    for (int i = 0; i < 5; i++) {
      g[i] = -Math.log(-Math.log(draws.nextDouble()));
    }
    KeyformerMethod.Policy.score(p, 5, 1.5, new SplittableRandom(42), z, out);
    double[] want = reference(pd, g, 1.5);
    for (int i = 0; i < 5; i++) {
      assertThat((double) out[i]).as("token %d", i).isCloseTo(want[i], within(1e-6));
    }
    assertThat(out[4]).isZero();
  }

  @Test
  void withoutNoiseAndWithAFixedTemperatureItKeepsWhatH2oKeeps() {
    SharedData.require();
    String keyformer = "keyformer:budget=16,recent=0.25,noise=0,tau_delta=0";
    String h2o = "h2o:budget=16,recent=0.25,sinks=0";
    assertThat(positionsAfter(keyformer)).isEqualTo(positionsAfter(h2o));
  }

  @Test
  void theSameSeedKeepsTheSameTokensAndTheNoiseChangesTheChoice() {
    SharedData.require();
    String a = "keyformer:budget=16,recent=0.25,seed=1";
    assertThat(positionsAfter(a)).isEqualTo(positionsAfter(a));
    assertThat(positionsAfter(a))
        .isNotEqualTo(positionsAfter("keyformer:budget=16,recent=0.25,noise=0"));
  }

  @Test
  void theTemperatureRisesByTauDeltaPerDecodeStep() {
    KeyformerMethod.Policy p =
        new KeyformerMethod.Policy(
            new boolean[] {true}, Budget.parse("50%"), 0.3, 1.0, 0.01, 0, true, 1);
    assertThat(p.tau(0)).isEqualTo(1.0);
    assertThat(p.tau(100)).isCloseTo(2.0, within(1e-12)); // the paper: 1 → 2 over the generation
  }

  /** Positions kept per (layer, KV head) after a 48-token prefill and 8 decode steps. */
  static String positionsAfter(String spec) {
    try (Model model = Model.load(SharedData.model("llama-spm-f32.gguf"));
        Engine engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      SplittableRandom r = new SplittableRandom(3);
      int n = 48;
      int[] tokens = new int[n + 8];
      for (int i = 0; i < tokens.length; i++) {
        tokens[i] = 3 + r.nextInt(model.config().vocabSize() - 3);
      }
      float[] logits = new float[model.config().vocabSize()];
      try (ManagedKvCache c =
          KvSpecs.caches(KvSpec.parse(spec), new BlockPool(), model.config()).create()) {
        engine.prefill(c, tokens, 0, n, 0, false, logits);
        for (int i = n; i < tokens.length; i++) {
          engine.decode(c, tokens[i], i, logits);
        }
        StringBuilder sb = new StringBuilder();
        for (int l = 0; l < c.layerCount(); l++) {
          for (int g = 0; g < c.paged(l).kvHeads(); g++) {
            sb.append(java.util.Arrays.toString(c.paged(l).positions(g))).append('\n');
          }
        }
        assertThat(c.paged(0).size(0)).isLessThanOrEqualTo(16);
        return sb.toString();
      }
    }
  }
}
