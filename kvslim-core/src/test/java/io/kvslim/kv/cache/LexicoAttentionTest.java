package io.kvslim.kv.cache;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.store.KvCacheFormat;
import java.util.BitSet;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Attention over a Lexico cache, whose values are summed by atom and multiplied by the dictionary
 * once per row ({@link io.kvslim.kv.format.KvFormat#accumulateCodes}), against the softmax in
 * double over the keys and values the cache decodes.
 */
class LexicoAttentionTest {
  static final int D = SplitAttentionTest.HEAD_DIM;

  @ParameterizedTest
  @ValueSource(ints = {0, 128})
  void attentionEqualsTheSoftmaxOverTheDecodedRows(int window) {
    KvCacheFormat format =
        KvCacheFormat.of(
            SplitAttentionTest.lexico(256, 8, 5), SplitAttentionTest.lexico(256, 8, 6));
    if (window > 0) {
      format = format.withResidual(window, KvFormats.F16);
    }
    int kvHeads = 2;
    int group = 2;
    int heads = kvHeads * group;
    Random random = new Random(9);
    PagedKvCache cache = PagedKvCache.create(1, kvHeads, D, format);
    PagedLayerKv layer = cache.layer(0);
    int tokens = 0;
    for (int chunk : new int[] {300, 399, 1}) {
      int[] positions = new int[chunk];
      for (int i = 0; i < chunk; i++) {
        positions[i] = tokens + i;
      }
      layer.append(
          chunk,
          positions,
          io.kvslim.kv.KvTestData.gaussian(random, chunk * kvHeads * D),
          io.kvslim.kv.KvTestData.gaussian(random, chunk * kvHeads * D));
      tokens += chunk;
    }
    layer.flushResidual();
    BitSet evicted = new BitSet();
    for (int t = 3; t < 500; t += 11) {
      evicted.set(t); // blocks with dead slots: the weights go by slot
    }
    layer.evict(1, evicted);
    float[] q = io.kvslim.kv.KvTestData.gaussian(random, heads * D);
    float[] out = new float[heads * D];
    float scale = 0.125f;
    layer.attend(1, new int[] {tokens}, heads, q, scale, out, null, null);
    for (int g = 0; g < kvHeads; g++) {
      var head = layer.store().head(g);
      int n = head.size();
      float[] k = new float[n * D];
      float[] v = new float[n * D];
      assertThat(head.readKeys(k)).isEqualTo(n);
      head.readValues(v);
      double largest = 0;
      for (float x : v) {
        largest = Math.max(largest, Math.abs(x));
      }
      for (int h = g * group; h < (g + 1) * group; h++) {
        double[] z = new double[n];
        double max = Double.NEGATIVE_INFINITY;
        for (int t = 0; t < n; t++) {
          double dot = 0;
          for (int i = 0; i < D; i++) {
            dot += (double) q[h * D + i] * k[t * D + i];
          }
          z[t] = dot * scale;
          max = Math.max(max, z[t]);
        }
        double sum = 0;
        for (int t = 0; t < n; t++) {
          z[t] = Math.exp(z[t] - max);
          sum += z[t];
        }
        for (int i = 0; i < D; i++) {
          double o = 0;
          for (int t = 0; t < n; t++) {
            o += z[t] / sum * v[t * D + i];
          }
          // F16 window values take f16-rounded probabilities (2^-11 relative each)
          double bound = (window > 0 ? 1e-3 : 1e-5) * largest;
          assertThat(Math.abs(out[h * D + i] - o))
              .as("window %d, head %d, channel %d", window, h, i)
              .isLessThan(bound);
        }
      }
    }
    cache.close();
  }

  /** The window's flush codes the heads on the pool's threads: the codes of a serial flush. */
  @Test
  void aParallelFlushCodesAsASerialOne() {
    KvCacheFormat format =
        KvCacheFormat.of(SplitAttentionTest.lexico(256, 8, 7), SplitAttentionTest.lexico(256, 8, 8))
            .withResidual(32, KvFormats.F16);
    int kvHeads = 3;
    float[][] keys = new float[2][];
    float[][] values = new float[2][];
    try (io.kvslim.tensor.Parallel pool = new io.kvslim.tensor.Parallel(2)) {
      for (int run = 0; run < 2; run++) {
        Random random = new Random(10);
        PagedKvCache cache = PagedKvCache.create(1, kvHeads, D, format);
        PagedLayerKv layer = cache.layer(0);
        int n = 200;
        int[] positions = new int[n];
        for (int i = 0; i < n; i++) {
          positions[i] = i;
        }
        layer.append(
            n,
            positions,
            io.kvslim.kv.KvTestData.gaussian(random, n * kvHeads * D),
            io.kvslim.kv.KvTestData.gaussian(random, n * kvHeads * D));
        float[] q = io.kvslim.kv.KvTestData.gaussian(random, kvHeads * D);
        layer.attend(
            1,
            new int[] {n},
            kvHeads,
            q,
            0.125f,
            new float[q.length],
            null,
            run == 0 ? null : pool); // then flushes the window: serially, then on the pool
        keys[run] = new float[kvHeads * n * D];
        values[run] = new float[kvHeads * n * D];
        for (int g = 0; g < kvHeads; g++) {
          float[] k = new float[n * D];
          float[] v = new float[n * D];
          layer.store().head(g).readKeys(k);
          layer.store().head(g).readValues(v);
          System.arraycopy(k, 0, keys[run], g * n * D, n * D);
          System.arraycopy(v, 0, values[run], g * n * D, n * D);
        }
        for (int g = 0; g < kvHeads; g++) { // coded beyond the window
          var first = layer.store().head(g).blocks().get(0);
          assertThat(first.keyFormat()).isSameAs(format.keys());
          assertThat(first.residualValueFormat()).isNull();
        }
        cache.close();
      }
    }
    assertThat(keys[1]).isEqualTo(keys[0]);
    assertThat(values[1]).isEqualTo(values[0]);
  }
}
