package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.ContextReplay;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.policy.AlisaPolicy;
import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.KvBlock;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.model.Model;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * ALISA on a real (tiny) model: a budget covering the sequence is the INT8 cache bit for bit (and
 * the F32 cache with {@code bits=32}), within q8_0's error of the exact keys; no head ever holds
 * more than the capacity; each step's kept set equals a scalar reference of SWA (window plus the
 * top accumulated scores over retained and evicted tokens); recomputed tokens carry the prefill's
 * keys and values; the scheduler's counters add up; bad knobs are one sentence.
 */
class AlisaMethodTest {
  static final int PROMPT = 48;
  static final int DECODE = 40;
  static Model model;
  static Engine engine;
  static int[] tokens;

  @BeforeAll
  static void load() {
    SharedData.require();
    model = Model.load(SharedData.model("llama-spm-f32.gguf"));
    engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()));
    SplittableRandom r = new SplittableRandom(5);
    tokens = new int[PROMPT + DECODE];
    for (int i = 0; i < tokens.length; i++) {
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

  static ManagedKvCache cache(String spec) {
    return KvSpecs.caches(KvSpec.parse(spec), new BlockPool(), model.config()).create();
  }

  static float[][] run(KvCache c, Runnable afterEachStep) {
    int vocab = model.config().vocabSize();
    float[][] out = new float[DECODE + 1][vocab];
    engine.prefill(c, tokens, 0, PROMPT, 0, false, out[0]);
    afterEachStep.run();
    for (int i = 0; i < DECODE; i++) {
      engine.decode(c, tokens[PROMPT + i], PROMPT + i, out[i + 1]);
      afterEachStep.run();
    }
    return out;
  }

  @Test
  void aBudgetCoveringTheSequenceIsTheInt8CacheBitForBitWithinQ8Error() {
    int n = PROMPT + DECODE;
    try (ManagedKvCache q8 = cache("q8_0");
        ManagedKvCache a = cache("alisa:budget=" + n);
        ManagedKvCache full = cache("full")) {
      float[][] want = run(q8, () -> {});
      float[][] got = run(a, () -> {});
      run(full, () -> {});
      for (int i = 0; i < want.length; i++) {
        assertThat(got[i]).as("step %d", i).containsExactly(want[i]);
      }
      int d = model.config().headDim();
      float[] exact = new float[d];
      float[] stored = new float[d];
      for (int l = 0; l < a.layerCount(); l++) {
        for (int g = 0; g < a.paged(l).kvHeads(); g++) {
          assertThat(a.paged(l).size(g)).isEqualTo(n);
          if (l > 0) {
            continue; // deeper layers' exact keys differ by the INT8 attention below them
          }
          for (int t = 0; t < n; t++) {
            full.paged(l).head(g).readKey(t, exact);
            a.paged(l).head(g).readKey(t, stored);
            for (int b = 0; b < d; b += 32) {
              float amax = 0;
              for (int j = b; j < Math.min(d, b + 32); j++) {
                amax = Math.max(amax, Math.abs(exact[j]));
              }
              float bound = 0.57f * amax / 127f + 1e-7f; // d/2 plus the f16 scale's rounding
              for (int j = b; j < Math.min(d, b + 32); j++) {
                assertThat(Math.abs(stored[j] - exact[j])).isLessThanOrEqualTo(bound);
              }
            }
          }
        }
      }
    }
    try (ManagedKvCache f = cache("full");
        ManagedKvCache a = cache("alisa:budget=" + n + ",bits=32")) {
      float[][] want = run(f, () -> {});
      float[][] got = run(a, () -> {});
      for (int i = 0; i < want.length; i++) {
        assertThat(got[i]).as("bits=32, step %d", i).containsExactly(want[i]);
      }
    }
  }

  /** The policy under test, and its state before each afterStep, for the scalar reference. */
  static final class Spy implements KvPolicy {
    final AlisaPolicy p;
    final float decay;
    int checkedSteps;
    int recomputeSteps;

    Spy(AlisaPolicy p, float decay) {
      this.p = p;
      this.decay = decay;
    }

    @Override
    public boolean observes(int layer) {
      return p.observes(layer);
    }

    @Override
    public void observe(
        ManagedKvCache c, int layer, int q, int head, int kvHead, float[] probs, int count) {
      p.observe(c, layer, q, head, kvHead, probs, count);
    }

    @Override
    public boolean wantsReplay() {
      return p.wantsReplay();
    }

    @Override
    public void replay(ManagedKvCache c, ContextReplay r) {
      p.replay(c, r);
    }

    @Override
    public void afterStep(ManagedKvCache c, KvCache.StepKind kind) {
      int layers = c.layerCount();
      int heads = c.paged(0).kvHeads();
      int[][][] hotPos = new int[layers][heads][];
      float[][][] hotScore = new float[layers][heads][];
      int[][][] coldPos = new int[layers][heads][];
      float[][][] coldScore = new float[layers][heads][];
      for (int l = 0; l < layers; l++) {
        for (int g = 0; g < heads; g++) {
          hotPos[l][g] = c.paged(l).positions(g);
          hotScore[l][g] = p.hotScores(l, g, hotPos[l][g].length);
          coldPos[l][g] = p.coldPositions(l, g);
          coldScore[l][g] = p.coldScores(l, g);
        }
      }
      long restoredBefore = p.stats().restoredEntries();
      p.afterStep(c, kind);
      boolean recomputed = p.stats().restoredEntries() > restoredBefore;
      recomputeSteps += recomputed ? 1 : 0;
      int cap = p.capacity();
      int local = p.local();
      for (int l = 0; l < layers; l++) {
        for (int g = 0; g < heads; g++) {
          float[] hs = hotScore[l][g].clone();
          if (kind == KvCache.StepKind.DECODE && decay != 1f) {
            for (int i = 0; i < hs.length; i++) {
              hs[i] *= decay;
            }
          }
          int[] want =
              reference(hotPos[l][g], hs, coldPos[l][g], coldScore[l][g], cap, local, recomputed);
          int[] got = c.paged(l).positions(g);
          Arrays.sort(got);
          assertThat(got).as("layer %d head %d, %s", l, g, kind).containsExactly(want);
          assertThat(got.length).isLessThanOrEqualTo(cap);
        }
      }
      checkedSteps++;
    }
  }

  /**
   * SWA by brute force: the {@code local} newest positions plus the highest scores (ties: earlier
   * position) among the rest of the retained tokens and the evicted ones, {@code cap} in all;
   * without recomputation, the best retained tokens only. Sorted positions.
   */
  static int[] reference(
      int[] hotPos,
      float[] hotScore,
      int[] coldPos,
      float[] coldScore,
      int cap,
      int local,
      boolean recomputed) {
    int size = hotPos.length;
    if (size <= cap && coldPos.length == 0) {
      int[] all = hotPos.clone();
      Arrays.sort(all);
      return all;
    }
    int newest = Arrays.stream(hotPos).max().orElse(-1);
    List<Integer> keep = new ArrayList<>();
    List<float[]> cand = new ArrayList<>(); // {position, score, evicted ? 1 : 0}
    for (int i = 0; i < size; i++) {
      if (hotPos[i] > newest - local) {
        keep.add(hotPos[i]);
      } else {
        cand.add(new float[] {hotPos[i], hotScore[i], 0});
      }
    }
    int slots = cap - keep.size();
    if (recomputed) {
      for (int c = 0; c < coldPos.length; c++) {
        cand.add(new float[] {coldPos[c], coldScore[c], 1});
      }
    } else if (size <= cap) {
      slots = cand.size();
    }
    cand.sort((x, y) -> x[1] != y[1] ? Float.compare(y[1], x[1]) : Float.compare(x[0], y[0]));
    for (int i = 0; i < Math.min(slots, cand.size()); i++) {
      keep.add((int) cand.get(i)[0]);
    }
    return keep.stream().mapToInt(Integer::intValue).sorted().toArray();
  }

  static ManagedKvCache spied(Spy spy, KvCacheFormat f) {
    int layers = model.config().layers();
    KvCacheFormat[] formats = new KvCacheFormat[layers];
    Arrays.fill(formats, f);
    return new ManagedKvCache(
        new BlockPool(), model.config().kvHeads(), model.config().headDim(), formats, List.of(spy));
  }

  static AlisaPolicy policy(int budget, double recompute, double decay) {
    boolean[] all = new boolean[model.config().layers()];
    Arrays.fill(all, true);
    return new AlisaPolicy(all, Budget.parse("" + budget), 0.5, recompute, decay, 0);
  }

  @Test
  void everyStepKeepsTheScalarReferencesSelectionWithinTheCapacity() {
    for (double decay : new double[] {1, 0.9}) {
      for (double recompute : new double[] {0, 16}) {
        Spy spy = new Spy(policy(12, recompute, decay), (float) decay);
        try (ManagedKvCache c = spied(spy, KvCacheFormat.of(KvFormats.Q8_0))) {
          run(c, () -> {});
        }
        assertThat(spy.checkedSteps).isEqualTo(DECODE + 1);
        AlisaPolicy.Stats s = spy.p.stats();
        assertThat(s.phase1Steps() + s.phase2Steps() + s.phase3Steps()).isEqualTo(DECODE);
        assertThat(s.phase3Steps()).isEqualTo(spy.recomputeSteps);
        // the credit: recompute tokens per decode step, never spent ahead
        assertThat(s.recomputedTokens()).isLessThanOrEqualTo((long) (recompute * DECODE));
        if (recompute == 0) {
          assertThat(s.restoredEntries()).isZero();
        }
        if (decay < 1 && recompute > 0) {
          assertThat(spy.recomputeSteps)
              .as("decayed scores bring evicted tokens back")
              .isPositive();
          assertThat(s.recomputedTokens()).isPositive();
        }
      }
    }
  }

  @Test
  void recomputedTokensCarryThePrefillsKeysAndValues() {
    Spy spy = new Spy(policy(12, 16, 0.9), 0.9f);
    try (ManagedKvCache full = cache("full");
        ManagedKvCache c = spied(spy, KvCacheFormat.of(KvFormats.F32))) {
      run(full, () -> {});
      run(c, () -> {});
      assertThat(spy.recomputeSteps).isPositive();
      int d = model.config().headDim();
      float[] want = new float[d];
      float[] got = new float[d];
      int compared = 0;
      for (int l = 0; l < c.layerCount(); l++) {
        PagedLayerKv layer = c.paged(l);
        for (int g = 0; g < layer.kvHeads(); g++) {
          int[] pos = layer.positions(g);
          for (int i = 0; i < pos.length; i++) {
            if (pos[i] >= PROMPT) {
              continue; // generated tokens attended over the evicted cache, not the full one
            }
            full.paged(l).head(g).readKey(pos[i], want);
            layer.head(g).readKey(i, got);
            assertThat(got).as("key of %d", pos[i]).containsExactly(want, within(want));
            full.paged(l).head(g).readValue(pos[i], want);
            layer.head(g).readValue(i, got);
            assertThat(got).as("value of %d", pos[i]).containsExactly(want, within(want));
            compared++;
          }
        }
      }
      assertThat(compared).isPositive();
    }
  }

  static org.assertj.core.data.Offset<Float> within(float[] v) {
    float m = 0;
    for (float x : v) {
      m = Math.max(m, Math.abs(x));
    }
    return org.assertj.core.data.Offset.offset(1e-4f * Math.max(1f, m));
  }

  @Test
  void theCacheNeverHoldsMoreThanItsBudgetAtAnyStep() {
    int budget = 16;
    try (ManagedKvCache c = cache("alisa:budget=" + budget + ",decay=0.9,recompute=16")) {
      int d = model.config().headDim();
      int bt = KvCacheFormat.DEFAULT_BLOCK_TOKENS;
      long blocks = (budget + bt - 1) / bt + 1;
      long perHead =
          blocks
              * (KvBlock.bytesFor(bt, d, KvFormats.Q8_0, KvFormats.Q8_0)
                  + KvBlock.maxBookkeepingBytes(bt));
      long bound = perHead * c.layerCount() * c.paged(0).kvHeads();
      int[] step = {0};
      run(
          c,
          () -> {
            for (int l = 0; l < c.layerCount(); l++) {
              for (int g = 0; g < c.paged(l).kvHeads(); g++) {
                assertThat(c.paged(l).size(g)).as("step %d", step[0]).isLessThanOrEqualTo(budget);
              }
            }
            assertThat(c.bytes()).as("step %d", step[0]).isLessThanOrEqualTo(bound);
            step[0]++;
          });
    }
  }

  @Test
  void badKnobsAreOneSentence() {
    for (String spec :
        List.of(
            "alisa:budget=1",
            "alisa:decay=0",
            "alisa:bits=4",
            "alisa:local=1.5",
            "alisa:recompute=-1")) {
      assertThatThrownBy(() -> KvSpec.parse(spec))
          .as(spec)
          .isInstanceOf(KvSpecException.class)
          .satisfies(e -> assertThat(e.getMessage()).doesNotContain("\n").contains("alisa"));
    }
  }
}
