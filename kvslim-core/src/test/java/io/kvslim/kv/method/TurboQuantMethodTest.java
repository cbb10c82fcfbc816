package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.format.Fp8E4m3Format;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.format.TurboQuantKeyFormat;
import io.kvslim.kv.format.TurboQuantProdKeyFormat;
import io.kvslim.kv.format.TurboQuantValueFormat;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.model.Model;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

class TurboQuantMethodTest {
  static MethodCall call(String spec) {
    return KvSpec.parse(spec).rules().get(0).calls().get(0);
  }

  @Test
  void presetsAndExplicitKeysGiveTheirFormats() {
    KvCacheFormat f =
        call("turboquant:preset=k3v4_nc").method().format(call("turboquant:preset=k3v4_nc"));
    assertThat(f.keys()).isEqualTo(new TurboQuantKeyFormat(3, true));
    assertThat(f.values()).isEqualTo(new TurboQuantValueFormat(4));
    MethodCall c = call("turboquant:preset=3bit");
    assertThat(c.method().format(c).keys()).isEqualTo(new TurboQuantKeyFormat(3, false));
    assertThat(c.method().format(c).values()).isEqualTo(new TurboQuantValueFormat(3));
    c = call("turboquant:kbits=2,vbits=3,nc=false");
    assertThat(c.method().format(c).keys()).isEqualTo(new TurboQuantKeyFormat(2, false));
    assertThat(c.method().format(c).values()).isEqualTo(new TurboQuantValueFormat(3));
    c = call("turboquant:preset=k8v4");
    assertThat(c.method().format(c).keys()).isEqualTo(new Fp8E4m3Format());
    assertThat(c.method().format(c).values()).isEqualTo(new TurboQuantValueFormat(4));
    c = call("turboquant:preset=3bit,qjl=true");
    assertThat(c.method().format(c).keys()).isEqualTo(new TurboQuantProdKeyFormat(3, 42));
    c = call("turboquant:kbits=2,qjl=true");
    assertThat(c.method().format(c).keys()).isEqualTo(new TurboQuantProdKeyFormat(2, 42));
    c = call("turboquant"); // 4bit_nc
    assertThat(c.method().format(c).keys()).isEqualTo(new TurboQuantKeyFormat(4, true));
    assertThat(c.method().format(c).values()).isEqualTo(new TurboQuantValueFormat(4));
  }

  @Test
  void theFirstAndLastLayersStayUnquantizedAsVllmSkipsThem() {
    MethodCall c = call("turboquant:preset=4bit_nc");
    for (int l = 0; l < 6; l++) {
      KvCacheFormat f = c.method().format(c, l, 6);
      boolean skipped = l < 2 || l >= 4;
      assertThat(f.keys())
          .as("layer %d", l)
          .isEqualTo(skipped ? KvFormats.F16 : new TurboQuantKeyFormat(4, true));
    }
    // at most half the layers: with 3 layers n = 1, layer 1 is quantized
    assertThat(c.method().format(c, 1, 3).keys()).isInstanceOf(TurboQuantKeyFormat.class);
    assertThat(c.method().format(c, 0, 3).keys()).isEqualTo(KvFormats.F16);
    assertThat(c.method().format(c, 2, 3).keys()).isEqualTo(KvFormats.F16);
    MethodCall none = call("turboquant:skip_layers=0");
    assertThat(none.method().format(none, 0, 6).keys()).isInstanceOf(TurboQuantKeyFormat.class);
    MethodCall f32 = call("turboquant:skip_format=f32");
    assertThat(f32.method().format(f32, 5, 6).values()).isEqualTo(KvFormats.F32);
  }

  @Test
  void aPresetWithExplicitBitsIsOneSentence() {
    assertThatThrownBy(() -> KvSpec.parse("turboquant:preset=4bit_nc,kbits=3"))
        .isInstanceOf(KvSpecException.class)
        .hasMessage(
            "turboquant:preset=4bit_nc sets kbits, vbits and nc; give either a preset or those keys");
    assertThatThrownBy(() -> KvSpec.parse("turboquant:kbits=8,nc=true"))
        .isInstanceOf(KvSpecException.class)
        .hasMessage("turboquant:nc=true applies to codebook keys, not to kbits=8 (fp8 keys)");
    for (String spec :
        new String[] {
          "turboquant:qjl=true,nc=true",
          "turboquant:preset=4bit_nc,qjl=true",
          "turboquant:kbits=8,qjl=true"
        }) {
      assertThatThrownBy(() -> KvSpec.parse(spec))
          .isInstanceOf(KvSpecException.class)
          .hasMessage(
              "turboquant:qjl=true needs codebook keys without norm correction (kbits 2..4 and"
                  + " nc=false, or a preset without _nc)");
    }
    assertThatThrownBy(() -> KvSpec.parse("turboquant:preset=k2v2"))
        .isInstanceOf(KvSpecException.class)
        .hasMessageContaining("preset")
        .hasMessageNotContaining("\n");
  }

  /** On the bundled model (head dim 64, 6 layers): eviction then TurboQuant, a short generation. */
  @Test
  void composesWithEvictionOnTheTrainedModel() {
    try (Model model = Model.load(Path.of("models/pycoder-6m-f16.gguf"));
        Engine engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      assertThat(model.config().headDim()).isEqualTo(64);
      String spec = "snapkv:budget=25% + turboquant:preset=4bit_nc";
      int n = 96;
      int[] tokens = new int[n + 8];
      for (int i = 0; i < tokens.length; i++) {
        tokens[i] = 3 + (i * 37) % (model.config().vocabSize() - 3);
      }
      float[] logits = new float[model.config().vocabSize()];
      try (ManagedKvCache c =
              KvSpecs.caches(KvSpec.parse(spec), new BlockPool(), model.config()).create();
          ManagedKvCache alone =
              KvSpecs.caches(KvSpec.parse("snapkv:budget=25%"), new BlockPool(), model.config())
                  .create()) {
        engine.prefill(c, tokens, 0, n, 0, false, logits);
        engine.prefill(alone, tokens, 0, n, 0, false, new float[logits.length]);
        for (int i = 0; i < 8; i++) {
          engine.decode(c, tokens[n + i], n + i, logits);
          engine.decode(alone, tokens[n + i], n + i, new float[logits.length]);
          for (float v : logits) {
            assertThat(Float.isFinite(v)).isTrue();
          }
        }
        int quantized = 0;
        for (int l = 0; l < c.layerCount(); l++) {
          KvCacheFormat f = c.paged(l).store().format();
          if (f.keys() instanceof TurboQuantKeyFormat) {
            quantized++;
          }
          // eviction kept as many tokens as SnapKV alone, well under the sequence
          for (int g = 0; g < c.paged(l).kvHeads(); g++) {
            assertThat(c.paged(l).positions(g))
                .as("layer %d head %d", l, g)
                .hasSameSizeAs(alone.paged(l).positions(g))
                .hasSizeLessThan(n / 2);
          }
        }
        assertThat(c.bytes()).isLessThan(alone.bytes());
        assertThat(quantized).isEqualTo(2); // layers 2 and 3 of 6
      }
    }
  }
}
