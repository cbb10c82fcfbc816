package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.SharedData;
import io.kvslim.SpmEngineTest;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.KvCacheFormat;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class ShadowKvMethodTest extends SpmEngineTest {

  ShadowKvMethod.Policy policy(String spec) {
    var c = model.config();
    boolean[] layers = new boolean[c.layers()];
    Arrays.fill(layers, true);
    MethodCall call = KvSpec.parse(spec).rules().get(0).calls().get(0);
    return (ShadowKvMethod.Policy)
        new ShadowKvMethod()
            .policy(call, new PolicyContext(layers, c.kvHeads(), c.headDim(), 8.0 * c.headDim()));
  }

  ManagedKvCache cache(ShadowKvMethod.Policy policy) {
    var c = model.config();
    KvCacheFormat[] formats = new KvCacheFormat[c.layers()];
    Arrays.fill(formats, KvCacheFormat.of(KvFormats.F32));
    return new ManagedKvCache(new BlockPool(), c.kvHeads(), c.headDim(), formats, List.of(policy));
  }

  @Test
  void badKnobsAreOneSentence() {
    assertThatThrownBy(() -> KvSpec.parse("shadowkv:budget=1MiB"))
        .hasMessageContaining("not bytes");
    assertThatThrownBy(() -> KvSpec.parse("shadowkv:chunk=0")).hasMessageContaining("chunk");
  }

  @Test
  void decodeRecallsTheBudgetsChunksAndEqualsTheFullCacheWhenTheBudgetCoversIt() {
    SharedData.require();
    var c = model.config();
    int n = 203; // 25 chunks of 8 and a remainder of 3
    int vocab = c.vocabSize();
    SplittableRandom r = new SplittableRandom(5);
    int[] toks = new int[n + 5];
    for (int i = 0; i < toks.length; i++) {
      toks[i] = 3 + r.nextInt(vocab - 3);
    }
    ShadowKvMethod.Policy small = policy("shadowkv:budget=40,outliers=3");
    ShadowKvMethod.Policy covering = policy("shadowkv:budget=" + toks.length);
    float[] lf = new float[vocab];
    float[] ls = new float[vocab];
    float[] lc = new float[vocab];
    boolean differs = false;
    try (ManagedKvCache full =
            KvSpecs.caches(KvSpec.parse("full"), new BlockPool(), model.config()).create();
        ManagedKvCache s = cache(small);
        ManagedKvCache cov = cache(covering)) {
      engine.prefill(full, toks, 0, n, 0, false, lf);
      engine.prefill(s, toks, 0, n, 0, false, ls);
      engine.prefill(cov, toks, 0, n, 0, false, lc);
      assertThat(ls).isEqualTo(lf);
      double perToken = 8.0 * c.headDim(); // F32 key and value
      for (int step = 0; step < 5; step++) {
        double before = small.bytesRead();
        engine.decode(full, toks[n + step], n + step, lf);
        engine.decode(s, toks[n + step], n + step, ls);
        engine.decode(cov, toks[n + step], n + step, lc);
        assertThat(lc).as("a budget covering the sequence").isEqualTo(lf);
        differs |= !Arrays.equals(ls, lf);
        // 40/8 = 5 chunks of 8 recalled per layer and KV head
        assertThat(small.bytesRead() - before)
            .isEqualTo(5.0 * 8 * c.layers() * c.kvHeads() * perToken);
        assertThat(s.bytes()).isEqualTo(full.bytes());
      }
      // 25 − 4 local = 21 chunks; each step attends 3 outliers + 5 recalled chunks + the rest
      int held = n + 5;
      double want = (8.0 * 8 + (held - 21 * 8)) * c.layers() * c.kvHeads() * perToken;
      assertThat(small.decodeBytesAttended() / 5)
          .isLessThan(held * c.layers() * c.kvHeads() * perToken);
      assertThat(small.outlierChunks(0, 0)).isEqualTo(3);
      assertThat(small.decodeBytesAttended()).isGreaterThan(4 * want).isLessThan(6 * want);
      assertThat(covering.bytesRead()).isZero();
    }
    assertThat(differs).as("5 of 18 recallable chunks change the logits").isTrue();
  }
}
