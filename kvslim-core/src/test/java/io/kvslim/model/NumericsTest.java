package io.kvslim.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.kv.AttentionOrder;
import org.junit.jupiter.api.Test;

class NumericsTest {
  @Test
  void namesParseToTheirNumerics() {
    assertThat(Numerics.names()).containsExactly("default", "llamacpp");
    assertThat(Numerics.parse("default")).isSameAs(Numerics.DEFAULT);
    assertThat(Numerics.parse("llamacpp")).isSameAs(Numerics.LLAMA_CPP);
    assertThat(Numerics.parse("LlamaCpp")).isSameAs(Numerics.LLAMA_CPP);
    assertThat(Numerics.DEFAULT.attentionOrder()).isEqualTo(AttentionOrder.OWN);
    assertThat(Numerics.LLAMA_CPP.attentionOrder()).isEqualTo(AttentionOrder.LLAMA_CPP);
  }

  @Test
  void anUnknownNameSaysWhichAreKnown() {
    assertThatThrownBy(() -> Numerics.parse("llama"))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessage("unknown --numerics 'llama' (expected one of: default, llamacpp)");
  }
}
