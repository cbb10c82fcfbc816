package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.format.KiviKeyFormat;
import io.kvslim.kv.format.KiviValueFormat;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.model.Model;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** AsymKV (METHODS.md Q7): the per-layer bit map, KIVI-2bit at l_k = l_v = L, refusals. */
class AsymKvMethodTest {
  static MethodCall call(String spec) {
    return KvSpec.parse(spec).rules().get(0).calls().get(0);
  }

  @Test
  void theBitMapOfEveryLayerFollowsTheConfiguration() {
    int layers = 8;
    for (int lk = 0; lk <= layers + 1; lk++) {
      for (int lv = 0; lv <= layers + 1; lv++) {
        MethodCall c = call("asymkv:lk=" + lk + ",lv=" + lv + ",group=16,residual=64");
        for (int l = 0; l < layers; l++) {
          KvCacheFormat f = c.method().format(c, l, layers);
          assertThat(f.keys())
              .as("lk %d layer %d", lk, l)
              .isEqualTo(new KiviKeyFormat(l < lk ? 2 : 1, 16));
          assertThat(f.values())
              .as("lv %d layer %d", lv, l)
              .isEqualTo(new KiviValueFormat(l < lv ? 2 : 1, 16));
          assertThat(f.blockTokens()).isEqualTo(64); // R = 64: blocks of four key groups
          assertThat(f.residualTokens()).isEqualTo(64);
          assertThat(f.residualKeys()).isEqualTo(KvFormats.F16);
        }
      }
    }
    // unset: l_k half the layers, l_v 0
    MethodCall d = call("asymkv");
    assertThat(d.method().format(d, 2, 6).keys()).isEqualTo(new KiviKeyFormat(2, 32));
    assertThat(d.method().format(d, 3, 6).keys()).isEqualTo(new KiviKeyFormat(1, 32));
    assertThat(d.method().format(d, 0, 6).values()).isEqualTo(new KiviValueFormat(1, 32));
    MethodCall f32 = call("asymkv:lk=1,lv=1,rformat=f32");
    assertThat(f32.method().format(f32, 0, 6).residualValues()).isEqualTo(KvFormats.F32);
  }

  @Test
  void badKnobsAreOneSentence() {
    assertThatThrownBy(() -> KvSpec.parse("asymkv:lk=4,lv=2,group=32,residual=48"))
        .isInstanceOf(KvSpecException.class)
        .hasMessage("asymkv:residual=48 must be a multiple of group=32");
    assertThatThrownBy(() -> KvSpec.parse("asymkv:lk=4,lv=2,group=12,residual=48"))
        .isInstanceOf(KvSpecException.class)
        .hasMessage("asymkv:group=12 must be a multiple of 8 (1-bit codes fill bytes)");
    for (String spec : new String[] {"asymkv:lk=-1", "asymkv:lv=x", "asymkv:lk=2,bits=1"}) {
      assertThatThrownBy(() -> KvSpec.parse(spec))
          .isInstanceOf(KvSpecException.class)
          .hasMessageContaining("asymkv")
          .hasMessageNotContaining("\n");
    }
  }

  /**
   * On the bundled model (6 layers): l_k = l_v = 6 is KIVI-2bit, the same bytes and bit-identical
   * logits; l_k = 4, l_v = 2 stores each layer in its configured widths, fewer bytes by the
   * formula.
   */
  @Test
  void allLayersAtTwoBitsIsKiviAndTheCacheHoldsTheBitMap() {
    try (Model model = Model.load(Path.of("models/pycoder-6m-f16.gguf"));
        Engine engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      int layers = model.config().layers();
      assertThat(layers).isEqualTo(6);
      int n = 160;
      int[] tokens = new int[n + 6];
      for (int i = 0; i < tokens.length; i++) {
        tokens[i] = 3 + (i * 37) % (model.config().vocabSize() - 3);
      }
      String kivi = "kivi:kbits=2,vbits=2,group=32,residual=32";
      String same = "asymkv:lk=6,lv=6,group=32,residual=32";
      String asym = "asymkv:lk=4,lv=2,group=32,residual=32";
      try (ManagedKvCache k =
              KvSpecs.caches(KvSpec.parse(kivi), new BlockPool(), model.config()).create();
          ManagedKvCache a =
              KvSpecs.caches(KvSpec.parse(same), new BlockPool(), model.config()).create();
          ManagedKvCache b =
              KvSpecs.caches(KvSpec.parse(asym), new BlockPool(), model.config()).create()) {
        float[] lk = new float[model.config().vocabSize()];
        float[] la = new float[lk.length];
        float[] lb = new float[lk.length];
        engine.prefill(k, tokens, 0, n, 0, false, lk);
        engine.prefill(a, tokens, 0, n, 0, false, la);
        engine.prefill(b, tokens, 0, n, 0, false, lb);
        assertThat(la).isEqualTo(lk);
        for (int i = 0; i < 6; i++) {
          engine.decode(k, tokens[n + i], n + i, lk);
          engine.decode(a, tokens[n + i], n + i, la);
          engine.decode(b, tokens[n + i], n + i, lb);
          assertThat(la).as("decode step %d", i).isEqualTo(lk);
          for (float v : lb) {
            assertThat(Float.isFinite(v)).isTrue();
          }
        }
        assertThat(a.bytes()).isEqualTo(k.bytes());
        assertThat(b.bytes()).isLessThan(k.bytes());
        int hd = model.config().headDim();
        for (int l = 0; l < layers; l++) {
          KvCacheFormat f = b.paged(l).store().format();
          assertThat(f.keys()).as("layer %d", l).isEqualTo(new KiviKeyFormat(l < 4 ? 2 : 1));
          assertThat(f.values())
              .as("layer %d", l)
              .isEqualTo(new KiviValueFormat(l < 2 ? 2 : 1, 32));
          assertThat(a.paged(l).store().format().keys()).isEqualTo(new KiviKeyFormat(2));
          assertThat(a.paged(l).bytes()).isEqualTo(k.paged(l).bytes());
          // 1-bit codes save headDim/8 bytes per quantized token slot and matrix; scales stay
          long saved = k.paged(l).bytes() - b.paged(l).bytes();
          assertThat(saved % (hd / 8)).as("layer %d", l).isZero();
          if (l < 2) {
            assertThat(saved).as("layer %d", l).isZero();
          } else {
            assertThat(saved).as("layer %d", l).isPositive();
          }
        }
        long valuesOnly = k.paged(2).bytes() - b.paged(2).bytes();
        assertThat(k.paged(4).bytes() - b.paged(4).bytes()).isGreaterThan(valuesOnly);
        assertThat(k.paged(3).bytes() - b.paged(3).bytes()).isEqualTo(valuesOnly);
      }
    }
  }
}
