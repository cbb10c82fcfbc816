package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import java.util.BitSet;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class NaclMethodTest {
  @Test
  void sizesFollowTheAuthorsIntegerFormulas() {
    NaclMethod.Sizes z = NaclMethod.Sizes.of(1000, 0.01, 0.12, 0.07, 0.05, 4);
    assertThat(z.proxy()).isEqualTo(10);
    assertThat(z.sinks()).isEqualTo(4);
    assertThat(z.recent()).isEqualTo(46); // int(0.05·1000) − 4
    assertThat(z.keep()).isEqualTo(120);
    assertThat(z.random()).isEqualTo(70);
    assertThat(z.kept(1000)).isEqualTo(240);
    // the authors' defaults on a short prompt: recent clamped at 0 rather than negative
    assertThat(NaclMethod.Sizes.of(1000, 0.01, 0.12, 0.07, 0.01, 256).recent()).isZero();
  }

  @Test
  void keepsSinksTopRecentAndADisjointSample() {
    int n = 100;
    float[] score = new float[n];
    SplittableRandom r = new SplittableRandom(1);
    for (int i = 0; i < n; i++) {
      score[i] = (float) r.nextDouble();
    }
    NaclMethod.Sizes z = NaclMethod.Sizes.of(n, 0.1, 0.2, 0.1, 0.1, 3);
    BitSet evicted = NaclMethod.Policy.evicted(score, n, z, new SplittableRandom(7));
    BitSet kept = new BitSet(n);
    kept.set(0, n);
    kept.andNot(evicted);
    assertThat(kept.cardinality()).isEqualTo(z.kept(n)); // 3 + 7 + 20 + 10
    assertThat(kept.get(0, 3).cardinality()).isEqualTo(3);
    assertThat(kept.get(n - 7, n).cardinality()).isEqualTo(7);
    // the 20 highest of the middle range are all kept
    BitSet top = new BitSet();
    io.kvslim.kv.policy.Selection.highest(score, 3, n - 7, 20, top);
    BitSet missing = (BitSet) top.clone();
    missing.andNot(kept);
    assertThat(missing.isEmpty()).isTrue();
    // without the random part the choice does not depend on the seed
    NaclMethod.Sizes noRandom = NaclMethod.Sizes.of(n, 0.1, 0.2, 0, 0.1, 3);
    assertThat(NaclMethod.Policy.evicted(score, n, noRandom, new SplittableRandom(1)))
        .isEqualTo(NaclMethod.Policy.evicted(score, n, noRandom, new SplittableRandom(2)));
  }

  @Test
  void theSampleFollowsTheSoftmaxOfTheScores() {
    // middle range of 4 tokens (no sinks, no recent, no top): one draw each time
    float[] score = {0f, 1f, 2f, 3f};
    NaclMethod.Sizes one = new NaclMethod.Sizes(1, 0, 0, 0, 1);
    double[] p = new double[4];
    double zsum = 0;
    for (int i = 0; i < 4; i++) {
      p[i] = Math.exp(score[i]);
      zsum += p[i];
    }
    int trials = 20_000;
    int[] hits = new int[4];
    SplittableRandom rnd = new SplittableRandom(3);
    for (int t = 0; t < trials; t++) {
      BitSet ev = NaclMethod.Policy.evicted(score, 4, one, rnd);
      hits[ev.nextClearBit(0)]++;
    }
    double chi2 = 0;
    for (int i = 0; i < 4; i++) {
      double expected = trials * p[i] / zsum;
      chi2 += (hits[i] - expected) * (hits[i] - expected) / expected;
    }
    assertThat(chi2).as("chi-square, 3 degrees of freedom (p=0.001: 16.27)").isLessThan(16.27);
  }

  @Test
  void compressesEveryHeadToTheFormulaOnceAfterPrefill() {
    SharedData.require();
    try (Model model = Model.load(SharedData.model("llama-spm-f32.gguf"));
        Engine engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      int n = 100;
      SplittableRandom r = new SplittableRandom(3);
      int[] tokens = new int[n + 4];
      for (int i = 0; i < tokens.length; i++) {
        tokens[i] = 3 + r.nextInt(model.config().vocabSize() - 3);
      }
      float[] logits = new float[model.config().vocabSize()];
      String spec = "nacl:proxy=0.1,keep=0.2,random=0.1,protect=0.1,sinks=3,min_len=0,seed=5";
      try (ManagedKvCache c =
          KvSpecs.caches(KvSpec.parse(spec), new BlockPool(), model.config()).create()) {
        engine.prefill(c, tokens, 0, n, 0, false, logits);
        for (int l = 0; l < c.layerCount(); l++) {
          for (int g = 0; g < c.paged(l).kvHeads(); g++) {
            int[] pos = c.paged(l).positions(g);
            assertThat(pos).hasSize(40);
            assertThat(pos).startsWith(0, 1, 2).endsWith(93, 94, 95, 96, 97, 98, 99);
          }
        }
        for (int i = n; i < tokens.length; i++) {
          engine.decode(c, tokens[i], i, logits);
        }
        assertThat(c.paged(0).size(0)).isEqualTo(44); // nothing evicted while decoding
      }
    }
  }

  @Test
  void keepAndRandomMayNotExceedThePrompt() {
    assertThatThrownBy(() -> KvSpec.parse("nacl:keep=0.8,random=0.3"))
        .isInstanceOf(KvSpecException.class)
        .hasMessageContaining("keep + random");
  }
}
