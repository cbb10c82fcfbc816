package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.PromptSegments;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.EntryWeights;
import io.kvslim.model.Model;
import io.kvslim.model.ModelConfig;
import java.util.Arrays;
import java.util.BitSet;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * LOOK-M (METHODS.md H4): all-priority without merging is H2O's one-shot kept set; a merged row is
 * the M7 formula, inside its members' per-coordinate range, with the M7 weight; a priority token is
 * kept over a non-priority one of the same score; and labelled prompts keep their priority tokens
 * first on a real model.
 */
class LookmMethodTest {
  static final int N = 100;
  static final int BUDGET = 24;
  static Model model;
  static Engine engine;
  static int[] tokens;

  @BeforeAll
  static void load() {
    if (!SharedData.present()) {
      return;
    }
    model = Model.load(SharedData.model("llama-spm-f32.gguf"));
    engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()));
    SplittableRandom r = new SplittableRandom(7);
    tokens = new int[N];
    for (int i = 0; i < N; i++) {
      tokens[i] = 3 + r.nextInt(model.config().vocabSize() - 3);
    }
  }

  @AfterAll
  static void close() {
    if (engine != null) {
      engine.close();
      model.close();
    }
  }

  static ManagedKvCache prefilled(String spec, PromptSegments labels) {
    ManagedKvCache c = KvSpecs.caches(KvSpec.parse(spec), new BlockPool(), model.config()).create();
    if (labels != null) {
      c.labelPrompt(labels);
    }
    engine.prefill(c, tokens, 0, N, 0, false, new float[model.config().vocabSize()]);
    return c;
  }

  @Test
  void allPriorityWithoutMergingKeepsH2osOneShotSet() {
    SharedData.require();
    ModelConfig cfg = model.config();
    for (String recent : new String[] {"0.5", "0.25"}) {
      try (ManagedKvCache h2o = prefilled("h2o:budget=" + BUDGET + ",recent=" + recent, null);
          ManagedKvCache bare =
              prefilled("lookm:budget=" + BUDGET + ",recent=" + recent + ",merge=none", null);
          ManagedKvCache labelled =
              prefilled(
                  "lookm:budget=" + BUDGET + ",recent=" + recent + ",merge=none",
                  PromptSegments.allPriority(N))) {
        for (int l = 0; l < cfg.layers(); l++) {
          for (int g = 0; g < cfg.kvHeads(); g++) {
            int[] want = h2o.paged(l).positions(g);
            assertThat(want).hasSize(BUDGET);
            assertThat(bare.paged(l).positions(g)).as("layer %d head %d", l, g).isEqualTo(want);
            assertThat(labelled.paged(l).positions(g)).isEqualTo(want);
            assertThat(bare.paged(l).store().head(g).weights().any()).isFalse();
          }
        }
      }
    }
  }

  @Test
  void mergingKeepsTheSameSetAndEveryTokenStandsInOneEntry() {
    SharedData.require();
    ModelConfig cfg = model.config();
    try (ManagedKvCache none = prefilled("lookm:budget=" + BUDGET + ",merge=none", null);
        ManagedKvCache avg = prefilled("lookm:budget=" + BUDGET + ",merge=avg", null);
        ManagedKvCache pivot = prefilled("lookm:budget=" + BUDGET + ",merge=pivot", null);
        ManagedKvCache weighted = prefilled("lookm:budget=" + BUDGET + ",merge=weighted", null)) {
      for (int l = 0; l < cfg.layers(); l++) {
        for (int g = 0; g < cfg.kvHeads(); g++) {
          int[] kept = none.paged(l).positions(g);
          for (ManagedKvCache c : new ManagedKvCache[] {avg, pivot, weighted}) {
            assertThat(c.paged(l).positions(g)).isEqualTo(kept);
          }
          for (ManagedKvCache c : new ManagedKvCache[] {avg, pivot}) {
            EntryWeights w = c.paged(l).store().head(g).weights();
            double total = 0;
            for (int i = 0; i < BUDGET; i++) {
              total += w.weight(i);
            }
            assertThat(total).as("layer %d head %d: 1 + absorbed, summed", l, g).isEqualTo(N);
          }
          EntryWeights w = weighted.paged(l).store().head(g).weights();
          double total = 0;
          for (int i = 0; i < BUDGET; i++) {
            assertThat(w.weight(i)).isGreaterThanOrEqualTo(1f);
            total += w.weight(i);
          }
          assertThat(total).isBetween((double) BUDGET, (double) N + 1e-3);
        }
      }
    }
  }

  @Test
  void mergedRowsFollowM7AndStayInsideTheirMembersRange() {
    SplittableRandom r = new SplittableRandom(11);
    int d = 8;
    int n = 40;
    float[] rows = new float[n * d];
    for (int i = 0; i < rows.length; i++) {
      rows[i] = (float) r.nextGaussian();
    }
    BitSet kept = new BitSet();
    for (int i = 0; i < n; i += 5) {
      kept.set(i);
    }
    kept.set(n - 3, n);
    BitSet evicted = new BitSet();
    evicted.set(0, n);
    evicted.andNot(kept);
    int[] target = new int[n];
    float[] cos = new float[n];
    NearestKey.assign(rows, d, kept, evicted, target, cos);
    for (int e = 0; e < n; e++) {
      if (kept.get(e)) {
        assertThat(target[e]).isEqualTo(-1);
        continue;
      }
      int best = -1;
      double bestCos = Double.NEGATIVE_INFINITY;
      for (int c = kept.nextSetBit(0); c >= 0; c = kept.nextSetBit(c + 1)) {
        double cs = EmsMethodTest.cos(rows, e, c, d);
        if (cs > bestCos) {
          bestCos = cs;
          best = c;
        }
      }
      assertThat(target[e]).as("token %d", e).isEqualTo(best);
      assertThat((double) cos[e]).isCloseTo(bestCos, within(1e-6));
    }
    for (LookmMethod.Merge rule :
        new LookmMethod.Merge[] {
          LookmMethod.Merge.AVG, LookmMethod.Merge.PIVOT, LookmMethod.Merge.WEIGHTED
        }) {
      int absorbing = 0;
      for (int c = kept.nextSetBit(0); c >= 0; c = kept.nextSetBit(c + 1)) {
        float[] out = new float[d];
        LookmMethod.mergeRow(rule, rows, d, c, target, cos, n, out, 0);
        double mass = 1;
        int members = 0;
        double[] want = new double[d];
        for (int j = 0; j < d; j++) {
          want[j] = rows[c * d + j];
        }
        for (int e = 0; e < n; e++) {
          if (target[e] != c) {
            continue;
          }
          members++;
          double omega = (cos[e] + 1) / 2.0;
          mass += rule == LookmMethod.Merge.WEIGHTED ? omega : 1;
          for (int j = 0; j < d; j++) {
            double x = rows[e * d + j];
            double xc = rows[c * d + j];
            want[j] +=
                switch (rule) {
                  case AVG -> x;
                  case PIVOT -> (x + xc) / 2; // m_e = (k_e + k_c)/2
                  case WEIGHTED -> omega * x;
                  case NONE -> 0;
                };
          }
        }
        absorbing += members > 0 ? 1 : 0;
        float w = LookmMethod.mergeWeight(rule, c, target, cos, n);
        assertThat((double) w).as("%s weight of %d", rule, c).isCloseTo(mass, within(1e-5));
        if (rule != LookmMethod.Merge.WEIGHTED) {
          assertThat(w).isEqualTo(1f + members);
        }
        for (int j = 0; j < d; j++) {
          double lo = rows[c * d + j];
          double hi = lo;
          for (int e = 0; e < n; e++) {
            if (target[e] == c) {
              lo = Math.min(lo, rows[e * d + j]);
              hi = Math.max(hi, rows[e * d + j]);
            }
          }
          assertThat((double) out[j]).as("%s row %d coord %d", rule, c, j).isBetween(lo, hi);
          assertThat((double) out[j]).isCloseTo(want[j] / mass, within(1e-5));
        }
        if (members == 0) {
          assertThat(out).isEqualTo(Arrays.copyOfRange(rows, c * d, c * d + d));
        }
      }
      assertThat(absorbing).as("some kept rows absorb tokens").isGreaterThan(1);
    }
  }

  @Test
  void aPriorityTokenIsKeptOverANonPriorityOneWithTheSameScore() {
    int n = 20;
    float[] scores = new float[n];
    Arrays.fill(scores, 1f);
    int[] pos = new int[n];
    Arrays.setAll(pos, i -> i);
    boolean[] priority = new boolean[n];
    Arrays.fill(priority, 8, n, true); // 0..7: a document; 8..: the question
    PromptSegments labels = new PromptSegments(priority);
    int capacity = 8;
    int recent = 4;
    // without labels the ties go to the later tokens: the earliest are evicted
    BitSet plain = LookmMethod.evicted(scores, pos, null, 65516f, false, capacity, recent);
    assertThat(plain.cardinality()).isEqualTo(n - capacity);
    assertThat(plain.nextSetBit(0)).isZero();
    BitSet prior = LookmMethod.evicted(scores, pos, labels, 65516f, false, capacity, recent);
    assertThat(prior.cardinality()).isEqualTo(n - capacity);
    for (int i = 0; i < 8; i++) {
      assertThat(prior.get(i)).as("document token %d goes first", i).isTrue();
    }
    for (int i = n - recent; i < n; i++) {
      assertThat(prior.get(i)).as("recent token %d stays", i).isFalse();
    }
    // even a document token scored far higher goes before a question token while the bonus is big
    scores[3] = 50f;
    BitSet still = LookmMethod.evicted(scores, pos, labels, 65516f, false, capacity, recent);
    assertThat(still.get(3)).isTrue();
    // with no bonus the labels change nothing
    assertThat(LookmMethod.evicted(scores, pos, labels, 0f, false, capacity, recent))
        .isEqualTo(LookmMethod.evicted(scores, pos, null, 0f, false, capacity, recent));
  }

  @Test
  void protectNeverEvictsAPriorityToken() {
    int n = 20;
    float[] scores = new float[n];
    SplittableRandom r = new SplittableRandom(3);
    for (int i = 0; i < n; i++) {
      scores[i] = (float) r.nextDouble();
    }
    int[] pos = new int[n];
    Arrays.setAll(pos, i -> i);
    boolean[] priority = new boolean[n];
    for (int i = 0; i < n; i += 3) {
      priority[i] = true;
    }
    PromptSegments labels = new PromptSegments(priority);
    for (int capacity = 1; capacity <= n; capacity++) {
      BitSet out = LookmMethod.evicted(scores, pos, labels, 0f, true, capacity, capacity / 2);
      int documents = 0;
      for (int i = 0; i < n - capacity / 2; i++) {
        documents += priority[i] ? 0 : 1;
      }
      assertThat(out.cardinality()).isEqualTo(Math.min(n - capacity, documents));
      for (int i = out.nextSetBit(0); i >= 0; i = out.nextSetBit(i + 1)) {
        assertThat(priority[i]).as("capacity %d evicts priority token %d", capacity, i).isFalse();
      }
    }
  }

  @Test
  void aLabelledPromptKeepsItsPriorityTokensFirstOnTheModel() {
    SharedData.require();
    ModelConfig cfg = model.config();
    boolean[] priority = new boolean[N];
    Arrays.fill(priority, 0, 10, true); // an instruction
    Arrays.fill(priority, 70, N, true); // the question (and the recent window)
    PromptSegments labels = new PromptSegments(priority);
    int recent = BUDGET / 2;
    try (ManagedKvCache c = prefilled("lookm:budget=" + BUDGET + ",merge=none", labels)) {
      assertThat(c.promptSegments()).isSameAs(labels);
      for (int l = 0; l < cfg.layers(); l++) {
        for (int g = 0; g < cfg.kvHeads(); g++) {
          int[] kept = c.paged(l).positions(g);
          assertThat(kept).hasSize(BUDGET);
          for (int i = 0; i < BUDGET - recent; i++) {
            assertThat(priority[kept[i]])
                .as("layer %d head %d keeps document token %d", l, g, kept[i])
                .isTrue();
          }
        }
      }
    }
    // protect: more priority tokens than the heavy budget, and none of them goes
    try (ManagedKvCache c = prefilled("lookm:budget=" + BUDGET + ",protect=true", labels)) {
      for (int l = 0; l < cfg.layers(); l++) {
        for (int g = 0; g < cfg.kvHeads(); g++) {
          int[] kept = c.paged(l).positions(g);
          int p = 0;
          for (int k : kept) {
            p += priority[k] ? 1 : 0;
          }
          assertThat(p).as("layer %d head %d", l, g).isEqualTo(40);
        }
      }
    }
  }
}
