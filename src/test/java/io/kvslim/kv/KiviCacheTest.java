package io.kvslim.kv;

import static io.kvslim.kv.KvTestData.gaussian;
import static io.kvslim.kv.KvTestData.range;
import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.kv.quant.KiviKeyFormat;
import io.kvslim.kv.quant.KvFormats;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvBlock;
import io.kvslim.kv.store.KvCacheFormat;
import java.util.BitSet;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** KIVI (arXiv:2402.02750) in the paged cache: residual window, flush boundaries, grouping. */
class KiviCacheTest {
  static final int KV_HEADS = 2;
  static final int HEADS = 4;
  static final int HEAD_DIM = 32;

  static int quantizedTokens(HeadStore head) {
    int n = 0;
    for (KvBlock b : head.blocks()) {
      if (b.keyFormat() instanceof KiviKeyFormat) {
        n += b.liveCount();
      }
    }
    return n;
  }

  @Test
  void residualFlushesAGroupOnceGroupTokensPassTheWindow() {
    int group = 4;
    int residual = 8;
    Random random = new Random(1);
    PagedLayerKv layer =
        PagedKvCache.create(1, KV_HEADS, HEAD_DIM, KvCacheFormat.kivi(2, 2, group, residual))
            .layer(0);
    float[][] keys = new float[40][];
    for (int n = 1; n <= 40; n++) {
      keys[n - 1] = gaussian(random, KV_HEADS * HEAD_DIM);
      layer.append(1, new int[] {n - 1}, keys[n - 1], gaussian(random, KV_HEADS * HEAD_DIM));
      int expected = Math.max(0, (n - residual) / group) * group;
      assertThat(quantizedTokens(layer.head(0))).as("after %d tokens", n).isEqualTo(expected);
      // The newest `residual` tokens are always exact.
      float[] row = new float[HEAD_DIM];
      for (int t = Math.max(0, n - residual); t < n; t++) {
        layer.head(1).readKey(t, row);
        assertThat(row).isEqualTo(java.util.Arrays.copyOfRange(keys[t], HEAD_DIM, 2 * HEAD_DIM));
      }
    }
    // Boundary: 8 + 4 − 1 tokens keep everything in full precision, the 12th flushes one group.
    assertThat(Math.max(0, (11 - residual) / group)).isZero();
    assertThat((12 - residual) / group).isOne();
  }

  @Test
  void aPrefillFlushesEveryGroupBeyondTheWindowAtOnce() {
    Random random = new Random(2);
    PagedLayerKv layer =
        PagedKvCache.create(1, KV_HEADS, HEAD_DIM, KvCacheFormat.kivi(2, 2, 32, 32)).layer(0);
    int n = 100;
    layer.append(
        n,
        range(0, n),
        gaussian(random, n * KV_HEADS * HEAD_DIM),
        gaussian(random, n * KV_HEADS * HEAD_DIM));
    assertThat(quantizedTokens(layer.head(0))).isEqualTo(64);
    assertThat(layer.head(0).blocks()).hasSize(4);
    assertThat(layer.size(0)).isEqualTo(n);
  }

  @Test
  void aWindowCoveringTheSequenceIsBitIdenticalToTheDenseCache() {
    Random random = new Random(3);
    int n = 50;
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
    assertThat(quantizedTokens(kivi.head(0))).isZero();
  }

  @Test
  void aKeyChannelOutlierOnlyGrowsItsOwnChannelScale() {
    Random random = new Random(4);
    int n = 32;
    float[] keys = gaussian(random, n * KV_HEADS * HEAD_DIM);
    float[] plain = keys.clone();
    for (int t = 0; t < n; t++) {
      keys[(t * KV_HEADS) * HEAD_DIM + 5] *= 100; // head 0, channel 5
    }
    float[] values = gaussian(random, n * KV_HEADS * HEAD_DIM);
    KvCacheFormat format = KvCacheFormat.kivi(2, 2, 32, 0);
    PagedLayerKv withOutlier = PagedKvCache.create(1, KV_HEADS, HEAD_DIM, format).layer(0);
    PagedLayerKv without = PagedKvCache.create(1, KV_HEADS, HEAD_DIM, format).layer(0);
    withOutlier.append(n, range(0, n), keys, values);
    without.append(n, range(0, n), plain, values);
    KvBlock a = withOutlier.head(0).blocks().get(0);
    KvBlock b = without.head(0).blocks().get(0);
    KiviKeyFormat kf = (KiviKeyFormat) a.keyFormat();
    for (int c = 0; c < HEAD_DIM; c++) {
      float scaleWith = kf.channelScale(a.keys(), c);
      float scaleWithout = kf.channelScale(b.keys(), c);
      if (c == 5) {
        assertThat(scaleWith).isGreaterThan(50 * scaleWithout);
      } else {
        assertThat(scaleWith).isEqualTo(scaleWithout);
      }
    }
  }

  @Test
  void evictionInAPerChannelBlockKeepsALiveMaskAndSkipsTheDeadToken() {
    Random random = new Random(5);
    int n = 40;
    PagedLayerKv kivi =
        PagedKvCache.create(1, KV_HEADS, HEAD_DIM, KvCacheFormat.kivi(4, 4, 32, 0)).layer(0);
    kivi.append(
        n,
        range(0, n),
        gaussian(random, n * KV_HEADS * HEAD_DIM),
        gaussian(random, n * KV_HEADS * HEAD_DIM));
    long bytes = kivi.bytes(0);
    BitSet one = new BitSet();
    one.set(3);
    kivi.evict(0, one);
    KvBlock first = kivi.head(0).blocks().get(0);
    assertThat(first.filled()).isEqualTo(32);
    assertThat(first.liveCount()).isEqualTo(31);
    assertThat(first.isLive(3)).isFalse();
    assertThat(kivi.bytes(0)).isEqualTo(bytes);
    assertThat(kivi.positions(0)).doesNotContain(3).hasSize(n - 1);
    KvTestData.RecordingObserver seen = new KvTestData.RecordingObserver();
    float[] q = gaussian(random, HEADS * HEAD_DIM);
    kivi.attend(1, new int[] {n}, HEADS, q, 0.2f, new float[q.length], seen);
    assertThat(seen.rows.get(0)).hasSize(n - 1);
    // Converting re-encodes only the live tokens.
    kivi.store().convertBlock(0, 0, KvFormats.F16, KvFormats.F16);
    assertThat(kivi.head(0).blocks().get(0).filled()).isEqualTo(31);
  }
}
