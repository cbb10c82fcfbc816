package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import io.kvslim.SharedData;
import io.kvslim.SpmEngineTest;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.model.Batch;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.SplittableRandom;
import java.util.TreeSet;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

class PyramidInferMethodTest extends SpmEngineTest {

  static ManagedKvCache cache(String spec) {
    return KvSpecs.caches(KvSpec.parse(spec), new BlockPool(), model.config()).create();
  }

  /** The rows each layer runs, written out from the reference's loop (lines 972–1037). */
  static int[] expectedRows(int n, int layers, double recent, double delta, int minCtx, int every) {
    int r = (int) Math.floor(n * recent);
    int min = Math.min(minCtx, n - 1 - r);
    int c = n - r - 1;
    int[] rows = new int[layers];
    for (int l = 0; l < layers; l++) {
      rows[l] = c + r + 1;
      double rho = (1 - delta) * (Math.cos(Math.PI * l / layers) + 1) / 2 + delta;
      if (l % every == 0 && c > min && rho < 1) {
        int t = (int) Math.floor(c * rho);
        c = t > min ? t : c;
      }
    }
    return rows;
  }

  @Test
  void layersRunAndHoldTheClosedFormScheduleAndNeverSeeADroppedToken() {
    SharedData.require();
    int n = 300;
    int[] toks = tokens(n, 1);
    float[] logits = new float[model.config().vocabSize()];
    int layers = model.config().layers();
    for (String spec :
        List.of("pyramidinfer", "pyramidinfer:decay=0.3,min_ctx=16,sink=2,interval=2")) {
      KvMethod m = KvMethods.get("pyramidinfer");
      MethodCall call = KvSpec.parse(spec).rules().get(0).calls().get(0);
      int[] want =
          expectedRows(
              n,
              layers,
              call.number("recent"),
              call.number("decay"),
              call.integer("min_ctx"),
              call.integer("interval"));
      assertThat(m).isNotNull();
      try (ManagedKvCache c = cache(spec)) {
        engine.prefill(c, toks, 0, n, 0, false, logits);
        for (int l = 0; l < layers; l++) {
          assertThat(engine.forward().rowsOfLayer(l))
              .as("%s: rows of layer %d", spec, l)
              .isEqualTo(want[l]);
          for (int g = 0; g < c.paged(l).kvHeads(); g++) {
            assertThat(c.paged(l).size(g)).as("%s: layer %d", spec, l).isEqualTo(want[l]);
          }
          if (l > 0) {
            assertThat(want[l]).isLessThanOrEqualTo(want[l - 1]);
            // the deeper layer holds only tokens the layer above kept
            TreeSet<Integer> above = new TreeSet<>();
            for (int p : c.paged(l - 1).positions(0)) {
              above.add(p);
            }
            for (int p : c.paged(l).positions(0)) {
              assertThat(above).as("%s: layer %d position %d", spec, l, p).contains(p);
            }
          }
          // the recent part (and the last token) is in every layer, the sinks too
          int[] pos = c.paged(l).positions(0);
          int recent = (int) Math.floor(n * call.number("recent"));
          assertThat(Arrays.copyOfRange(pos, pos.length - recent - 1, pos.length))
              .isEqualTo(IntStream.range(n - recent - 1, n).toArray());
          assertThat(pos[0]).isZero();
        }
        assertThat(want[layers - 1]).as("%s really thins", spec).isLessThan(n);
      }
    }
  }

  /** Equal bit for bit; the first difference named (row, column) without diffing the arrays. */
  static void assertSameBits(float[] got, float[] want, int vocab, String what) {
    assertThat(got.length).isEqualTo(want.length);
    for (int i = 0; i < got.length; i++) {
      if (Float.floatToIntBits(got[i]) != Float.floatToIntBits(want[i])) {
        throw new AssertionError(
            what
                + ": row "
                + i / vocab
                + " column "
                + i % vocab
                + ": "
                + got[i]
                + " vs "
                + want[i]);
      }
    }
  }

  @Test
  void noDecayIsTheFullCacheBitForBit() {
    SharedData.require();
    int n = 150;
    int steps = 8;
    int[] toks = tokens(n + steps, 2);
    int vocab = model.config().vocabSize();
    float[] a = new float[n * vocab];
    float[] b = new float[n * vocab];
    try (ManagedKvCache full = cache("full");
        ManagedKvCache pyr = cache("pyramidinfer:decay=1")) {
      engine.prefill(full, toks, 0, n, 0, true, a);
      engine.prefill(pyr, toks, 0, n, 0, true, b);
      assertSameBits(b, a, vocab, "prefill");
      float[] ra = new float[vocab];
      float[] rb = new float[vocab];
      for (int i = 0; i < steps; i++) {
        engine.decode(full, toks[n + i], n + i, ra);
        engine.decode(pyr, toks[n + i], n + i, rb);
        assertSameBits(rb, ra, vocab, "decode step " + i);
      }
      for (int l = 0; l < full.layerCount(); l++) {
        assertThat(pyr.paged(l).positions(0)).isEqualTo(full.paged(l).positions(0));
        assertThat(engine.forward().rowsOfLayer(l)).isEqualTo(1);
      }
    }
  }

  @Test
  void aThinnedPrefillsLastRowMatchesWithAndWithoutAllLogits() {
    SharedData.require();
    int n = 120;
    int[] toks = tokens(n, 3);
    int vocab = model.config().vocabSize();
    float[] all = new float[n * vocab];
    float[] last = new float[vocab];
    String spec = "pyramidinfer:decay=0.2,min_ctx=8";
    try (ManagedKvCache c1 = cache(spec);
        ManagedKvCache c2 = cache(spec)) {
      engine.prefill(c1, toks, 0, n, 0, true, all);
      engine.prefill(c2, toks, 0, n, 0, false, last);
      assertSameBits(Arrays.copyOfRange(all, (n - 1) * vocab, n * vocab), last, vocab, "last row");
      assertThat(engine.forward().rowsOfLayer(model.config().layers() - 1)).isLessThan(n);
    }
  }

  /** A thinning prompt batched with another sequence's prompt: each as when run alone. */
  @Test
  void aThinnedSegmentNextToAnotherIsAsWhenAlone() {
    SharedData.require();
    int vocab = model.config().vocabSize();
    int[] ta = tokens(90, 5);
    int[] tb = tokens(40, 6);
    String spec = "pyramidinfer:decay=0.2,min_ctx=8";
    for (boolean thinningFirst : new boolean[] {true, false}) {
      float[] aloneA = new float[vocab];
      float[] aloneB = new float[vocab];
      float[] both = new float[2 * vocab];
      try (ManagedKvCache a1 = cache(spec);
          ManagedKvCache b1 = cache("full");
          ManagedKvCache a2 = cache(spec);
          ManagedKvCache b2 = cache("full")) {
        engine.prefill(a1, ta, 0, ta.length, 0, false, aloneA);
        engine.prefill(b1, tb, 0, tb.length, 0, false, aloneB);
        Batch batch = new Batch();
        if (thinningFirst) {
          batch.add(a2, ta, 0, ta.length, 0, false, true).add(b2, tb, 0, tb.length, 0, false, true);
        } else {
          batch.add(b2, tb, 0, tb.length, 0, false, true).add(a2, ta, 0, ta.length, 0, false, true);
        }
        engine.forward().run(batch, both);
        a2.afterStep(KvCache.StepKind.PREFILL);
        b2.afterStep(KvCache.StepKind.PREFILL);
        int ia = thinningFirst ? 0 : 1;
        assertSameBits(Arrays.copyOfRange(both, ia * vocab, (ia + 1) * vocab), aloneA, vocab, "a");
        assertSameBits(
            Arrays.copyOfRange(both, (1 - ia) * vocab, (2 - ia) * vocab), aloneB, vocab, "b");
        int layers = model.config().layers();
        for (int l = 0; l < layers; l++) {
          assertThat(a2.paged(l).positions(0)).isEqualTo(a1.paged(l).positions(0));
          assertThat(b2.paged(l).positions(0)).isEqualTo(b1.paged(l).positions(0));
        }
        assertThat(engine.forward().rowsOfLayer(layers - 1))
            .isEqualTo(a2.paged(layers - 1).size(0) + tb.length);
        assertThat(a2.paged(layers - 1).size(0)).isLessThan(ta.length);
      }
    }
  }

  @Test
  void decodeBlocksKeepTheirTopTokensOnTheCosineSchedule() {
    SharedData.require();
    int n = 64;
    int steps = 8;
    int[] toks = tokens(n + steps, 4);
    int vocab = model.config().vocabSize();
    float[] logits = new float[vocab];
    int layers = model.config().layers();
    // R = 3: the recent part is the last 4 entries; a block of 4 is compressed after 8 steps
    try (ManagedKvCache c = cache("pyramidinfer:recent=0.05,exceed=4,gen_decay=0.1")) {
      engine.prefill(c, toks, 0, n, 0, false, logits);
      int[] prompt = new int[layers];
      for (int l = 0; l < layers; l++) {
        prompt[l] = c.paged(l).size(0);
      }
      for (int i = 0; i < steps; i++) {
        engine.decode(c, toks[n + i], n + i, logits);
        if (i < steps - 1) {
          for (int l = 0; l < layers; l++) {
            assertThat(c.paged(l).size(0)).isEqualTo(prompt[l] + i + 1);
          }
        }
      }
      for (int l = 0; l < layers; l++) {
        double rho = 0.9 * (Math.cos(Math.PI * l / layers) + 1) / 2 + 0.1;
        int keep = Math.max(1, (int) Math.floor(4 * 0.9 * rho));
        int[] pos = c.paged(l).positions(0);
        assertThat(pos.length).as("layer %d", l).isEqualTo(prompt[l] + 4 + keep);
        // the block is the first 4 decoded tokens; the 4 after it are the recent part
        int[] block = Arrays.copyOfRange(pos, prompt[l], prompt[l] + keep);
        for (int p : block) {
          assertThat(p).isBetween(n, n + 3);
        }
        assertThat(Arrays.copyOfRange(pos, prompt[l] + keep, pos.length))
            .containsExactly(n + 4, n + 5, n + 6, n + 7);
        for (int g = 1; g < c.paged(l).kvHeads(); g++) {
          assertThat(c.paged(l).positions(g)).isEqualTo(pos);
        }
      }
    }
  }

  /** The PvC score of a hand-built attention matrix, and the rows it keeps. */
  @Test
  void pvcScoresFollowTheReferenceOnAHandBuiltAttentionMatrix() {
    int layers = 4;
    int n = 12; // R = 3: rows 8..11 score, 8 context rows
    int heads = 2;
    boolean[] scope = new boolean[layers];
    Arrays.fill(scope, true);
    PyramidInferMethod.Policy p =
        new PyramidInferMethod.Policy(scope, 0.25, 0.2, 2, 1, 1, 1.2, 0.1, 0.9, 16);
    KvCacheFormat[] formats = new KvCacheFormat[layers];
    Arrays.fill(formats, KvCacheFormat.of(KvFormats.F32));
    SplittableRandom r = new SplittableRandom(9);
    double[][][] probs = new double[n][heads][n];
    for (int q = 0; q < n; q++) {
      for (int h = 0; h < heads; h++) {
        double sum = 0;
        for (int j = 0; j <= q; j++) {
          probs[q][h][j] = r.nextDouble();
          sum += probs[q][h][j];
        }
        for (int j = 0; j <= q; j++) {
          probs[q][h][j] /= sum;
        }
      }
    }
    try (ManagedKvCache cache =
        new ManagedKvCache(new BlockPool(), 1, 4, formats, List.<KvPolicy>of(p))) {
      p.beforeAppend(cache, 0, n);
      p.beforeAppend(cache, 2, n);
      float[] row = new float[n];
      for (int q = 0; q < n; q++) {
        for (int h = 0; h < heads; h++) {
          for (int j = 0; j < n; j++) {
            row[j] = (float) probs[q][h][j];
          }
          p.observe(cache, 2, q, h, 0, row, n);
        }
      }
      assertThat(p.recent()).isEqualTo(3);
      float[] got = p.pvcScores(8);
      double[] want = new double[8];
      double[] w = {1.0, 1 + 0.2 / 3, 1 + 0.4 / 3, 1.2}; // torch.linspace(1.0, 1.2, 4)
      for (int j = 0; j < 8; j++) {
        for (int i = 0; i < 4; i++) {
          want[j] += w[i] * (probs[8 + i][0][j] + probs[8 + i][1][j]) / 2 / 4;
        }
      }
      assertThat(got[0]).as("the sink").isEqualTo(Float.MAX_VALUE);
      for (int j = 1; j < 8; j++) {
        assertThat((double) got[j]).as("row %d", j).isCloseTo(want[j], within(1e-6));
      }
      // layer 2 of 4: ρ = 0.8·(cos(π/2) + 1)/2 + 0.2 = 0.6, so ⌊8·0.6⌋ = 4 context rows stay
      want[0] = Double.MAX_VALUE;
      int[] top =
          IntStream.range(0, 8)
              .boxed()
              .sorted(Comparator.comparingDouble((Integer j) -> -want[j]))
              .limit(4)
              .mapToInt(Integer::intValue)
              .sorted()
              .toArray();
      int[] kept = p.keptRows(cache, 2, n);
      assertThat(kept).containsExactly(top[0], top[1], top[2], top[3], 8, 9, 10, 11);
      // layer 0 never selects (ρ_0 = 1)
      assertThat(p.keptRows(cache, 0, n)).isNull();
    }
  }

  /**
   * A decode block scored by hand: only the last R + 1 queries vote, the later ones weigh more, and
   * the block keeps max(1, ⌊exceed·gen_compress·ρ^gen⌋) of its tokens.
   */
  @Test
  void decodeBlockScoresFollowTheReferenceOnHandBuiltRows() {
    int layers = 4;
    boolean[] scope = new boolean[layers];
    Arrays.fill(scope, true);
    // R = ⌊8·0.25⌋ = 2: the last 3 queries vote; blocks of 2; weights linspace(1, 1.2, 3)
    PyramidInferMethod.Policy p =
        new PyramidInferMethod.Policy(scope, 0.25, 1.0, 64, 1, 4, 1.2, 0.1, 0.9, 2);
    KvCacheFormat[] formats = new KvCacheFormat[layers];
    Arrays.fill(formats, KvCacheFormat.of(KvFormats.F32));
    try (ManagedKvCache cache =
        new ManagedKvCache(new BlockPool(), 1, 4, formats, List.<KvPolicy>of(p))) {
      int prompt = 8;
      int[] pos = IntStream.range(0, prompt).toArray();
      float[] kv = new float[prompt * 4];
      for (int l = 0; l < layers; l++) {
        cache.layer(l).append(prompt, pos, kv, kv);
      }
      cache.afterStep(io.kvslim.kv.KvCache.StepKind.PREFILL);
      assertThat(p.recent()).isEqualTo(2);
      // probabilities of decode steps 1..5 (two heads) on entries 8 and 9, the rest elsewhere:
      // steps 1 and 2 are out of the ring by step 5; unweighted, entry 8 would win (0.70 > 0.65)
      double[][] on8 = {{0.9, 0.9}, {0.9, 0.9}, {0.5, 0.5}, {0.1, 0.1}, {0.1, 0.1}};
      double[][] on9 = {{0, 0}, {0.05, 0.05}, {0.1, 0.1}, {0.2, 0.2}, {0.3, 0.4}};
      for (int t = 0; t < 5; t++) {
        int count = prompt + t + 1;
        for (int l = 0; l < layers; l++) {
          cache.layer(l).append(1, new int[] {prompt + t}, new float[4], new float[4]);
          for (int h = 0; h < 2; h++) {
            float[] probs = new float[count];
            probs[8] = (float) on8[t][h];
            if (count > 9) {
              probs[9] = (float) on9[t][h];
            }
            p.observe(cache, l, 0, h, 0, probs, count);
          }
        }
        if (t == 4) {
          // before the step ends: the block [8, 10) scored from the ring's rows (steps 3..5)
          float[] s = p.decodeScores(2);
          double[] w = {1.0, 1.1, 1.2};
          double want8 = 0;
          double want9 = 0;
          for (int i = 0; i < 3; i++) {
            want8 += w[i] * (on8[2 + i][0] + on8[2 + i][1]) / 2 / 3;
            want9 += w[i] * (on9[2 + i][0] + on9[2 + i][1]) / 2 / 3;
          }
          assertThat((double) s[0]).isCloseTo(want8, within(1e-6));
          assertThat((double) s[1]).isCloseTo(want9, within(1e-6));
          assertThat(want9).isGreaterThan(want8);
        }
        cache.afterStep(io.kvslim.kv.KvCache.StepKind.DECODE);
      }
      for (int l = 0; l < layers; l++) {
        double rho = 0.9 * (Math.cos(Math.PI * l / layers) + 1) / 2 + 0.1;
        int keep = Math.max(1, (int) Math.floor(2 * 0.9 * rho));
        int[] want =
            keep == 2
                ? new int[] {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
                : new int[] {0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12};
        assertThat(cache.paged(l).positions(0)).as("layer %d keeps %d", l, keep).isEqualTo(want);
      }
    }
  }

  @Test
  void theScheduleHelpersAreTheReferenceFormulas() {
    assertThat(PyramidInferMethod.cosine(0.9, 0, 32)).isEqualTo(1.0);
    assertThat(PyramidInferMethod.cosine(0.9, 16, 32)).isCloseTo(0.95, within(1e-12));
    assertThat(PyramidInferMethod.recentRows(1000, 0.2)).isEqualTo(200);
    // ⌊c·ρ⌋ not above the minimum: the layer keeps all
    assertThat(PyramidInferMethod.keptContext(100, 0.5, 64)).isEqualTo(100);
    assertThat(PyramidInferMethod.keptContext(200, 0.5, 64)).isEqualTo(100);
    assertThat(PyramidInferMethod.keptContext(64, 0.5, 64)).isEqualTo(64);
    assertThat(PyramidInferMethod.keptContext(200, 1.0, 64)).isEqualTo(200);
  }
}
