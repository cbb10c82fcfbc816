package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** KV-Compress: METHODS.md E9's checks (whole blocks, per-head lengths, the global ranking). */
class KvCompressMethodTest {

  @Test
  void theGlobalRankingMatchesABruteForceSortOfAllGroups() {
    SplittableRandom r = new SplittableRandom(9);
    for (int trial = 0; trial < 500; trial++) {
      int heads = 1 + r.nextInt(5);
      int block = 1 + r.nextInt(4);
      float[][] asc = new float[heads][];
      for (int h = 0; h < heads; h++) {
        asc[h] = new float[r.nextInt(12)];
        for (int i = 0; i < asc[h].length; i++) {
          asc[h][i] = r.nextInt(6) / 5f; // ties happen
        }
        Arrays.sort(asc[h]);
      }
      long evict = r.nextInt(10);
      int[] got = KvCompressMethod.Policy.groupsLost(asc, block, evict);
      // brute force: every (head, group) with its ranking metric, sorted as triples
      List<double[]> all = new ArrayList<>();
      for (int h = 0; h < heads; h++) {
        for (int k = 0; (k + 1) * block <= asc[h].length; k++) {
          all.add(new double[] {asc[h][(k + 1) * block - 1], h, k});
        }
      }
      all.sort(
          (a, b) ->
              a[0] != b[0]
                  ? Double.compare(a[0], b[0])
                  : a[1] != b[1] ? Double.compare(a[1], b[1]) : Double.compare(a[2], b[2]));
      int[] want = new int[heads];
      for (int i = 0; i < Math.min(evict, all.size()); i++) {
        want[(int) all.get(i)[1]]++;
      }
      assertThat(got).as("trial %d", trial).containsExactly(want);
      // and a head's lost groups are always its lowest ones (a prefix of its groups)
      for (int h = 0; h < heads; h++) {
        assertThat(got[h] * block).isLessThanOrEqualTo(asc[h].length);
      }
    }
  }

  @Test
  void theMetricIsTheSquaredAttentionSummedOverQueriesAndTheGroupsHeads() {
    // a hand-built attention matrix: 3 queries x 2 query heads of one KV head over 4 tokens
    float[][][] p = {
      {{1f, 0f, 0f, 0f}, {0.5f, 0.5f, 0f, 0f}},
      {{0.2f, 0.3f, 0.5f, 0f}, {0f, 0f, 1f, 0f}},
      {{0.25f, 0.25f, 0.25f, 0.25f}, {0.1f, 0.2f, 0.3f, 0.4f}}
    };
    var formats = new io.kvslim.kv.store.KvCacheFormat[1];
    formats[0] = io.kvslim.kv.store.KvCacheFormat.of(io.kvslim.kv.format.KvFormats.F32);
    try (ManagedKvCache cache =
        new ManagedKvCache(new BlockPool(), 1, 4, formats, java.util.List.of())) {
      KvCompressMethod.Policy policy =
          (KvCompressMethod.Policy)
              new KvCompressMethod()
                  .policy(
                      KvSpec.parse("kvcompress").rules().get(0).calls().get(0),
                      new PolicyContext(new boolean[] {true}, 1, 4, 1));
      for (int q = 0; q < 3; q++) {
        for (int h = 0; h < 2; h++) {
          policy.observe(cache, 0, q, h, 0, p[q][h].clone(), 4);
        }
      }
      float[] got = policy.accumulated(0, 0);
      for (int i = 0; i < 4; i++) {
        double want = 0;
        for (float[][] query : p) {
          for (float[] head : query) {
            want += head[i] * head[i];
          }
        }
        assertThat((double) got[i]).as("token %d", i).isCloseTo(want, within(1e-6));
      }
    }
  }

  @Test
  void headsLoseWholeBlocksKeepDifferentLengthsAndTheSequenceMeetsItsBudget() {
    SharedData.require();
    try (Model model = Model.load(SharedData.model("llama-spm-f32.gguf"));
        Engine engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      int[] tokens = new int[96];
      SplittableRandom r = new SplittableRandom(4);
      for (int i = 0; i < tokens.length; i++) {
        tokens[i] = 3 + r.nextInt(model.config().vocabSize() - 3);
      }
      String spec = "kvcompress:budget=24,block=4,protected=8";
      try (ManagedKvCache c =
          KvSpecs.caches(KvSpec.parse(spec), new BlockPool(), model.config()).create()) {
        float[] logits = new float[model.config().vocabSize()];
        engine.prefill(c, tokens, 0, tokens.length, 0, false, logits);
        long held = 0;
        int heads = 0;
        Set<Integer> lengths = new HashSet<>();
        for (int l = 0; l < c.layerCount(); l++) {
          for (int g = 0; g < c.paged(l).kvHeads(); g++) {
            int size = c.paged(l).size(g);
            assertThat((96 - size) % 4).as("layer %d head %d lost whole blocks", l, g).isZero();
            assertThat(size).isGreaterThanOrEqualTo(8); // the protected tokens stay
            int[] pos = c.paged(l).positions(g);
            assertThat(pos[size - 1]).isEqualTo(95);
            held += size;
            heads++;
            lengths.add(size);
          }
        }
        long excess = 96L * heads - 24L * heads;
        assertThat(held).isEqualTo(96L * heads - excess / 4 * 4);
        assertThat(lengths).as("per-head lengths differ").hasSizeGreaterThan(1);
        // decode: the sequence is compressed back whenever a block's worth is over
        for (int i = 0; i < 12; i++) {
          engine.decode(c, tokens[i], 96 + i, logits);
        }
        long after = 0;
        for (int l = 0; l < c.layerCount(); l++) {
          for (int g = 0; g < c.paged(l).kvHeads(); g++) {
            after += c.paged(l).size(g);
          }
        }
        assertThat(after - 24L * heads).isLessThan(4L);
      }
    }
  }
}
