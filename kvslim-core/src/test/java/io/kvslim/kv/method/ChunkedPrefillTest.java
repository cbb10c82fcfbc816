package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.model.Model;
import io.kvslim.model.ModelConfig;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** {@code chunk=N} (METHODS.md N10): compression inside the prefill, for every prefill scorer. */
class ChunkedPrefillTest {
  static final int PROMPT = 120;
  static final int DECODE = 8;
  static final int BUDGET = 40;
  static Model model;
  static Engine engine;
  static int[] tokens;

  @BeforeAll
  static void load() {
    if (!SharedData.present()) {
      return;
    }
    model = Model.load(SharedData.model("llama-spm-f32.gguf"));
    engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()));
    SplittableRandom r = new SplittableRandom(21);
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

  /** NACL's kept share of the prompt: sinks 4 + recent 8 + keep 12 + random 6 of 120 tokens. */
  static final String NACL = "nacl:proxy=0.1,keep=0.1,random=0.05,protect=0.1,sinks=4,min_len=0";

  static int budget(String method) {
    return method.equals("nacl") ? 30 : BUDGET;
  }

  static String spec(String method, String extra) {
    if (method.equals("nacl")) {
      return NACL + extra;
    }
    String window = method.equals("keydiff") || method.equals("expected") ? "" : ",window=16";
    return method + ":budget=" + BUDGET + window + extra;
  }

  /** What a probe policy placed after the method's saw: rows per step and sizes per head. */
  static final class Probe implements KvPolicy {
    final List<Integer> rows = new ArrayList<>();
    final int[] mostPerHead; // per layer: the most tokens one head held after an append
    final int[] mostPerLayer; // per layer: the most tokens all heads held after an append
    final int[] mostAfterCompression; // per layer: per head, after a chunk's attention (not last)

    Probe(int layers) {
      mostPerHead = new int[layers];
      mostPerLayer = new int[layers];
      mostAfterCompression = new int[layers];
    }

    @Override
    public boolean wantsQueries(int layer) {
      return true;
    }

    @Override
    public void onQueries(
        ManagedKvCache cache, int layer, int n, int[] positions, int heads, float[] q, float s) {
      if (layer == 0 && cache.promptTokens() < 0) {
        rows.add(n);
      }
      PagedLayerKv kv = cache.paged(layer);
      int sum = 0;
      for (int g = 0; g < kv.kvHeads(); g++) {
        mostPerHead[layer] = Math.max(mostPerHead[layer], kv.size(g));
        sum += kv.size(g);
      }
      mostPerLayer[layer] = Math.max(mostPerLayer[layer], sum);
    }

    @Override
    public void afterAttention(ManagedKvCache cache, int layer) {
      if (cache.promptTokens() < 0 && cache.tokens() < PROMPT) {
        PagedLayerKv kv = cache.paged(layer);
        for (int g = 0; g < kv.kvHeads(); g++) {
          mostAfterCompression[layer] = Math.max(mostAfterCompression[layer], kv.size(g));
        }
      }
    }

    @Override
    public void afterStep(ManagedKvCache cache, KvCache.StepKind kind) {}
  }

  static ManagedKvCache cache(String spec, KvPolicy probe) {
    ModelConfig c = model.config();
    MethodCall call = KvSpec.parse(spec).callsFor(0).get(0);
    boolean[] all = new boolean[c.layers()];
    Arrays.fill(all, true);
    KvPolicy p =
        call.method()
            .policy(
                call,
                new PolicyContext(
                    all, c.kvHeads(), c.headDim(), 1, null, Model.ropeOf(model.config())));
    KvCacheFormat[] formats = new KvCacheFormat[c.layers()];
    Arrays.fill(formats, KvCacheFormat.of(KvFormats.F32));
    return new ManagedKvCache(
        new BlockPool(), c.kvHeads(), c.headDim(), formats, List.of(p, probe));
  }

  /** Logits of the prefill's last row and of each decode step; the cache's peak bytes last. */
  static float[][] run(String spec, Probe probe, long[] peak) {
    int vocab = model.config().vocabSize();
    float[][] out = new float[DECODE + 1][vocab];
    try (ManagedKvCache cache = cache(spec, probe)) {
      engine.prefill(cache, tokens, 0, PROMPT, 0, false, out[0]);
      for (int i = 0; i < DECODE; i++) {
        engine.decode(cache, tokens[PROMPT + i], PROMPT + i, out[i + 1]);
      }
      peak[0] = cache.peakBytes();
    }
    return out;
  }

  @ParameterizedTest
  @ValueSource(strings = {"snapkv", "pyramidkv", "adakv", "keydiff", "expected", "nacl"})
  void aChunkCoveringThePromptIsOneShotBitForBit(String method) {
    SharedData.require();
    long[] peak = new long[1];
    for (int step : new int[] {Engine.DEFAULT_PREFILL_CHUNK, 32}) { // the engine's own pieces
      engine.setPrefillChunk(step);
      try {
        float[][] oneShot = run(spec(method, ""), new Probe(model.config().layers()), peak);
        for (int chunk : new int[] {PROMPT, 4 * PROMPT}) {
          float[][] chunked =
              run(spec(method, ",chunk=" + chunk), new Probe(model.config().layers()), peak);
          for (int i = 0; i < oneShot.length; i++) {
            assertThat(chunked[i])
                .as("%s chunk %d step %d", method, chunk, i)
                .containsExactly(oneShot[i]);
          }
        }
      } finally {
        engine.setPrefillChunk(Engine.DEFAULT_PREFILL_CHUNK);
      }
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"snapkv", "pyramidkv", "adakv", "keydiff", "expected", "nacl"})
  void aStoreHoldsAtMostTheBudgetPlusOneChunkAndRunsAreDeterministic(String method) {
    SharedData.require();
    int chunk = 16;
    int layers = model.config().layers();
    int kvHeads = model.config().kvHeads();
    long[] onePeak = new long[1];
    float[][] oneShot = run(spec(method, ""), new Probe(layers), onePeak);
    Probe probe = new Probe(layers);
    long[] peak = new long[1];
    float[][] a = run(spec(method, ",chunk=" + chunk), probe, peak);
    float[][] b = run(spec(method, ",chunk=" + chunk), new Probe(layers), new long[1]);
    for (int i = 0; i < a.length; i++) {
      assertThat(b[i]).as("step %d", i).containsExactly(a[i]);
    }
    // the engine fed the prompt in the method's chunks
    assertThat(probe.rows).allMatch(n -> n == chunk || n == PROMPT % chunk);
    assertThat(probe.rows.stream().mapToInt(Integer::intValue).sum()).isEqualTo(PROMPT);
    boolean adaptive = method.equals("adakv") || method.equals("expected");
    boolean pyramid = method.equals("pyramidkv");
    for (int l = 0; l < layers; l++) {
      if (adaptive) { // heads differ; the layer keeps its heads' budgets' sum
        assertThat(probe.mostPerLayer[l])
            .as("layer %d", l)
            .isLessThanOrEqualTo(kvHeads * (BUDGET + chunk));
      } else if (!pyramid) {
        assertThat(probe.mostPerHead[l])
            .as("layer %d", l)
            .isLessThanOrEqualTo(budget(method) + chunk);
        assertThat(probe.mostAfterCompression[l])
            .as("layer %d", l)
            .isLessThanOrEqualTo(budget(method));
      } else { // PyramidKV: layer budgets around the mean, at most twice it
        assertThat(probe.mostPerHead[l]).as("layer %d", l).isLessThanOrEqualTo(2 * BUDGET + chunk);
      }
    }
    // compressing inside the prefill really holds less, and changes what is kept
    assertThat(peak[0]).isLessThan(onePeak[0] * 6 / 10);
    assertThat(Arrays.deepEquals(a, oneShot)).isFalse();
  }
}
