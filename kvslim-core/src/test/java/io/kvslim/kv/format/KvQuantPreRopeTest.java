package io.kvslim.kv.format;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.method.MethodCall;
import io.kvslim.kv.method.PolicyContext;
import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.model.Model;
import io.kvslim.model.ModelConfig;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Keys stored before RoPE at their own positions (KVQuant's storage, METHODS.md M6) through the
 * real tiny model: with F32 keys the cache rotates each key at its position when it attends and
 * gives the same logits as the cache that stores rotated keys, bit for bit, alone and under SnapKV
 * eviction (whose scores read the keys and queries rotated, as the model sees them).
 */
class KvQuantPreRopeTest {
  static Model model;
  static Engine engine;
  static int[] tokens;
  static final int PROMPT = 70;
  static final int DECODE = 12;

  /** F32 rows that ask for keys before RoPE. */
  static final class PreRopeF32 extends RowFormat {
    final F32Format f32 = (F32Format) KvFormats.F32;

    @Override
    public String name() {
      return "f32_prerope";
    }

    @Override
    public boolean keysBeforeRope() {
      return true;
    }

    @Override
    public int rowBytes(int headDim) {
      return f32.rowBytes(headDim);
    }

    @Override
    protected int rowScaleBytes(int headDim) {
      return 0;
    }

    @Override
    protected void encodeRow(float[] src, int srcOff, MemorySegment b, long off, int headDim) {
      f32.encodeRow(src, srcOff, b, off, headDim);
    }

    @Override
    protected void decodeRow(MemorySegment b, long off, int headDim, float[] dst, int dstOff) {
      f32.decodeRow(b, off, headDim, dst, dstOff);
    }

    @Override
    protected float dotRow(MemorySegment b, long off, int headDim, float[] q, int qOff, float[] w) {
      return f32.dotRow(b, off, headDim, q, qOff, w);
    }

    @Override
    protected void accumulateRow(
        MemorySegment b, long off, int headDim, float w, float[] acc, int accOff, float[] work) {
      f32.accumulateRow(b, off, headDim, w, acc, accOff, work);
    }
  }

  @BeforeAll
  static void load() {
    if (!SharedData.present()) {
      return;
    }
    model = Model.load(SharedData.model("llama-spm-f32.gguf"));
    engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()));
    SplittableRandom r = new SplittableRandom(5);
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

  static ManagedKvCache cache(boolean preRope, String policy) {
    ModelConfig c = model.config();
    KvCacheFormat[] formats = new KvCacheFormat[c.layers()];
    Arrays.fill(
        formats,
        preRope
            ? KvCacheFormat.of(new PreRopeF32(), KvFormats.F32)
            : KvCacheFormat.of(KvFormats.F32));
    List<KvPolicy> policies = List.of();
    if (policy != null) {
      MethodCall call = KvSpec.parse(policy).rules().get(0).calls().get(0);
      boolean[] all = new boolean[c.layers()];
      Arrays.fill(all, true);
      PolicyContext ctx = new PolicyContext(all, c.kvHeads(), c.headDim(), 1.0);
      policies = List.of(call.method().policy(call, ctx));
    }
    return new ManagedKvCache(new BlockPool(), c.kvHeads(), c.headDim(), formats, policies);
  }

  static float[][] run(KvCache cache) {
    int vocab = model.config().vocabSize();
    float[][] out = new float[DECODE + 1][vocab];
    engine.prefill(cache, tokens, 0, PROMPT, 0, false, out[0]);
    for (int i = 0; i < DECODE; i++) {
      engine.decode(cache, tokens[PROMPT + i], PROMPT + i, out[i + 1]);
    }
    return out;
  }

  @ParameterizedTest
  @ValueSource(strings = {"", "snapkv:budget=25%,window=16"})
  void keysBeforeRopeAttendBitForBitAsRotatedKeys(String policy) {
    Assumptions.assumeTrue(model != null, "shared data missing");
    String p = policy.isEmpty() ? null : policy;
    float[][] expected;
    float[][] actual;
    try (ManagedKvCache rotated = cache(false, p);
        ManagedKvCache before = cache(true, p)) {
      expected = run(rotated);
      actual = run(before);
      assertThat(before.paged(0).keysBeforeRope()).isTrue();
      assertThat(rotated.paged(0).keysBeforeRope()).isFalse();
      if (p != null) {
        assertThat(before.paged(0).size(0)).isLessThan(PROMPT).isEqualTo(rotated.paged(0).size(0));
      }
    }
    for (int i = 0; i < expected.length; i++) {
      assertThat(actual[i]).as("step %d", i).containsExactly(expected[i]);
    }
  }
}
