package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.SharedData;
import io.kvslim.calibrate.TestProfiles;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.model.Model;
import io.kvslim.model.ModelConfig;
import java.nio.file.Path;
import java.util.SplittableRandom;
import java.util.function.IntConsumer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * {@code duo} (DuoAttention) and {@code razor} (RazorAttention) on a real tiny model with profiles
 * that fix which heads are retrieval heads: the no-op settings equal the full cache bit for bit,
 * streaming heads hold min(n, S+W) at every step, compressed heads keep sinks + buffer + one
 * compensation entry holding the fp mean of what they dropped.
 */
class HeadStructureMethodsTest {
  static final int PROMPT = 150;
  static final int DECODE = 24;
  static Model model;
  static Engine engine;
  static int[] tokens;
  static Path profile;
  // 4 layers × 2 KV heads: duo scores (low = streaming) and razor's induction and echo scores
  static final double[][] DUO = {{0.9, 0.1}, {0.2, 0.8}, {0.05, 0.6}, {0.3, 0.4}};
  static final double[][] INDUCTION = {{0.1, 0.7}, {0.2, 0.3}, {0.05, 0.6}, {0.01, 0.02}};
  static final double[][] ECHO = {{0.0, 0.0}, {0.0, 0.0}, {0.0, 0.0}, {0.9, 0.0}};

  @BeforeAll
  static void load() {
    if (!SharedData.present()) {
      return;
    }
    Path file = SharedData.model("llama-spm-f32.gguf");
    model = Model.load(file);
    engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()));
    profile = TestProfiles.synthetic(file, model.config(), DUO, INDUCTION, ECHO);
    SplittableRandom r = new SplittableRandom(3);
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
    return KvSpecs.caches(
            KvSpec.parse(spec + "@profile=" + profile), new BlockPool(), model.config())
        .create();
  }

  /** Logits of the prefill and each decode step; {@code afterStep} gets the tokens seen. */
  static float[][] run(ManagedKvCache cache, IntConsumer afterStep) {
    int vocab = model.config().vocabSize();
    float[][] out = new float[DECODE + 1][vocab];
    engine.prefill(cache, tokens, 0, PROMPT, 0, false, out[0]);
    afterStep.accept(PROMPT);
    for (int i = 0; i < DECODE; i++) {
      engine.decode(cache, tokens[PROMPT + i], PROMPT + i, out[i + 1]);
      afterStep.accept(PROMPT + i + 1);
    }
    return out;
  }

  static void assertSameAsFull(String spec) {
    float[][] full;
    float[][] got;
    try (ManagedKvCache a = KvSpecs.caches(KvSpec.FULL, new BlockPool(), model.config()).create();
        ManagedKvCache b = cache(spec)) {
      full = run(a, n -> {});
      got = run(b, n -> {});
      assertThat(b.bytes()).isEqualTo(a.bytes());
    }
    for (int i = 0; i < full.length; i++) {
      assertThat(got[i]).as("step %d of %s", i, spec).containsExactly(full[i]);
    }
  }

  @Test
  void duoWithEveryHeadRetrievalEqualsTheFullCacheBitForBit() {
    SharedData.require();
    assertSameAsFull("duo:ratio=0");
    assertSameAsFull("duo:threshold=0"); // no score below 0
  }

  @Test
  void razorWithEveryHeadRetrievalEqualsTheFullCacheBitForBit() {
    SharedData.require();
    assertSameAsFull("razor:induction=1");
    assertSameAsFull("razor:induction=0,echo=1");
  }

  @Test
  void duoStreamingHeadsHoldMinNSinksPlusRecentAtEveryStep() {
    SharedData.require();
    int sinks = 4;
    int recent = 12;
    // ratio 0.5 of 8 heads: the 4 lowest scores stream (0.05, 0.1, 0.2, 0.3)
    boolean[][] streaming = {{false, true}, {true, false}, {true, false}, {true, false}};
    try (ManagedKvCache c = cache("duo:ratio=0.5,sinks=4,recent=12")) {
      run(
          c,
          n -> {
            long retained = 0;
            for (int l = 0; l < 4; l++) {
              PagedLayerKv layer = c.paged(l);
              for (int g = 0; g < 2; g++) {
                int expected = streaming[l][g] ? Math.min(n, sinks + recent) : n;
                assertThat(layer.size(g)).as("layer %d head %d at %d", l, g, n).isEqualTo(expected);
                retained += layer.size(g);
                if (streaming[l][g]) {
                  int[] p = layer.positions(g);
                  assertThat(p[sinks - 1]).isEqualTo(sinks - 1);
                  assertThat(p[sinks]).isEqualTo(n - recent);
                  assertThat(p[p.length - 1]).isEqualTo(n - 1);
                }
              }
            }
            // the real compression: streaming fraction × (1 − (S+W)/n) of the tokens
            double dropped = 0.5 * (1 - (double) (sinks + recent) / n);
            assertThat(retained).isEqualTo(Math.round(8L * n * (1 - dropped)));
          });
    }
  }

  @Test
  void duoThresholdAndRatioPickTheLowestScores() {
    boolean[] all = {true, true, true, true};
    boolean[][] t = DuoMethod.streamingHeads(DUO, all, 0, 0.25);
    assertThat(t)
        .isDeepEqualTo(
            new boolean[][] {{false, true}, {true, false}, {true, false}, {false, false}});
    // round half to even as kvpress's Python round: 8 × 0.3125 = 2.5 → 2
    boolean[][] r = DuoMethod.streamingHeads(DUO, all, 0.3125, null);
    assertThat(r)
        .isDeepEqualTo(
            new boolean[][] {{false, true}, {false, false}, {true, false}, {false, false}});
    // only the covered layers are ranked
    boolean[][] scoped =
        DuoMethod.streamingHeads(DUO, new boolean[] {true, false, false, false}, 0.5, null);
    assertThat(scoped)
        .isDeepEqualTo(
            new boolean[][] {{false, true}, {false, false}, {false, false}, {false, false}});
  }

  @Test
  void razorRetrievalHeadsAreTheTopInductionAndEchoHeads() {
    boolean[] all = {true, true, true, true};
    // 25% of 8 = 2 by induction (0.7, 0.6), 12.5% = 1 by echo (0.9)
    boolean[][] r = RazorMethod.retrievalHeads(INDUCTION, ECHO, all, 0.25, 0.125);
    assertThat(r)
        .isDeepEqualTo(
            new boolean[][] {{false, true}, {false, false}, {false, true}, {true, false}});
  }

  @Test
  void razorKeepsSinksBufferAndOneCompensationEntryOfTheFpMeanOfTheDropped() {
    SharedData.require();
    int sinks = 4;
    // retrieval: the two best induction heads (layer 0 head 1, layer 2 head 1); no echo heads
    boolean[][] retrieval = {{false, true}, {false, false}, {false, true}, {false, false}};
    int buffer = Math.max(8, (int) Math.ceil(PROMPT / 10.0)); // L = max(S0, ⌈N/C⌉) = 15
    try (ManagedKvCache full =
            KvSpecs.caches(KvSpec.FULL, new BlockPool(), model.config()).create();
        ManagedKvCache c = cache("razor:induction=0.25,echo=0,sinks=4,buffer=8,compression=10")) {
      engine.prefill(full, tokens, 0, PROMPT, 0, false, new float[model.config().vocabSize()]);
      run(
          c,
          n -> {
            for (int l = 0; l < 4; l++) {
              for (int g = 0; g < 2; g++) {
                HeadStore head = c.paged(l).head(g);
                if (retrieval[l][g]) {
                  assertThat(head.size()).isEqualTo(n);
                  assertThat(head.hasCompensation()).isFalse();
                  continue;
                }
                assertThat(head.size()).as("kept at %d", n).isEqualTo(sinks + buffer);
                assertThat(head.compensation().weight() + head.size()).isEqualTo(n);
                int[] p = c.paged(l).positions(g);
                assertThat(p[sinks]).isEqualTo(n - buffer);
                if (n == PROMPT) {
                  assertMeanOfDropped(full.paged(l).head(g), head, sinks, PROMPT - buffer);
                }
              }
            }
          });
    }
  }

  /** The entry is {@code (float) mean} of the full cache's keys and values {@code [from, to)}. */
  static void assertMeanOfDropped(HeadStore full, HeadStore head, int from, int to) {
    int d = full.headDim();
    double[] k = new double[d];
    double[] v = new double[d];
    float[] row = new float[d];
    for (int t = from; t < to; t++) {
      full.readKey(t, row);
      for (int j = 0; j < d; j++) {
        k[j] += row[j];
      }
      full.readValue(t, row);
      for (int j = 0; j < d; j++) {
        v[j] += row[j];
      }
    }
    assertThat(head.compensation().weight()).isEqualTo(to - from);
    for (int j = 0; j < d; j++) {
      assertThat(head.compensation().key()[j]).isEqualTo((float) (k[j] / (to - from)));
      assertThat(head.compensation().value()[j]).isEqualTo((float) (v[j] / (to - from)));
    }
  }

  @Test
  void aMethodWithoutAProfileFailsNamingTheCommandThatMakesOne() {
    for (String spec :
        new String[] {"razor", "duo:ratio=0.25", "snapkv:budget=64 ; duo@layers=1-2"}) {
      assertThatThrownBy(() -> KvSpec.parse(spec))
          .isInstanceOf(KvSpecException.class)
          .hasMessageContaining("needs a calibration profile")
          .hasMessageContaining("kvslim calibrate -f TEXT --out profile.json")
          .satisfies(e -> assertThat(e.getMessage()).doesNotContain("\n"));
    }
  }

  @Test
  void aProfileOfAnotherModelIsRefusedInOneSentence() {
    SharedData.require();
    String spec = "duo@profile=" + profile;
    // the same shape, another file (q8_0 weights)
    try (Model other = Model.load(SharedData.model("llama-spm-q8_0.gguf"))) {
      assertThatThrownBy(() -> KvSpecs.caches(KvSpec.parse(spec), new BlockPool(), other.config()))
          .isInstanceOf(KvSpecException.class)
          .hasMessageContaining("was measured on llama-spm-f32.gguf (sha256 ")
          .hasMessageContaining("but this model is llama-spm-q8_0.gguf")
          .hasMessageContaining("kvslim calibrate -m ")
          .satisfies(e -> assertThat(e.getMessage()).doesNotContain("\n"));
    }
    // another shape
    try (Model other = Model.load(SharedData.model("pycoder-6m-f16.gguf"))) {
      ModelConfig oc = other.config();
      assertThatThrownBy(() -> KvSpecs.caches(KvSpec.parse(spec), new BlockPool(), oc))
          .isInstanceOf(KvSpecException.class)
          .hasMessageContaining("(4 layers, 4 heads, 2 KV heads of 32)")
          .hasMessageContaining(
              "but this model is pycoder-6m-f16.gguf (6 layers, 4 heads, 2 KV heads of 64)");
    }
  }
}
