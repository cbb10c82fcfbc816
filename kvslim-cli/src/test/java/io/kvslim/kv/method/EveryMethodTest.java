package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.KvBlock;
import io.kvslim.model.Model;
import io.kvslim.server.KvPlan;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The checks every registered method gets without being named here: drawn from {@link KvMethods},
 * so a new method is tested the moment it is registered. On a real (tiny) model: a budget covering
 * the sequence changes no logit, bytes are the blocks' bytes and go back to the pool, a bad value
 * of any knob is one error sentence, runs are deterministic, and the server's admission estimate
 * covers what the cache really held.
 */
class EveryMethodTest {
  static final int PROMPT = 64;
  static final int DECODE = 16;
  static Model model;
  static Engine engine;
  static int[] tokens;
  static Path profile; // a calibration profile of the model, for the methods that need one

  static Stream<KvMethod> methods() {
    return KvMethods.all().stream();
  }

  @BeforeAll
  static void load() {
    if (!SharedData.present()) {
      // the spec-only tests still parse the calibrated methods' specs: any valid profile will do
      java.nio.file.Path bundled = java.nio.file.Path.of("models/pycoder-6m-f16.gguf");
      try (Model m = Model.load(bundled)) {
        double[][] zero = new double[m.config().layers()][m.config().kvHeads()];
        profile = io.kvslim.calibrate.TestProfiles.synthetic(bundled, m.config(), zero, zero, zero);
      }
      return;
    }
    model = Model.load(SharedData.model("llama-spm-f32.gguf"));
    engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()));
    profile =
        io.kvslim.calibrate.TestProfiles.quick(engine, SharedData.model("llama-spm-f32.gguf"));
    SplittableRandom r = new SplittableRandom(11);
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

  /** Logits of the prefill and of every decode step. */
  static float[][] run(ManagedKvCache cache, Runnable afterEachStep) {
    int vocab = model.config().vocabSize();
    float[][] out = new float[DECODE + 1][vocab];
    engine.prefill(cache, tokens, 0, PROMPT, 0, false, out[0]);
    afterEachStep.run();
    for (int i = 0; i < DECODE; i++) {
      engine.decode(cache, tokens[PROMPT + i], PROMPT + i, out[i + 1]);
      afterEachStep.run();
    }
    return out;
  }

  static ManagedKvCache cache(String spec, BlockPool pool) {
    return KvSpecs.caches(KvSpec.parse(profiled(spec)), pool, model.config()).create();
  }

  /** {@code spec} with the model's calibration profile for the methods that need one. */
  static String profiled(String spec) {
    return profile == null ? spec : KvSpec.withProfile(spec, profile);
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("methods")
  void theMethodDescribesItself(KvMethod m) {
    assertThat(m.name()).matches("[a-z][a-z0-9_]*");
    assertThat(m.paper()).isNotBlank();
    assertThat(m.summary()).isNotBlank().doesNotContain("\n");
    for (Knob k : m.knobs()) {
      assertThat(k.description()).as("%s:%s", m.name(), k.name()).isNotBlank();
    }
    // the defaults parse, and the examples the generic tests use parse
    assertThat(KvSpec.parse(profiled(m.name())).rules()).hasSize(1);
    assertThat(
            KvSpec.parse(profiled(m.specCompressing(PROMPT)))
                .rules()
                .get(0)
                .calls()
                .get(0)
                .method())
        .isSameAs(m);
    if (m.family() == KvMethod.Family.EVICTION || m.family() == KvMethod.Family.BASELINE) {
      assertThat(m.specKeeping(PROMPT + DECODE))
          .as("a method that only drops tokens must say which spec keeps them all")
          .isNotNull();
    }
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("methods")
  void aBudgetCoveringTheSequenceChangesNothingBitForBit(KvMethod m) {
    SharedData.require();
    String spec = m.specKeeping(PROMPT + DECODE);
    org.junit.jupiter.api.Assumptions.assumeTrue(
        spec != null, m.name() + " changes logits at any budget");
    float[][] full;
    float[][] got;
    try (ManagedKvCache a = cache("full", new BlockPool());
        ManagedKvCache b = cache(spec, new BlockPool())) {
      full = run(a, () -> {});
      got = run(b, () -> {});
      for (int l = 0; l < a.layerCount(); l++) {
        for (int g = 0; g < a.paged(l).kvHeads(); g++) {
          assertThat(b.paged(l).positions(g)).isEqualTo(a.paged(l).positions(g));
        }
      }
    }
    for (int i = 0; i < full.length; i++) {
      assertThat(got[i]).as("step %d of %s", i, spec).containsExactly(full[i]);
    }
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("methods")
  void bytesAreTheBlocksAndReturnToThePool(KvMethod m) {
    SharedData.require();
    BlockPool pool = new BlockPool();
    long baseline = pool.usedBytes();
    String spec = m.specCompressing(PROMPT);
    try (ManagedKvCache c = cache(spec, pool)) {
      run(
          c,
          () -> {
            long tables = assertBytesAreTheBlocks(c, KvSpec.parse(profiled(spec)));
            assertThat(pool.usedBytes()).as(spec).isEqualTo(baseline + c.bytes() - tables);
          });
      assertThat(c.bytes()).isPositive();
    }
    assertThat(pool.usedBytes()).as("after close: %s", spec).isEqualTo(baseline);
  }

  /**
   * A cache's bytes are its blocks' bytes plus, once per layer, exactly the format tables its
   * methods declare ({@link KvMethod#tableBytes}); returns those tables' bytes.
   */
  static long assertBytesAreTheBlocks(ManagedKvCache c, KvSpec spec) {
    long total = 0;
    long tables = 0;
    for (int l = 0; l < c.layerCount(); l++) {
      PagedLayerKv layer = c.paged(l);
      for (int g = 0; g < layer.kvHeads(); g++) {
        long sum = 0;
        for (KvBlock b : layer.head(g).blocks()) {
          sum += b.bytes();
        }
        sum += layer.head(g).compensationBytes(); // RazorAttention's weighted entry
        sum += layer.head(g).weightBytes(); // merged entries' weights (EMS)
        assertThat(layer.bytes(g)).isEqualTo(sum);
        total += sum;
      }
      long declared = 0;
      for (MethodCall call : spec.callsFor(l)) {
        declared +=
            call.method().tableBytes(call, model.config().kvHeads(), model.config().headDim());
      }
      assertThat(layer.tableBytes())
          .as("tables of layer %d of %s", l, spec.text())
          .isEqualTo(declared);
      assertThat(layer.bytes()).isEqualTo(layer.store().bytes() + declared);
      tables += declared;
    }
    assertThat(c.bytes()).isEqualTo(total + tables);
    return tables;
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("methods")
  void aCompressingRunIsDeterministic(KvMethod m) {
    SharedData.require();
    String spec = m.specCompressing(PROMPT);
    List<int[]> positions = new ArrayList<>();
    float[][] first;
    float[][] second;
    long bytes;
    try (ManagedKvCache a = cache(spec, new BlockPool())) {
      first = run(a, () -> {});
      bytes = a.bytes();
      for (int l = 0; l < a.layerCount(); l++) {
        for (int g = 0; g < a.paged(l).kvHeads(); g++) {
          positions.add(a.paged(l).positions(g));
        }
      }
    }
    try (ManagedKvCache b = cache(spec, new BlockPool())) {
      second = run(b, () -> {});
      assertThat(b.bytes()).isEqualTo(bytes);
      int i = 0;
      for (int l = 0; l < b.layerCount(); l++) {
        for (int g = 0; g < b.paged(l).kvHeads(); g++) {
          assertThat(b.paged(l).positions(g)).isEqualTo(positions.get(i++));
        }
      }
    }
    for (int i = 0; i < first.length; i++) {
      assertThat(second[i]).as("step %d of %s", i, spec).containsExactly(first[i]);
    }
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("methods")
  void theAdmissionEstimateCoversWhatTheCacheHeld(KvMethod m) {
    SharedData.require();
    for (String spec : specsOf(m)) {
      long estimate =
          KvPlan.resolve(profiled(spec), new BlockPool(), model.config())
              .estimateBytes(PROMPT, DECODE);
      BlockPool pool = new BlockPool();
      try (ManagedKvCache c = cache(spec, pool)) {
        run(c, () -> {});
      }
      assertThat(estimate)
          .as("estimate vs peak of %s", spec)
          .isGreaterThanOrEqualTo(pool.peakBytes());
    }
  }

  private static List<String> specsOf(KvMethod m) {
    List<String> specs = new ArrayList<>();
    specs.add(m.name());
    specs.add(m.specCompressing(PROMPT));
    if (m.specKeeping(PROMPT + DECODE) != null) {
      specs.add(m.specKeeping(PROMPT + DECODE));
    }
    return specs;
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("methods")
  void aBadValueOfAnyKnobIsOneErrorSentence(KvMethod m) {
    for (Knob k : m.knobs()) {
      for (String bad : badValues(k)) {
        String spec = m.name() + ":" + k.name() + "=" + bad;
        assertThatThrownBy(() -> KvSpec.parse(spec))
            .as(spec)
            .isInstanceOf(KvSpecException.class)
            .satisfies(
                e -> {
                  assertThat(e.getMessage()).doesNotContain("\n").contains(m.name());
                  assertThat(e.getMessage()).contains(k.name());
                });
      }
    }
    assertThatThrownBy(() -> KvSpec.parse(m.name() + ":nosuchknob=1"))
        .isInstanceOf(KvSpecException.class)
        .hasMessageContaining("unknown key 'nosuchknob'")
        .hasMessageContaining(MethodCall.acceptedKeys(m));
  }

  static List<String> badValues(Knob k) {
    List<String> out = new ArrayList<>();
    switch (k.type()) {
      case INT -> {
        out.add("x");
        out.add("1.5");
        if (k.min() != null) {
          out.add(Long.toString((long) Math.ceil(k.min()) - 1));
        }
        if (k.max() != null) {
          out.add(Long.toString((long) Math.floor(k.max()) + 1));
        }
      }
      case FLOAT -> {
        out.add("x");
        out.add("NaN");
        if (k.min() != null) {
          out.add(Double.toString(k.min() - 0.5));
        }
        if (k.max() != null) {
          out.add(Double.toString(k.max() + 0.5));
        }
      }
      case BUDGET -> {
        out.add("0");
        out.add("-3");
        out.add("150%");
        out.add("lots");
      }
      case CHOICE -> out.add("nosuchchoice");
      case BOOL -> out.add("maybe");
    }
    return out;
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("methods")
  void theFullBenchmarkSuiteRunsTheMethod(KvMethod m) {
    List<String> suite = io.kvslim.bench.BenchConfig.suite("full").specs;
    assertThat(suite).containsAll(m.benchmarkSpecs());
    if (m.family() != KvMethod.Family.BASELINE && !m.name().equals("f32")) {
      assertThat(m.benchmarkSpecs()).as("%s in the full report", m.name()).isNotEmpty();
    }
    for (String spec : m.benchmarkSpecs()) {
      assertThat(KvSpec.parse(profiled(spec)).rules().get(0).calls().get(0).method()).isSameAs(m);
    }
  }

  @Test
  void theReadmeMethodTableListsEveryRegisteredMethod() throws Exception {
    Path readme = Path.of("README.md");
    assertThat(readme).exists();
    String text = Files.readString(readme);
    int start = text.indexOf("| method | family |");
    assertThat(start).as("the README's method table").isNotNegative();
    int end = text.indexOf("\n\n", start);
    String table = text.substring(start, end < 0 ? text.length() : end);
    for (KvMethod m : KvMethods.all()) {
      assertThat(table.contains("`" + m.name() + "`") || table.contains("`" + m.name() + ":"))
          .as("README method table row for '%s'", m.name())
          .isTrue();
    }
  }
}
