package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class KvSpecTest {
  @Test
  void parsesComposedMethodsWithDefaults() {
    KvSpec s =
        KvSpec.parse("snapkv:budget=512,window=32 + kivi:kbits=2,vbits=4,group=32,residual=128");
    assertThat(s.rules()).hasSize(1);
    var calls = s.callsFor(0);
    assertThat(calls).extracting(MethodCall::name).containsExactly("snapkv", "kivi");
    assertThat(calls.get(0).budget("budget")).isEqualTo(new Budget(Budget.Kind.TOKENS, 512));
    assertThat(calls.get(0).integer("kernel")).isEqualTo(5);
    assertThat(calls.get(1).string("vbits")).isEqualTo("4");
  }

  @Test
  void layerScopedRulesOverrideEarlierOnes() {
    KvSpec s = KvSpec.parse("pyramidkv:budget=256 ; streaming:sinks=4,window=1024@layers=8-15");
    assertThat(s.callsFor(3)).extracting(MethodCall::name).containsExactly("pyramidkv");
    assertThat(s.callsFor(8)).extracting(MethodCall::name).containsExactly("streaming");
    assertThat(s.callsFor(15)).extracting(MethodCall::name).containsExactly("streaming");
    assertThatThrownBy(() -> s.checkLayers(12)).hasMessageContaining("has 12 layers");
  }

  @ParameterizedTest
  @CsvSource(
      delimiter = '|',
      value = {
        "512|TOKENS|512",
        "25%|RATIO|0.25",
        "0.125|RATIO|0.125",
        "64MiB|BYTES|67108864",
        "1.5KB|BYTES|1500"
      })
  void budgetsInTokensRatiosOrBytes(String text, Budget.Kind kind, double value) {
    assertThat(Budget.parse(text)).isEqualTo(new Budget(kind, value));
  }

  @ParameterizedTest
  @CsvSource(
      delimiter = '|',
      value = {
        "foo|unknown KV method 'foo' (known: full, streaming",
        "snapkv:bugdet=5|unknown key 'bugdet' for method 'snapkv' (accepted: budget, window, kernel, pool, chunk)",
        "h2o:budget=-5|a token budget must be at least 1",
        "streaming:sinks=4,budget=3|must exceed the sink count (4)",
        "kivi:kbits=3|expected one of 2, 4, 8",
        "kivi:residual=100|must be a multiple of group=32",
        "snapkv:budget=16,window=32|must exceed the window",
        "snapkv:budget|bad parameter 'budget'",
        "'  '|empty KV spec",
        "full @rows=1|bad scope",
        "full + |empty method",
        "h2o:budget=1.5|a ratio budget must be in (0, 1]",
        "h2o:budget=lots|is not a budget"
      })
  void badSpecsFailWithOneSentenceNamingThePart(String spec, String message) {
    assertThatThrownBy(() -> KvSpec.parse(spec))
        .isInstanceOf(KvSpecException.class)
        .hasMessageContaining(message);
  }

  /** A profile of a made-up one-layer model (parsing reads it; the model is checked later). */
  static java.nio.file.Path fakeProfile(java.nio.file.Path dir) {
    var mass =
        new io.kvslim.calibrate.AttentionProfile.Head[][] {
          {new io.kvslim.calibrate.AttentionProfile.Head(0, 0, 0, 1, 0, 1)}
        };
    var p =
        new io.kvslim.calibrate.CalibrationProfile(
            new io.kvslim.calibrate.CalibrationProfile.ModelInfo("fake.gguf", "00", 1, 1, 1, 8),
            new io.kvslim.calibrate.CalibrationProfile.Settings("t", "0", 2, 1, 0, 1, 1, 500),
            new double[][] {{0.1}},
            new double[][] {{0.2}},
            new double[][] {{0.1}},
            new double[][] {{0.2}},
            new double[][] {{0.5}},
            new io.kvslim.calibrate.CalibrationProfile.AttentionMass(2, 1, 1, 4, 16, 64, mass),
            null,
            null,
            null,
            null,
            null,
            null);
    java.nio.file.Path file = dir.resolve("p.json");
    p.write(file);
    return file;
  }

  @org.junit.jupiter.api.Test
  void aProfileOptionGivesTheRulesCalibratedMethodsTheirProfile(
      @org.junit.jupiter.api.io.TempDir java.nio.file.Path dir) {
    java.nio.file.Path file = fakeProfile(dir);
    for (String spec :
        new String[] {
          "duo:ratio=0.25@profile=" + file + "@layers=1-2",
          "duo:ratio=0.25 @layers=1-2 @profile=" + file
        }) {
      KvSpec s = KvSpec.parse(spec);
      KvSpec.Rule r = s.rules().get(0);
      assertThat(r.firstLayer()).isEqualTo(1);
      assertThat(r.lastLayer()).isEqualTo(2);
      assertThat(r.calls().get(0).profile().source()).isEqualTo(file);
      assertThat(r.calls().get(0).profile().model().file()).isEqualTo("fake.gguf");
    }
    // a rule's profile goes to its calibrated methods only
    KvSpec mixed = KvSpec.parse("razor + q8_0@profile=" + file + " ; snapkv:budget=64@layers=0-0");
    assertThat(mixed.rules().get(0).calls().get(0).profile()).isNotNull();
    assertThat(mixed.rules().get(0).calls().get(1).profile()).isNull();
    // the benchmark suites add one where it is missing
    assertThat(KvSpec.withProfile("duo:ratio=0.5 ; snapkv:budget=64@layers=0-0", file))
        .isEqualTo("duo:ratio=0.5 @profile=" + file + "; snapkv:budget=64@layers=0-0");
    assertThat(KvSpec.lacksProfile("razor + q8_0")).isTrue();
    assertThat(KvSpec.lacksProfile("razor@profile=" + file)).isFalse();
    assertThat(KvSpec.lacksProfile("snapkv:budget=64")).isFalse();
  }

  @org.junit.jupiter.api.Test
  void badProfileOptionsAreOneSentence(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir) {
    java.nio.file.Path file = fakeProfile(dir);
    String[][] cases = {
      {"snapkv:budget=64@profile=" + file, "is given to no method that uses a calibration profile"},
      {"duo@profile=" + dir.resolve("none.json"), "does not exist"},
      {"duo@profile=", "empty @profile="},
      {"duo@profile=" + file + "@profile=" + file, "@profile given twice"},
      {"duo@layers=0-1@layers=2-3@profile=" + file, "@layers given twice"},
      {
        "full@colour=red",
        "bad scope '@colour=red' in KV spec 'full@colour=red' (accepted: @layers=A-B, @profile=FILE)"
      },
      {"razor", "razor needs a calibration profile: make one with 'kvslim calibrate"},
      {"cq:c=4", "or pass '--calib TEXT' to calibrate on that text on the fly"}
    };
    for (String[] c : cases) {
      assertThatThrownBy(() -> KvSpec.parse(c[0]))
          .as(c[0])
          .isInstanceOf(KvSpecException.class)
          .hasMessageContaining(c[1])
          .satisfies(e -> assertThat(e.getMessage()).doesNotContain("\n"));
    }
  }
}
