package io.kvslim.kv;

import static io.kvslim.kv.KvTestData.gaussian;
import static io.kvslim.kv.KvTestData.range;
import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.kv.cache.PagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.format.KiviKeyFormat;
import io.kvslim.kv.format.KiviValueFormat;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvBlock;
import io.kvslim.kv.store.KvCacheFormat;
import java.util.Arrays;
import java.util.BitSet;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * KIVI (arXiv:2402.02750, METHODS.md Q3) in the paged cache: residual window, flushes, grouping.
 */
class KiviCacheTest {
  static final int KV_HEADS = 2;
  static final int HEADS = 4;
  static final int HEAD_DIM = 32;

  /** Live tokens whose keys are quantized (per channel). */
  static int quantizedKeys(HeadStore head) {
    int n = 0;
    for (KvBlock b : head.blocks()) {
      if (b.keyFormat() instanceof KiviKeyFormat) {
        n += b.liveCount();
      }
    }
    return n;
  }

  /** Tokens whose values are quantized (per token). */
  static int quantizedValues(HeadStore head) {
    int n = 0;
    for (KvBlock b : head.blocks()) {
      n += Math.min(b.split(), b.filled());
    }
    return n;
  }

  static float[] headRow(float[] rows, int token, int kvHead) {
    int at = (token * KV_HEADS + kvHead) * HEAD_DIM;
    return Arrays.copyOfRange(rows, at, at + HEAD_DIM);
  }

  @Test
  void keysFlushTheWholeResidualAtRAndValuesKeepExactlyTheLatestR() {
    int group = 4;
    int residual = 8;
    Random random = new Random(1);
    PagedLayerKv layer =
        PagedKvCache.create(1, KV_HEADS, HEAD_DIM, KvCacheFormat.kivi(2, 2, group, residual))
            .layer(0);
    int total = 40;
    float[] keys = gaussian(random, total * KV_HEADS * HEAD_DIM);
    float[] values = gaussian(random, total * KV_HEADS * HEAD_DIM);
    float[] row = new float[HEAD_DIM];
    for (int n = 1; n <= total; n++) {
      int at = (n - 1) * KV_HEADS * HEAD_DIM;
      layer.append(
          1,
          new int[] {n - 1},
          Arrays.copyOfRange(keys, at, at + KV_HEADS * HEAD_DIM),
          Arrays.copyOfRange(values, at, at + KV_HEADS * HEAD_DIM));
      layer.flushResidual(); // as the step's attention does when it ends
      // Q3: keys of the first n − (n mod R) tokens, values of the first n − R
      assertThat(quantizedKeys(layer.head(0))).as("keys after %d", n).isEqualTo(n - n % residual);
      assertThat(quantizedValues(layer.head(0)))
          .as("values after %d", n)
          .isEqualTo(Math.max(0, n - residual));
      for (int t = n - n % residual; t < n; t++) {
        layer.head(1).readKey(t, row);
        assertThat(row).isEqualTo(headRow(keys, t, 1));
      }
      for (int t = Math.max(0, n - residual); t < n; t++) {
        layer.head(1).readValue(t, row);
        assertThat(row).isEqualTo(headRow(values, t, 1));
      }
    }
    // the key residual is empty right after a flush: 40 = 5·8
    assertThat(quantizedKeys(layer.head(1))).isEqualTo(total);
  }

  @Test
  void aPrefillQuantizesKeysUpToAMultipleOfRAndValuesUpToTheLastR() {
    Random random = new Random(2);
    PagedLayerKv layer =
        PagedKvCache.create(1, KV_HEADS, HEAD_DIM, KvCacheFormat.kivi(2, 2, 32, 64)).layer(0);
    int n = 100;
    layer.append(
        n,
        range(0, n),
        gaussian(random, n * KV_HEADS * HEAD_DIM),
        gaussian(random, n * KV_HEADS * HEAD_DIM));
    // the prompt waits in the residual format until the step's attention has read it
    assertThat(quantizedKeys(layer.head(0))).isZero();
    assertThat(quantizedValues(layer.head(0))).isZero();
    layer.flushResidual();
    assertThat(quantizedKeys(layer.head(0))).isEqualTo(64); // 100 − 100 mod 64
    assertThat(quantizedValues(layer.head(0))).isEqualTo(36); // 100 − 64
    // blocks of R = 64 tokens (two key groups of 32 each): the values of the first 36 quantized
    assertThat(layer.head(0).blocks()).hasSize(2);
    assertThat(layer.head(0).blocks().get(0).split()).isEqualTo(36);
    assertThat(layer.size(0)).isEqualTo(n);
  }

  @Test
  void quantizedElementsStayWithinHalfAStepOfTheirGroup() {
    Random random = new Random(6);
    PagedLayerKv layer =
        PagedKvCache.create(1, KV_HEADS, HEAD_DIM, KvCacheFormat.kivi(2, 2, 32, 32)).layer(0);
    int n = 90;
    float[] keys = gaussian(random, n * KV_HEADS * HEAD_DIM);
    float[] values = gaussian(random, n * KV_HEADS * HEAD_DIM);
    layer.append(n, range(0, n), keys, values);
    layer.flushResidual();
    HeadStore head = layer.head(1);
    KiviKeyFormat kf = new KiviKeyFormat(2);
    KiviValueFormat vf = new KiviValueFormat(2, 32);
    float[] row = new float[HEAD_DIM];
    int token = 0;
    for (KvBlock b : head.blocks()) {
      for (int s = 0; s < b.filled(); s++, token++) {
        b.decodeKey(s, row, 0);
        float[] key = headRow(keys, token, 1);
        for (int c = 0; c < HEAD_DIM; c++) {
          float bound =
              b.keyFormat() instanceof KiviKeyFormat ? kf.channelScale(b.keys(), c) / 2 : 0f;
          assertThat(Math.abs(row[c] - key[c])).isLessThanOrEqualTo(bound * (1 + 1e-5f) + 1e-6f);
        }
        b.decodeValue(s, row, 0);
        float[] value = headRow(values, token, 1);
        for (int c = 0; c < HEAD_DIM; c++) {
          float bound = s < b.split() ? vf.groupScale(b.values(), s, HEAD_DIM, c / 32) / 2 : 0f;
          assertThat(Math.abs(row[c] - value[c])).isLessThanOrEqualTo(bound * (1 + 1e-5f) + 1e-6f);
        }
      }
    }
    assertThat(token).isEqualTo(n);
  }

  @Test
  void aResidualCoveringTheSequenceKeepsDecodeStepsBitIdentical() {
    Random random = new Random(7);
    int n = 48;
    PagedLayerKv kivi =
        PagedKvCache.create(1, KV_HEADS, HEAD_DIM, KvCacheFormat.kivi(2, 2, 16, 64)).layer(0);
    DenseLayerKv dense = new DenseLayerKv(KV_HEADS, HEAD_DIM);
    for (int t = 0; t < n; t++) {
      float[] k = gaussian(random, KV_HEADS * HEAD_DIM);
      float[] v = gaussian(random, KV_HEADS * HEAD_DIM);
      kivi.append(1, new int[] {t}, k, v);
      dense.append(1, new int[] {t}, k, v);
      float[] q = gaussian(random, HEADS * HEAD_DIM);
      float[] expected = new float[q.length];
      float[] actual = new float[q.length];
      dense.attend(1, new int[] {t}, HEADS, q, 0.2f, expected, null);
      kivi.attend(1, new int[] {t}, HEADS, q, 0.2f, actual, null);
      assertThat(actual).as("step %d", t).isEqualTo(expected);
    }
    assertThat(quantizedKeys(kivi.head(0))).isZero();
    assertThat(quantizedValues(kivi.head(0))).isZero();
  }

  @Test
  void aNeverEvictedCacheHoldsNoPositionBytesAndCountsEachPartExactly() {
    Random random = new Random(8);
    int n = 100;
    int residual = 64;
    PagedLayerKv layer =
        PagedKvCache.create(
                1,
                KV_HEADS,
                HEAD_DIM,
                KvCacheFormat.kivi(2, 2, 32, residual).withResidual(residual, KvFormats.F16))
            .layer(0);
    layer.append(
        n,
        range(0, n),
        gaussian(random, n * KV_HEADS * HEAD_DIM),
        gaussian(random, n * KV_HEADS * HEAD_DIM));
    layer.flushResidual();
    KiviKeyFormat kf = new KiviKeyFormat(2, 32);
    KiviValueFormat vf = new KiviValueFormat(2, 32);
    long f16Row = KvFormats.F16.blockBytes(1, HEAD_DIM);
    long vRow = vf.blockBytes(1, HEAD_DIM);
    // 2 blocks of 64 slots: keys 64 quantized (1 block, two groups) + 36 in f16 (64 slots);
    // values 36 quantized, the last 64 in f16, rows for every slot of each block
    assertThat(kf.blockBytes(64, HEAD_DIM))
        .isEqualTo(2 * new KiviKeyFormat(2).blockBytes(32, HEAD_DIM));
    long expected =
        2L * KvBlock.HEADER_BYTES
            + kf.blockBytes(64, HEAD_DIM)
            + 64 * f16Row
            + 36 * vRow
            + (2 * 64 - 36) * f16Row;
    assertThat(layer.bytes(0)).isEqualTo(expected);
    for (KvBlock b : layer.head(0).blocks()) {
      assertThat(b.positionBytes()).isZero();
      assertThat(b.bookkeepingBytes()).isEqualTo(KvBlock.HEADER_BYTES);
    }
    assertThat(layer.positions(0)).containsExactly(range(0, n));
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
    assertThat(quantizedKeys(kivi.head(0))).isZero();
  }

  @Test
  void aQ8ResidualFollowsTheSameFlushesInFewerBytes() {
    Random random = new Random(9);
    int n = 100;
    float[] keys = gaussian(random, n * KV_HEADS * HEAD_DIM);
    float[] values = gaussian(random, n * KV_HEADS * HEAD_DIM);
    KvCacheFormat f16 = KvCacheFormat.kivi(2, 2, 32, 64).withResidual(64, KvFormats.F16);
    KvCacheFormat q8 = KvCacheFormat.kivi(2, 2, 32, 64).withResidual(64, KvFormats.Q8_0);
    PagedLayerKv a = PagedKvCache.create(1, KV_HEADS, HEAD_DIM, f16).layer(0);
    PagedLayerKv b = PagedKvCache.create(1, KV_HEADS, HEAD_DIM, q8).layer(0);
    a.append(n, range(0, n), keys, values);
    b.append(n, range(0, n), keys, values);
    a.flushResidual();
    b.flushResidual();
    assertThat(quantizedKeys(b.head(0))).isEqualTo(quantizedKeys(a.head(0))).isEqualTo(64);
    assertThat(quantizedValues(b.head(0))).isEqualTo(quantizedValues(a.head(0))).isEqualTo(36);
    assertThat(b.head(0).blocks().get(1).keyFormat()).isSameAs(KvFormats.Q8_0);
    assertThat(b.head(0).blocks().get(0).residualValueFormat()).isSameAs(KvFormats.Q8_0);
    // 64 residual key slots and 92 residual value slots, each 32 + 2 bytes (q8_0) instead of 2·32
    assertThat(a.bytes(0) - b.bytes(0)).isEqualTo((64 + 92) * (2 * HEAD_DIM - 34));
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
    withOutlier.flushResidual();
    without.flushResidual();
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
    kivi.flushResidual();
    long bytes = kivi.bytes(0);
    BitSet one = new BitSet();
    one.set(3);
    kivi.evict(0, one);
    KvBlock first = kivi.head(0).blocks().get(0);
    assertThat(first.filled()).isEqualTo(32);
    assertThat(first.liveCount()).isEqualTo(31);
    assertThat(first.isLive(3)).isFalse();
    assertThat(kivi.bytes(0)).isEqualTo(bytes + 8); // the block's first death adds its live mask
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
