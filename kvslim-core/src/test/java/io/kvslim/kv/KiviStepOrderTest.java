package io.kvslim.kv;

import static io.kvslim.kv.KiviCacheTest.HEADS;
import static io.kvslim.kv.KiviCacheTest.HEAD_DIM;
import static io.kvslim.kv.KiviCacheTest.KV_HEADS;
import static io.kvslim.kv.KiviCacheTest.headRow;
import static io.kvslim.kv.KiviCacheTest.quantizedKeys;
import static io.kvslim.kv.KiviCacheTest.quantizedValues;
import static io.kvslim.kv.KvTestData.gaussian;
import static io.kvslim.kv.KvTestData.range;
import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.model.Model;
import java.util.Arrays;
import java.util.Random;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * KIVI's order within a step (METHODS.md Q3, the authors' {@code models/llama_kivi.py}): attention
 * reads the step's keys and values exact, and what leaves the residual window is quantized after
 * it.
 */
class KiviStepOrderTest {
  /**
   * Which positions a decode step's attention reads exact, pinned to the authors' order ({@code
   * models/llama_kivi.py}, jy-yuan/KIVI, {@code LlamaAttention_KIVI.forward}, decode branch): the
   * new key is concatenated to the full-precision keys (line 122) and scored (125–129) before the
   * residual is quantized once it holds R (131–144); the new value is concatenated to the latest R
   * (165) and read (167–172) before the oldest is quantized (174–187, which asserts R + 1 held). So
   * with t tokens before the step (new token t), attention reads exact keys at positions [t − t mod
   * R, t] and exact values at [max(0, t − R), t]: R + 1 values once t ≥ R. What the store holds
   * between the append and the attention is what the attention reads.
   */
  @Test
  void eachDecodeStepAttendsOverTheReferenceWindowThenQuantizes() {
    int group = 4;
    int residual = 8;
    Random random = new Random(10);
    PagedLayerKv layer =
        PagedKvCache.create(1, KV_HEADS, HEAD_DIM, KvCacheFormat.kivi(2, 2, group, residual))
            .layer(0);
    int total = 41;
    float[] keys = gaussian(random, total * KV_HEADS * HEAD_DIM);
    float[] values = gaussian(random, total * KV_HEADS * HEAD_DIM);
    float[] row = new float[HEAD_DIM];
    for (int t = 0; t < total; t++) {
      appendToken(layer, keys, values, t);
      int firstExactKey = t - t % residual;
      int firstExactValue = Math.max(0, t - residual);
      for (int g = 0; g < KV_HEADS; g++) {
        HeadStore head = layer.head(g);
        assertThat(quantizedKeys(head)).as("keys read at step %d", t).isEqualTo(firstExactKey);
        assertThat(quantizedValues(head))
            .as("values read at step %d", t)
            .isEqualTo(firstExactValue);
        for (int p = firstExactKey; p <= t; p++) {
          head.readKey(p, row);
          assertThat(row).as("key %d at step %d", p, t).isEqualTo(headRow(keys, p, g));
        }
        for (int p = firstExactValue; p <= t; p++) {
          head.readValue(p, row);
          assertThat(row).as("value %d at step %d", p, t).isEqualTo(headRow(values, p, g));
        }
      }
      float[] q = gaussian(random, HEADS * HEAD_DIM);
      layer.attend(1, new int[] {t}, HEADS, q, 0.2f, new float[q.length], null);
      // after the attention: keys of the first n − (n mod R) of the n = t + 1 tokens, values of
      // the first n − R (METHODS.md Q3)
      int n = t + 1;
      assertThat(quantizedKeys(layer.head(0))).as("keys after %d", t).isEqualTo(n - n % residual);
      assertThat(quantizedValues(layer.head(1)))
          .as("values after %d", t)
          .isEqualTo(Math.max(0, n - residual));
    }
  }

  /**
   * Attention reads the oldest value of the window, R steps after its own, exact (the reference
   * holds R + 1 values while it attends), and quantized one step later: a query that sees only
   * token 10 returns its value bit for bit through step 10 + R and not after.
   */
  @Test
  void theOldestOfRPlusOneValuesIsReadExactAndQuantizedTheStepAfter() {
    int residual = 8;
    int special = 10;
    Random random = new Random(11);
    PagedLayerKv layer =
        PagedKvCache.create(1, KV_HEADS, HEAD_DIM, KvCacheFormat.kivi(2, 2, 4, residual)).layer(0);
    int total = special + residual + 3;
    float[] keys = oneChannelKeys(random, total, new int[] {special}, new float[] {500f});
    float[] values = gaussian(random, total * KV_HEADS * HEAD_DIM);
    float[] q = channelZeroQuery();
    for (int t = 0; t < total; t++) {
      appendToken(layer, keys, values, t);
      float[] out = new float[q.length];
      layer.attend(1, new int[] {t}, HEADS, q, 1f, out, null);
      if (t < special) {
        continue;
      }
      for (int h = 0; h < HEADS; h++) {
        float[] got = Arrays.copyOfRange(out, h * HEAD_DIM, (h + 1) * HEAD_DIM);
        float[] value = headRow(values, special, h / (HEADS / KV_HEADS));
        if (t <= special + residual) {
          assertThat(got).as("step %d head %d", t, h).isEqualTo(value);
        } else {
          assertThat(got).as("step %d head %d", t, h).isNotEqualTo(value);
        }
      }
    }
  }

  /**
   * The keys of a residual that the step's token fills to R are read exact at that step and
   * quantized from the next (reference lines 122–144): two tokens whose keys differ by 1 in a
   * channel that only they use share the attention as exp(0) : exp(−1) while exact, as the dense
   * cache computes bit for bit, but evenly once per-channel 2-bit codes round both to the group's
   * top.
   */
  @Test
  void keysOfAResidualFilledByTheStepAreReadExactThenQuantized() {
    int residual = 8;
    Random random = new Random(12);
    PagedLayerKv layer =
        PagedKvCache.create(1, KV_HEADS, HEAD_DIM, KvCacheFormat.kivi(2, 2, 4, residual)).layer(0);
    DenseLayerKv dense = new DenseLayerKv(KV_HEADS, HEAD_DIM);
    int total = 3 * residual + 2;
    // tokens 17 and 18 (in the residual of tokens 16..23, which token 23 fills)
    float[] keys = oneChannelKeys(random, total, new int[] {17, 18}, new float[] {500f, 499f});
    float[] values = gaussian(random, total * KV_HEADS * HEAD_DIM);
    float[] q = channelZeroQuery();
    for (int t = 0; t < total; t++) {
      appendToken(layer, keys, values, t);
      appendToken(dense, keys, values, t);
      float[] out = new float[q.length];
      float[] expected = new float[q.length];
      layer.attend(1, new int[] {t}, HEADS, q, 1f, out, null);
      dense.attend(1, new int[] {t}, HEADS, q, 1f, expected, null);
      if (t >= 17 && t < 3 * residual) {
        assertThat(out).as("step %d", t).isEqualTo(expected);
      } else if (t >= 3 * residual) {
        assertThat(out).as("step %d", t).isNotEqualTo(expected);
      }
    }
    assertThat(quantizedKeys(layer.head(0))).isEqualTo(3 * residual);
  }

  /** Keys with channel 0 zero but for {@code tokens} (both heads), which get {@code channel0}. */
  static float[] oneChannelKeys(Random random, int total, int[] tokens, float[] channel0) {
    float[] keys = gaussian(random, total * KV_HEADS * HEAD_DIM);
    for (int t = 0; t < total; t++) {
      for (int g = 0; g < KV_HEADS; g++) {
        keys[(t * KV_HEADS + g) * HEAD_DIM] = 0f;
      }
    }
    for (int i = 0; i < tokens.length; i++) {
      for (int g = 0; g < KV_HEADS; g++) {
        keys[(tokens[i] * KV_HEADS + g) * HEAD_DIM] = channel0[i];
      }
    }
    return keys;
  }

  /** A query of every head that reads channel 0 only. */
  static float[] channelZeroQuery() {
    float[] q = new float[HEADS * HEAD_DIM];
    for (int h = 0; h < HEADS; h++) {
      q[h * HEAD_DIM] = 1f;
    }
    return q;
  }

  static void appendToken(LayerKv layer, float[] keys, float[] values, int t) {
    int at = t * KV_HEADS * HEAD_DIM;
    layer.append(
        1,
        new int[] {t},
        Arrays.copyOfRange(keys, at, at + KV_HEADS * HEAD_DIM),
        Arrays.copyOfRange(values, at, at + KV_HEADS * HEAD_DIM));
  }

  /**
   * A one-shot prefill attends over the exact prompt (reference prefill branch, lines 190–191 and
   * 243) and quantizes afterwards (193–220): bit-identical to the dense cache although R < n.
   */
  @Test
  void aOneShotPrefillAttendsOverTheExactPromptThenQuantizes() {
    Random random = new Random(13);
    int n = 100;
    PagedLayerKv kivi =
        PagedKvCache.create(1, KV_HEADS, HEAD_DIM, KvCacheFormat.kivi(2, 2, 32, 64)).layer(0);
    DenseLayerKv dense = new DenseLayerKv(KV_HEADS, HEAD_DIM);
    float[] keys = gaussian(random, n * KV_HEADS * HEAD_DIM);
    float[] values = gaussian(random, n * KV_HEADS * HEAD_DIM);
    kivi.append(n, range(0, n), keys, values);
    dense.append(n, range(0, n), keys, values);
    float[] queries = gaussian(random, n * HEADS * HEAD_DIM);
    float[] expected = new float[queries.length];
    float[] actual = new float[queries.length];
    dense.attend(n, range(0, n), HEADS, queries, 0.2f, expected, null);
    kivi.attend(n, range(0, n), HEADS, queries, 0.2f, actual, null);
    assertThat(actual).isEqualTo(expected);
    assertThat(quantizedKeys(kivi.head(0))).isEqualTo(64);
    assertThat(quantizedValues(kivi.head(1))).isEqualTo(36);
  }

  /**
   * Through the model: the logits of every row of a one-shot prefill with an F32 residual are the
   * full cache's bit for bit (and with the default F16 residual the F16 cache's), although R is
   * half the prompt; the decode step after it reads the quantized prompt. The cache's peak is the
   * pool's: the last layer's prompt held exact before its attention, the other layers quantized.
   */
  @Test
  void aOneShotPrefillGivesTheFullCachesLogitsAndQuantizesAfterIt() {
    try (Model model = Model.load(SharedData.model("llama-spm-f32.gguf"));
        Engine engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      int prompt = 64;
      int vocab = model.config().vocabSize();
      SplittableRandom r = new SplittableRandom(7);
      int[] tokens = new int[prompt + 1];
      for (int i = 0; i < tokens.length; i++) {
        tokens[i] = 3 + r.nextInt(vocab - 3);
      }
      String kivi = "kivi:kbits=2,vbits=2,group=32,residual=32";
      String[][] pairs = {{kivi + ",rformat=f32", "full"}, {kivi, "f16"}};
      for (String[] pair : pairs) {
        try (ManagedKvCache a = cache(model, pair[0]);
            ManagedKvCache b = cache(model, pair[1])) {
          float[] got = new float[prompt * vocab];
          float[] expected = new float[prompt * vocab];
          engine.prefill(a, tokens, 0, prompt, 0, true, got);
          engine.prefill(b, tokens, 0, prompt, 0, true, expected);
          assertThat(got).as(pair[0]).isEqualTo(expected);
          int layers = model.config().layers();
          assertThat(a.bytes()).as(pair[0]).isLessThan(b.bytes());
          // after the step: the keys of 64 − 64 mod 32 tokens and the values of 64 − 32 are
          // quantized
          assertThat(quantizedKeys(a.paged(layers - 1).head(0))).isEqualTo(prompt);
          assertThat(quantizedValues(a.paged(0).head(0))).isEqualTo(prompt - 32);
          assertThat(a.peakBytes())
              .isEqualTo(a.pool().peakBytes())
              .isEqualTo((layers - 1) * a.bytes() / layers + b.bytes() / layers);
          float[] one = new float[vocab];
          float[] full = new float[vocab];
          engine.decode(a, tokens[prompt], prompt, one);
          engine.decode(b, tokens[prompt], prompt, full);
          assertThat(one).as(pair[0]).isNotEqualTo(full);
          assertThat(a.peakBytes()).isEqualTo(a.pool().peakBytes());
        }
      }
    }
  }

  static ManagedKvCache cache(Model model, String spec) {
    return KvSpecs.caches(KvSpec.parse(spec), new BlockPool(), model.config()).create();
  }
}
