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
        "snapkv:bugdet=5|unknown key 'bugdet' for method 'snapkv' (accepted: budget, window, kernel, pool)",
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
}
