package io.kvslim.kv;

import static io.kvslim.kv.KvTestData.gaussian;
import static io.kvslim.kv.KvTestData.range;
import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.kv.KvTestData.RecordingObserver;
import io.kvslim.kv.cache.PagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.tensor.LlamaCppMath;
import io.kvslim.tensor.Parallel;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@link AttentionOrder#LLAMA_CPP} against llama.cpp's non-flash attention written as ggml computes
 * it: the whole {@code KQ} row over the cache padded to 32 cells (masked cells −∞), {@code
 * soft_max} over it, and {@code KQV} by tinyBLAS (several queries) or {@code ggml_vec_dot_f32} (one
 * query) over the padded row.
 */
class LlamaCppAttentionTest {
  static final int KV_HEADS = 2;
  static final int HEADS = 6;
  static final float SCALE = 0.125f;

  @ParameterizedTest(name = "head size {0}")
  @ValueSource(ints = {32, 64, 80})
  void equalsGgmlsKqSoftmaxKqvBitForBitInPrefillAndDecode(int headDim) {
    Random random = new Random(headDim);
    PagedKvCache cache = PagedKvCache.create(1, KV_HEADS, headDim, KvCacheFormat.of(KvFormats.F32));
    PagedLayerKv paged = cache.layer(0);
    float[][] keys = new float[KV_HEADS][0];
    float[][] values = new float[KV_HEADS][0];
    int size = 0;
    // prefill chunks and single decode steps; sizes cross 64, 96 and 128 so that the one-query
    // dot has leftovers (70, 129), none (100, 128) and no full step (38)
    int[] chunks = {37, 1, 1, 30, 1, 2, 28, 1, 27, 1, 1};
    try (Parallel pool = new Parallel(2)) {
      for (int chunk : chunks) {
        int[] positions = range(size, chunk);
        float[] newKeys = gaussian(random, chunk * KV_HEADS * headDim);
        float[] newValues = gaussian(random, chunk * KV_HEADS * headDim);
        paged.append(chunk, positions, newKeys, newValues);
        for (int g = 0; g < KV_HEADS; g++) {
          keys[g] = Arrays.copyOf(keys[g], (size + chunk) * headDim);
          values[g] = Arrays.copyOf(values[g], (size + chunk) * headDim);
          for (int t = 0; t < chunk; t++) {
            System.arraycopy(
                newKeys, (t * KV_HEADS + g) * headDim, keys[g], (size + t) * headDim, headDim);
            System.arraycopy(
                newValues, (t * KV_HEADS + g) * headDim, values[g], (size + t) * headDim, headDim);
          }
        }
        size += chunk;
        float[] queries = gaussian(random, chunk * HEADS * headDim);
        float[][] probs = new float[chunk * HEADS][];
        float[] expected = reference(keys, values, size, headDim, chunk, positions, queries, probs);
        float[] serial = new float[queries.length];
        RecordingObserver seen = new RecordingObserver();
        paged.attend(
            chunk, positions, HEADS, queries, SCALE, serial, seen, null, AttentionOrder.LLAMA_CPP);
        assertThat(serial).as("size %d", size).isEqualTo(expected);
        for (int r = 0; r < probs.length; r++) {
          assertThat(seen.rows.get(r)).isEqualTo(probs[r]);
        }
        float[] pooled = new float[queries.length];
        paged.attend(
            chunk, positions, HEADS, queries, SCALE, pooled, null, pool, AttentionOrder.LLAMA_CPP);
        assertThat(pooled).isEqualTo(expected);
      }
    }
    assertThat(size).isEqualTo(130);
  }

  /** ggml's graph over the cells {@code [0, pad32(size))}; {@code probs} gets each row's p. */
  static float[] reference(
      float[][] keys,
      float[][] values,
      int size,
      int headDim,
      int n,
      int[] positions,
      float[] queries,
      float[][] probs) {
    int cells = (size + 31) & ~31;
    int group = HEADS / KV_HEADS;
    float[] out = new float[n * HEADS * headDim];
    float[] scratch = new float[64];
    for (int i = 0; i < n; i++) {
      for (int h = 0; h < HEADS; h++) {
        int g = h / group;
        int q = (i * HEADS + h) * headDim;
        float[] w = new float[cells];
        for (int k = 0; k < cells; k++) {
          float kq =
              k < size ? LlamaCppMath.dot(queries, q, keys[g], k * headDim, headDim, scratch) : 0f;
          w[k] = kq * SCALE + (k < size && k <= positions[i] ? 0f : Float.NEGATIVE_INFINITY);
        }
        float max = Float.NEGATIVE_INFINITY;
        for (float x : w) {
          max = Math.max(max, x);
        }
        double sum = 0;
        for (int k = 0; k < cells; k += 16) {
          for (int l = 0; l < 16; l++) {
            w[k + l] = LlamaCppMath.exp(w[k + l] - max);
          }
          sum += LlamaCppMath.sum16(w, k);
        }
        float inverse = (float) (1.0 / sum);
        for (int k = 0; k < cells; k++) {
          w[k] *= inverse;
        }
        probs[i * HEADS + h] = Arrays.copyOf(w, size);
        for (int d = 0; d < headDim; d++) {
          float[] column = new float[cells]; // V transposed; cells past the cache are 0
          for (int k = 0; k < size; k++) {
            column[k] = values[g][k * headDim + d];
          }
          float result;
          if (n >= 2) { // tinyBLAS
            float[] lanes = new float[16];
            for (int k = 0; k < cells; k++) {
              lanes[k % 16] = Math.fma(column[k], w[k], lanes[k % 16]);
            }
            result = LlamaCppMath.sum16(lanes, 0);
          } else {
            result = LlamaCppMath.dot(column, 0, w, 0, cells, scratch);
          }
          out[q + d] = result;
        }
      }
    }
    return out;
  }

  @ParameterizedTest(name = "{0}")
  @ValueSource(strings = {"q8_0", "f16"})
  void otherFormatsKeepTheirOwnOrder(String format) {
    Random random = new Random(4);
    int headDim = 64;
    PagedLayerKv paged =
        PagedKvCache.create(
                1, KV_HEADS, headDim, KvCacheFormat.of(KvFormats.byName(format), KvFormats.F32))
            .layer(0);
    int n = 40;
    paged.append(
        n,
        range(0, n),
        gaussian(random, n * KV_HEADS * headDim),
        gaussian(random, n * KV_HEADS * headDim));
    float[] queries = gaussian(random, n * HEADS * headDim);
    float[] own = new float[queries.length];
    float[] llamaCpp = new float[queries.length];
    paged.attend(n, range(0, n), HEADS, queries, SCALE, own, null);
    paged.attend(
        n, range(0, n), HEADS, queries, SCALE, llamaCpp, null, null, AttentionOrder.LLAMA_CPP);
    assertThat(llamaCpp).isEqualTo(own);
  }
}
