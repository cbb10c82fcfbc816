package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.SharedData;
import io.kvslim.calibrate.CalibrationProfile;
import io.kvslim.calibrate.TestProfiles;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.policy.AutoPolicy;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvBlock;
import io.kvslim.model.Model;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.function.IntConsumer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * {@code auto}, the adaptive controller, on the bundled trained model with a synthetic profile of
 * its shape: the byte budget holds after every step of a 600-step generation while heads end at
 * different token counts and formats, the plan is a function of the profile, a budget above the
 * full cache is the full cache bit for bit, and impossible budgets and foreign profiles are refused
 * in one sentence.
 */
class AutoMethodTest {
  static final int PROMPT = 200;
  static final int DECODE = 600;
  static Model model;
  static Engine engine;
  static int[] tokens;
  static Path profile;

  @BeforeAll
  static void load() {
    if (!SharedData.present()) {
      return;
    }
    Path file = SharedData.model("pycoder-6m-f16.gguf");
    model = Model.load(file);
    engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()));
    int heads = model.config().kvHeads();
    double[][] zero = new double[model.config().layers()][heads];
    profile = TestProfiles.synthetic(file, model.config(), zero, zero, zero);
    SplittableRandom r = new SplittableRandom(7);
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

  /** Logits of the prefill and of each of {@code decode} steps; {@code afterStep} gets n seen. */
  static float[][] run(ManagedKvCache cache, int decode, IntConsumer afterStep) {
    int vocab = model.config().vocabSize();
    float[][] out = new float[decode + 1][vocab];
    engine.prefill(cache, tokens, 0, PROMPT, 0, false, out[0]);
    afterStep.accept(PROMPT);
    for (int i = 0; i < decode; i++) {
      engine.decode(cache, tokens[PROMPT + i], PROMPT + i, out[i + 1]);
      afterStep.accept(PROMPT + i + 1);
    }
    return out;
  }

  @Test
  void aByteBudgetHoldsAfterEveryStepOf600AndHeadsDiffer() {
    SharedData.require();
    long budget = 160 * 1024;
    try (ManagedKvCache c = cache("auto:bytes=160KiB")) {
      run(
          c,
          DECODE,
          n -> assertThat(c.bytes()).as("bytes after %d tokens", n).isLessThanOrEqualTo(budget));
      Set<Integer> sizes = new HashSet<>();
      Set<String> formats = new HashSet<>();
      for (int l = 0; l < model.config().layers(); l++) {
        for (int g = 0; g < model.config().kvHeads(); g++) {
          sizes.add(c.paged(l).size(g));
          for (KvBlock b : c.paged(l).head(g).blocks()) {
            formats.add(b.keyFormat().name());
          }
          assertThat(c.paged(l).size(g)).isGreaterThanOrEqualTo(32); // the window stays
        }
      }
      assertThat(sizes).as("tokens per head").hasSizeGreaterThan(1);
      assertThat(formats).as("formats held").hasSizeGreaterThan(1);
      assertThat(c.tokens()).isEqualTo(PROMPT + DECODE);
    }
  }

  @Test
  void aRatioBudgetHoldsAfterEveryStep() {
    SharedData.require();
    long f16PerToken =
        (long) model.config().layers() * model.config().kvHeads() * model.config().headDim() * 4;
    // a 32-token window: the default 80 would not fit 0.15 of a 200-token prompt at all
    try (ManagedKvCache c = cache("auto:ratio=0.15,window=32")) {
      run(
          c,
          DECODE,
          n ->
              assertThat(c.bytes())
                  .as("bytes after %d tokens", n)
                  .isLessThanOrEqualTo((long) Math.floor(0.15 * f16PerToken * n)));
    }
  }

  @Test
  void thePlanIsAFunctionOfTheProfile() {
    SharedData.require();
    int[][] levelsA;
    float[][] a;
    float[][] b;
    long bytesA;
    try (ManagedKvCache c = cache("auto:ratio=0.2")) {
      a = run(c, 100, n -> {});
      bytesA = c.bytes();
      levelsA = sizes(c);
    }
    try (ManagedKvCache c = cache("auto:ratio=0.2")) {
      b = run(c, 100, n -> {});
      assertThat(c.bytes()).isEqualTo(bytesA);
      assertThat(sizes(c)).isDeepEqualTo(levelsA);
    }
    for (int i = 0; i < a.length; i++) {
      assertThat(b[i]).as("step %d", i).containsExactly(a[i]);
    }
  }

  static int[][] sizes(ManagedKvCache c) {
    int[][] out = new int[model.config().layers()][model.config().kvHeads()];
    for (int l = 0; l < out.length; l++) {
      for (int g = 0; g < out[l].length; g++) {
        out[l][g] = c.paged(l).size(g) * 16 + level(c.paged(l).head(g).blocks().get(0));
      }
    }
    return out;
  }

  @Test
  void mergedEntriesCountEveryTokenTheyStandForAndDroppingKeepsNone() {
    SharedData.require();
    int decode = 200;
    int seen = PROMPT + decode;
    Set<String> values = new HashSet<>();
    boolean anyMerged = false;
    try (ManagedKvCache c = cache("auto:ratio=0.2")) {
      run(c, decode, n -> {});
      for (int l = 0; l < model.config().layers(); l++) {
        for (int g = 0; g < model.config().kvHeads(); g++) {
          HeadStore h = c.paged(l).head(g);
          double sum = 0;
          for (int i = 0; i < h.size(); i++) {
            sum += h.weights().weight(i);
          }
          assertThat(sum).as("weights of layer %d head %d", l, g).isEqualTo(seen);
          anyMerged |= h.size() < seen;
          h.blocks().forEach(b -> values.add(b.valueFormat().name()));
        }
      }
    }
    assertThat(anyMerged).as("some head holds fewer entries than tokens").isTrue();
    assertThat(values).as("value formats held").anyMatch(v -> v.startsWith("kivi_v"));
    try (ManagedKvCache c = cache("auto:ratio=0.2,merge=false")) {
      run(c, decode, n -> {});
      for (int l = 0; l < model.config().layers(); l++) {
        for (int g = 0; g < model.config().kvHeads(); g++) {
          assertThat(c.paged(l).head(g).weights().any()).isFalse();
        }
      }
    }
  }

  static int level(KvBlock b) {
    for (int i = 0; i < AutoPolicy.LEVELS.size(); i++) {
      AutoPolicy.Level v = AutoPolicy.LEVELS.get(i);
      if (v.keys().equals(b.keyFormat()) && v.values().equals(b.valueFormat())) {
        return i;
      }
    }
    return -1;
  }

  @Test
  void aBudgetAboveTheFullCacheIsTheFullCacheBitForBit() {
    SharedData.require();
    float[][] full;
    float[][] got;
    try (ManagedKvCache a = KvSpecs.caches(KvSpec.FULL, new BlockPool(), model.config()).create();
        ManagedKvCache b = cache("auto:bytes=1GiB")) {
      full = run(a, 50, n -> {});
      got = run(b, 50, n -> {});
      for (int l = 0; l < model.config().layers(); l++) {
        for (int g = 0; g < model.config().kvHeads(); g++) {
          assertThat(b.paged(l).size(g)).isEqualTo(PROMPT + 50);
        }
      }
    }
    for (int i = 0; i < full.length; i++) {
      assertThat(got[i]).as("step %d", i).containsExactly(full[i]);
    }
  }

  @Test
  void anImpossibleBudgetIsOneSentence() {
    SharedData.require();
    assertThatThrownBy(() -> cache("auto:bytes=4KiB"))
        .isInstanceOf(KvSpecException.class)
        .hasMessageStartingWith("auto:bytes=4096B is below the")
        .hasMessageNotContaining("\n");
    // a share below what the windows take in the lowest level: the smallest plan, every head at
    // its window (80 tokens by default)
    try (ManagedKvCache c = cache("auto:ratio=0.01")) {
      run(c, 0, n -> {});
      for (int l = 0; l < model.config().layers(); l++) {
        for (int g = 0; g < model.config().kvHeads(); g++) {
          assertThat(c.paged(l).size(g)).isEqualTo(80);
          assertThat(level(c.paged(l).head(g).blocks().get(0)))
              .isEqualTo(AutoPolicy.LEVELS.size() - 1);
        }
      }
    }
    assertThatThrownBy(() -> KvSpec.parse("auto:bytes=25%@profile=" + profile))
        .isInstanceOf(KvSpecException.class)
        .hasMessageContaining("takes a byte count");
    assertThatThrownBy(() -> KvSpec.parse("auto:ratio=0.2"))
        .isInstanceOf(KvSpecException.class)
        .hasMessageContaining("needs a calibration profile");
  }

  @Test
  void aForeignProfileOrOneWithoutTheAutoSectionIsRefused() throws Exception {
    SharedData.require();
    Path other = SharedData.model("llama-spm-f32.gguf");
    try (Model m = Model.load(other)) {
      double[][] zero = new double[m.config().layers()][m.config().kvHeads()];
      Path foreign = TestProfiles.synthetic(other, m.config(), zero, zero, zero);
      assertThatThrownBy(
              () ->
                  KvSpecs.caches(
                      KvSpec.parse("auto:ratio=0.2@profile=" + foreign),
                      new BlockPool(),
                      model.config()))
          .isInstanceOf(KvSpecException.class)
          .hasMessageNotContaining("\n");
    }
    Path bare = Files.createTempFile("kvslim-no-auto", ".json");
    bare.toFile().deleteOnExit();
    CalibrationProfile.read(profile).write(bare); // the profile without the auto section
    assertThatThrownBy(
            () ->
                KvSpecs.caches(
                    KvSpec.parse("auto:ratio=0.2@profile=" + bare),
                    new BlockPool(),
                    model.config()))
        .isInstanceOf(KvSpecException.class)
        .hasMessageContaining("has no 'auto' section");
  }
}
