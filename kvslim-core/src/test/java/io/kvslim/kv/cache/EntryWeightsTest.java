package io.kvslim.kv.cache;

import static io.kvslim.kv.KvTestData.gaussian;
import static io.kvslim.kv.KvTestData.range;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import io.kvslim.kv.AttentionOrder;
import io.kvslim.kv.format.KvFormat;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvBlock;
import io.kvslim.kv.store.KvCacheFormat;
import java.util.BitSet;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Per-entry merge weights in the paged store (METHODS.md M1 {@code w}, M2): a merged entry of
 * weight w attends as w copies (logit + ln w) in every format's fused kernels and in both attention
 * orders, its row is rewritten in the block's format, and its weight costs bytes only while some
 * entry is not 1.
 */
class EntryWeightsTest {
  static final int KV_HEADS = 2;
  static final int HEADS = 4;
  static final int HEAD_DIM = 64;
  static final float SCALE = 1f / (float) Math.sqrt(HEAD_DIM);
  static final int N = 40;

  static KvCacheFormat format(String name) {
    // kivi: 2-bit keys per channel over groups of 32 tokens (a token-group format: a merge
    // re-encodes the block), 2-bit values, a residual window of 32
    return name.equals("kivi")
        ? KvCacheFormat.kivi(2, 2, 32, 32)
        : KvCacheFormat.of(KvFormats.byName(name));
  }

  /** Keys and values of N tokens in which token 27 repeats token 11 in every head. */
  static float[][] withDuplicate(long seed) {
    Random random = new Random(seed);
    float[] keys = gaussian(random, N * KV_HEADS * HEAD_DIM);
    float[] values = gaussian(random, N * KV_HEADS * HEAD_DIM);
    int row = KV_HEADS * HEAD_DIM;
    System.arraycopy(keys, 11 * row, keys, 27 * row, row);
    System.arraycopy(values, 11 * row, values, 27 * row, row);
    return new float[][] {keys, values};
  }

  /** Token 27 merged into token 11 (same row) with weight 2, in every head. */
  static void mergeDuplicate(PagedLayerKv layer) {
    float[] k = new float[HEAD_DIM];
    float[] v = new float[HEAD_DIM];
    for (int g = 0; g < KV_HEADS; g++) {
      layer.head(g).readKey(11, k);
      layer.head(g).readValue(11, v);
      BitSet drop = new BitSet();
      drop.set(27);
      layer.merge(g, new int[] {11}, 1, k, v, new float[] {2f}, drop);
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"f32", "q8_0", "q4_0", "f16", "kivi"})
  void twoIdenticalTokensAttendAsOneEntryOfWeightTwo(String name) {
    float[][] kv = withDuplicate(3);
    KvCacheFormat f = format(name);
    PagedLayerKv both = PagedKvCache.create(1, KV_HEADS, HEAD_DIM, f).layer(0);
    both.append(N, range(0, N), kv[0], kv[1]);
    both.flushResidual(); // as a merge does first (kivi: quantizes what left the window)
    PagedLayerKv merged = PagedKvCache.create(1, KV_HEADS, HEAD_DIM, f).layer(0);
    merged.append(N, range(0, N), kv[0], kv[1]);
    mergeDuplicate(merged);
    assertThat(merged.size(0)).isEqualTo(N - 1);
    assertThat(merged.head(0).weights().weight(11)).isEqualTo(2f);
    float[] q = gaussian(new Random(4), 3 * HEADS * HEAD_DIM);
    int[] at = {N, N + 1, 30};
    float[] a = new float[q.length];
    float[] b = new float[q.length];
    float[] c = new float[q.length];
    both.attend(3, at, HEADS, q, SCALE, a, null);
    merged.attend(3, at, HEADS, q, SCALE, b, null);
    merged.attend(3, at, HEADS, q, SCALE, c, null, null, AttentionOrder.LLAMA_CPP);
    for (int i = 0; i < a.length; i++) {
      assertThat(b[i]).as("%s output %d", name, i).isCloseTo(a[i], within(2e-5f));
    }
    assertThat(c).as("weighted heads read in the cache's own order").isEqualTo(b);
    // the fused kernels against a scalar reference of z + ln w over the decoded store (f16 values
    // take probabilities rounded to F16, as llama.cpp's vec_dot_type: 2^-11 relative)
    double tol = name.equals("f16") ? 1e-3 : 2e-5;
    for (int t = 0; t < at.length; t++) {
      for (int h = 0; h < HEADS; h++) {
        double[] want =
            reference(merged.head(h / (HEADS / KV_HEADS)), q, (t * HEADS + h) * HEAD_DIM, at[t]);
        for (int j = 0; j < HEAD_DIM; j++) {
          assertThat((double) b[(t * HEADS + h) * HEAD_DIM + j])
              .as("%s query %d head %d dim %d", name, t, h, j)
              .isCloseTo(want[j], within(tol));
        }
      }
    }
    // and weight 2 is not the same as weight 1 (dropping the copy)
    PagedLayerKv dropped = PagedKvCache.create(1, KV_HEADS, HEAD_DIM, f).layer(0);
    dropped.append(N, range(0, N), kv[0], kv[1]);
    dropped.flushResidual();
    for (int g = 0; g < KV_HEADS; g++) {
      BitSet drop = new BitSet();
      drop.set(27);
      dropped.evict(g, drop);
    }
    float[] d = new float[q.length];
    dropped.attend(3, at, HEADS, q, SCALE, d, null);
    assertThat(d).isNotEqualTo(b);
  }

  @ParameterizedTest
  @ValueSource(strings = {"f32", "q8_0"})
  void manyTilesOnThreadsAddTheWeightsToo(String name) {
    float[][] kv = withDuplicate(8);
    KvCacheFormat f = format(name);
    PagedLayerKv both = PagedKvCache.create(1, KV_HEADS, HEAD_DIM, f).layer(0);
    both.append(N, range(0, N), kv[0], kv[1]);
    PagedLayerKv merged = PagedKvCache.create(1, KV_HEADS, HEAD_DIM, f).layer(0);
    merged.append(N, range(0, N), kv[0], kv[1]);
    mergeDuplicate(merged);
    int rows = 2 * PagedLayerKv.TILE_ROWS + 3; // several tiles per KV head
    float[] q = gaussian(new Random(9), rows * HEADS * HEAD_DIM);
    int[] at = range(N, rows);
    float[] a = new float[q.length];
    float[] b = new float[q.length];
    float[] serial = new float[q.length];
    try (io.kvslim.tensor.Parallel pool = new io.kvslim.tensor.Parallel(3)) {
      both.attend(rows, at, HEADS, q, SCALE, a, null, pool);
      merged.attend(rows, at, HEADS, q, SCALE, b, null, pool);
    }
    merged.attend(rows, at, HEADS, q, SCALE, serial, null);
    assertThat(b).isEqualTo(serial);
    for (int i = 0; i < a.length; i++) {
      assertThat(b[i]).as("%s output %d", name, i).isCloseTo(a[i], within(2e-5f));
    }
  }

  /**
   * Attention of one query over a head, from the format's scalar references: {@code z_i =
   * dotsReference · scale + ln w_i} for the entries at or before {@code position}, softmax in
   * double, values decoded.
   */
  static double[] reference(HeadStore head, float[] q, int qOff, int position) {
    int n = head.size();
    double[] z = new double[n];
    float[][] rows = new float[n][HEAD_DIM];
    int i = 0;
    float[] qq = new float[HEAD_DIM];
    System.arraycopy(q, qOff, qq, 0, HEAD_DIM);
    for (KvBlock b : head.blocks()) {
      float[] s = new float[b.capacity()];
      KvFormat kf = b.keyFormat();
      kf.dotsReference(b.keys(), b.filled(), b.capacity(), HEAD_DIM, qq, 0, s);
      for (int slot = 0; slot < b.filled(); slot++) {
        if (!b.isLive(slot)) {
          continue;
        }
        z[i] =
            b.position(slot) > position
                ? Double.NEGATIVE_INFINITY
                : (double) (s[slot] * SCALE) + Math.log(head.weights().weight(i));
        b.decodeValue(slot, rows[i], 0);
        i++;
      }
    }
    double max = Double.NEGATIVE_INFINITY;
    for (double x : z) {
      max = Math.max(max, x);
    }
    double sum = 0;
    double[] out = new double[HEAD_DIM];
    for (int t = 0; t < n; t++) {
      double e = Math.exp(z[t] - max);
      sum += e;
      for (int j = 0; j < HEAD_DIM; j++) {
        out[j] += e * rows[t][j];
      }
    }
    for (int j = 0; j < HEAD_DIM; j++) {
      out[j] /= sum;
    }
    return out;
  }

  @ParameterizedTest
  @ValueSource(strings = {"f32", "q8_0"})
  void aMergeRewritesTheRowInItsFormatAndKeepsPositionsAndOtherRows(String name) {
    Random random = new Random(5);
    KvCacheFormat f = format(name);
    PagedLayerKv layer = PagedKvCache.create(1, KV_HEADS, HEAD_DIM, f).layer(0);
    float[] keys = gaussian(random, N * KV_HEADS * HEAD_DIM);
    float[] values = gaussian(random, N * KV_HEADS * HEAD_DIM);
    layer.append(N, range(0, N), keys, values);
    HeadStore head = layer.head(1);
    float[] before = new float[N * HEAD_DIM];
    head.readKeys(before);
    float[] k = gaussian(random, HEAD_DIM);
    float[] v = gaussian(random, HEAD_DIM);
    BitSet drop = new BitSet();
    drop.set(3, 6);
    layer.merge(1, new int[] {8}, 1, k, v, new float[] {4f}, drop);
    assertThat(layer.positions(1)).hasSize(N - 3).contains(8).doesNotContain(3, 4, 5);
    float[] after = new float[(N - 3) * HEAD_DIM];
    head.readKeys(after);
    // the merged entry is now index 5; its key decodes to the written key (up to the format)
    double tol = name.equals("f32") ? 0 : 0.05;
    for (int j = 0; j < HEAD_DIM; j++) {
      assertThat((double) after[5 * HEAD_DIM + j]).isCloseTo(k[j], within(tol));
    }
    for (int t = 0; t < N - 3; t++) {
      int old = t < 3 ? t : t + 3;
      if (t != 5) {
        for (int j = 0; j < HEAD_DIM; j++) {
          assertThat(after[t * HEAD_DIM + j]).isEqualTo(before[old * HEAD_DIM + j]);
        }
      }
    }
    assertThat(head.weights().weight(5)).isEqualTo(4f);
    assertThat(head.weights().lnWeight(5)).isEqualTo((float) Math.log(4));
    assertThat(head.weights().weight(6)).isEqualTo(1f);
    assertThat(layer.head(0).weights().any()).isFalse();
  }

  @ParameterizedTest
  @ValueSource(strings = {"f32", "q4_0"})
  void weightsCostBytesOnlyWhileSomeEntryIsNotOne(String name) {
    Random random = new Random(6);
    PagedKvCache cache = PagedKvCache.create(1, KV_HEADS, HEAD_DIM, format(name));
    PagedLayerKv layer = cache.layer(0);
    layer.append(
        N,
        range(0, N),
        gaussian(random, N * KV_HEADS * HEAD_DIM),
        gaussian(random, N * KV_HEADS * HEAD_DIM));
    HeadStore head = layer.head(0);
    assertThat(head.weightBytes()).isZero();
    float[] k = gaussian(random, HEAD_DIM);
    layer.merge(0, new int[] {9}, 1, k, k, new float[] {3f}, new BitSet());
    assertThat(head.weightBytes()).isEqualTo(10L * 8); // entries 0..9, weight and ln w in F32
    assertThat(cache.pool().usedBytes()).isEqualTo(layer.bytes());
    long blocks = 0;
    for (KvBlock b : head.blocks()) {
      blocks += b.bytes();
    }
    assertThat(head.bytes()).isEqualTo(blocks + head.weightBytes());
    // evicting before the entry shifts it; appending after costs no weight bytes
    BitSet drop = new BitSet();
    drop.set(0, 4);
    layer.evict(0, drop);
    assertThat(head.weights().weight(5)).isEqualTo(3f);
    assertThat(head.weightBytes()).isEqualTo(6L * 8);
    layer.append(
        1,
        new int[] {N},
        gaussian(random, KV_HEADS * HEAD_DIM),
        gaussian(random, KV_HEADS * HEAD_DIM));
    assertThat(head.weightBytes()).isEqualTo(6L * 8);
    assertThat(cache.pool().usedBytes()).isEqualTo(layer.bytes());
    // evicting the weighted entry frees its bytes
    BitSet it = new BitSet();
    it.set(5);
    layer.evict(0, it);
    assertThat(head.weights().any()).isFalse();
    assertThat(head.weightBytes()).isZero();
    assertThat(cache.pool().usedBytes()).isEqualTo(layer.bytes());
    cache.close();
    assertThat(cache.pool().usedBytes()).isZero();
  }

  @ParameterizedTest
  @ValueSource(strings = {"f32"})
  void aMergeIntoAnEvictedTokenOrAZeroWeightIsRefusedAndChangesNothing(String name) {
    Random random = new Random(7);
    PagedLayerKv layer = PagedKvCache.create(1, KV_HEADS, HEAD_DIM, format(name)).layer(0);
    layer.append(
        N,
        range(0, N),
        gaussian(random, N * KV_HEADS * HEAD_DIM),
        gaussian(random, N * KV_HEADS * HEAD_DIM));
    float[] k = new float[HEAD_DIM];
    BitSet drop = new BitSet();
    drop.set(2);
    assertThatThrownBy(() -> layer.merge(0, new int[] {2}, 1, k, k, new float[] {2f}, drop))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("not a kept entry");
    assertThat(layer.size(0)).isEqualTo(N);
    assertThatThrownBy(() -> layer.merge(0, new int[] {4}, 1, k, k, new float[] {0f}, drop))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("positive");
  }
}
