package io.kvslim.kv.cache;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * A prompt prefilled once into several caches with the same formats leaves each of them exactly as
 * a prefill of its own would: same logits, same retained tokens and bytes after its policies acted,
 * same logits on every later decode step.
 */
class SharedPrefillTest {
  static Model model;
  static Engine engine;
  static int[] tokens;
  static final int PROMPT = 150;
  static final int DECODE = 12;

  @BeforeAll
  static void load() {
    if (!SharedData.present()) {
      return;
    }
    model = Model.load(SharedData.model("llama-spm-f32.gguf"));
    engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()));
    engine.setPrefillChunk(64); // several chunks: policies must still act only at the end
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

  private static KvCaches caches(String spec) {
    return KvSpecs.caches(KvSpec.parse(spec), new BlockPool(), model.config());
  }

  /** Logits after the prefill and after each decode step. */
  private static float[][] decode(KvCache cache, float[] prefillLogits) {
    int vocab = model.config().vocabSize();
    float[][] out = new float[DECODE + 1][];
    out[0] = prefillLogits;
    for (int i = 0; i < DECODE; i++) {
      out[i + 1] = new float[vocab];
      engine.decode(cache, tokens[PROMPT + i], PROMPT + i, out[i + 1]);
    }
    return out;
  }

  private static void assertSameAsAlone(List<String> specs) {
    assumeTrue(SharedData.present());
    int vocab = model.config().vocabSize();
    List<ManagedKvCache> together = new ArrayList<>();
    List<ManagedKvCache> alone = new ArrayList<>();
    try {
      for (String s : specs) {
        together.add(caches(s).create());
        alone.add(caches(s).create());
      }
      float[] shared = new float[PROMPT * vocab];
      engine.prefill(ManagedKvCache.sharedPrefill(together), tokens, 0, PROMPT, 0, true, shared);
      for (int i = 0; i < specs.size(); i++) {
        float[] own = new float[PROMPT * vocab];
        engine.prefill(alone.get(i), tokens, 0, PROMPT, 0, true, own);
        assertThat(shared).as(specs.get(i) + " prefill logits").isEqualTo(own);
        ManagedKvCache a = alone.get(i);
        ManagedKvCache t = together.get(i);
        assertThat(t.bytes()).as(specs.get(i) + " bytes").isEqualTo(a.bytes());
        assertThat(t.promptTokens()).isEqualTo(PROMPT);
        for (int l = 0; l < model.config().layers(); l++) {
          for (int h = 0; h < model.config().kvHeads(); h++) {
            assertThat(t.paged(l).size(h)).isEqualTo(a.paged(l).size(h));
          }
        }
        float[] last = java.util.Arrays.copyOfRange(own, (PROMPT - 1) * vocab, PROMPT * vocab);
        float[][] x = decode(t, last);
        float[][] y = decode(a, last);
        for (int s = 0; s <= DECODE; s++) {
          assertThat(x[s]).as(specs.get(i) + " decode step " + s).isEqualTo(y[s]);
        }
      }
    } finally {
      together.forEach(ManagedKvCache::close);
      alone.forEach(ManagedKvCache::close);
    }
  }

  @Test
  void evictionSpecsSharingTheFullCachesPrefillMatchTheirOwnRuns() {
    assertSameAsAlone(
        List.of(
            "full",
            "streaming:sinks=4,window=24,positions=original",
            "h2o:budget=25%",
            "tova:budget=25%",
            "snapkv:budget=25%,window=8",
            "pyramidkv:budget=25%,window=8",
            "adakv:budget=25%,window=8"));
  }

  @Test
  void cachesWithRollingPositionsShareWithEachOtherOnly() {
    // keys are stored before RoPE: the full cache's prompt is not theirs
    assertSameAsAlone(List.of("streaming:sinks=4,window=24", "streaming:sinks=2,window=40"));
    assumeTrue(SharedData.present());
    try (ManagedKvCache full = caches("full").create();
        ManagedKvCache rolling = caches("streaming:sinks=4,window=24").create()) {
      assertThat(full.sameFormats(rolling)).isFalse();
      assertThatThrownBy(() -> ManagedKvCache.sharedPrefill(List.of(full, rolling)))
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessageContaining("same format");
    }
  }

  @Test
  void quantizedFormatsShareWithTheirOwnFormatOnly() {
    assertSameAsAlone(
        List.of("q8_0", "snapkv:budget=25%,window=8 + q8_0", "h2o:budget=30% + q8_0"));
    assertSameAsAlone(
        List.of(
            "kivi:kbits=2,vbits=2,group=32,residual=32",
            "kivi:kbits=2,vbits=2,group=32,residual=32"));
  }

  @Test
  void refusesMixedFormatsUsedCachesAndAnEmptyList() {
    assumeTrue(SharedData.present());
    try (ManagedKvCache f32 = caches("full").create();
        ManagedKvCache q8 = caches("q8_0").create()) {
      assertThat(f32.sameFormats(q8)).isFalse();
      assertThatThrownBy(() -> ManagedKvCache.sharedPrefill(List.of(f32, q8)))
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessageContaining("same format");
      assertThatThrownBy(() -> ManagedKvCache.sharedPrefill(List.of()))
          .isInstanceOf(IllegalArgumentException.class);
      float[] logits = new float[model.config().vocabSize()];
      engine.prefill(f32, tokens, 0, 8, 0, false, logits);
      try (ManagedKvCache other = caches("h2o:budget=50%").create()) {
        assertThatThrownBy(() -> ManagedKvCache.sharedPrefill(List.of(other, f32)))
            .isInstanceOf(IllegalArgumentException.class)
            .hasMessageContaining("fresh");
      }
    }
  }
}
