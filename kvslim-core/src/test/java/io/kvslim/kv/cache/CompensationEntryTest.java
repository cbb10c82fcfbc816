package io.kvslim.kv.cache;

import static io.kvslim.kv.KvTestData.gaussian;
import static io.kvslim.kv.KvTestData.range;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvCacheFormat;
import java.util.BitSet;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The weighted compensation entry (METHODS.md M2/M7, RazorAttention's compensation token): folded
 * tokens become one entry, the fp mean of their keys and values, that attention counts as |D|
 * copies; bytes are counted and go back to the pool.
 */
class CompensationEntryTest {
  static final int KV_HEADS = 2;
  static final int HEADS = 4;
  static final int HEAD_DIM = 32;
  static final float SCALE = 1f / (float) Math.sqrt(HEAD_DIM);

  static PagedKvCache cache() {
    return PagedKvCache.create(1, KV_HEADS, HEAD_DIM, KvCacheFormat.of(KvFormats.F32));
  }

  /** Rows {@code [i·kvHeads·d, ...)} of token i, head g. */
  static float[] row(float[] rows, int token, int g) {
    float[] out = new float[HEAD_DIM];
    System.arraycopy(rows, (token * KV_HEADS + g) * HEAD_DIM, out, 0, HEAD_DIM);
    return out;
  }

  @Test
  void aWeightedEntryAttendsAsThatManyIdenticalCopies() {
    Random random = new Random(7);
    int n = 12;
    float[] keys = gaussian(random, n * KV_HEADS * HEAD_DIM);
    float[] values = gaussian(random, n * KV_HEADS * HEAD_DIM);
    PagedLayerKv folded = cache().layer(0);
    folded.append(n, range(0, n), keys, values);
    BitSet drop = new BitSet();
    drop.set(2, 7); // five tokens: positions 2..6
    for (int g = 0; g < KV_HEADS; g++) {
      folded.fold(g, drop);
    }
    // the same head with the entry written out as five copies of the mean, where the tokens were
    int[] positions = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    float[] copyKeys = keys.clone();
    float[] copyValues = values.clone();
    for (int g = 0; g < KV_HEADS; g++) {
      HeadStore head = folded.head(g);
      for (int t = 2; t < 7; t++) {
        System.arraycopy(
            head.compensation().key(), 0, copyKeys, (t * KV_HEADS + g) * HEAD_DIM, HEAD_DIM);
        System.arraycopy(
            head.compensation().value(), 0, copyValues, (t * KV_HEADS + g) * HEAD_DIM, HEAD_DIM);
      }
    }
    PagedLayerKv copies = cache().layer(0);
    copies.append(n, positions, copyKeys, copyValues);
    float[] q = gaussian(random, 2 * HEADS * HEAD_DIM);
    int[] at = {12, 13};
    float[] a = new float[q.length];
    float[] b = new float[q.length];
    folded.attend(2, at, HEADS, q, SCALE, a, null);
    copies.attend(2, at, HEADS, q, SCALE, b, null);
    for (int i = 0; i < a.length; i++) {
      assertThat(a[i]).as("output %d", i).isCloseTo(b[i], within(2e-6f));
    }
    // and it is not the same as dropping them
    PagedLayerKv evicted = cache().layer(0);
    evicted.append(n, positions, keys, values);
    for (int g = 0; g < KV_HEADS; g++) {
      evicted.evict(g, drop);
    }
    float[] c = new float[q.length];
    evicted.attend(2, at, HEADS, q, SCALE, c, null);
    assertThat(c).isNotEqualTo(a);
  }

  @Test
  void theEntryIsTheFpMeanOfTheFoldedTokensAndFoldedPlusKeptIsN() {
    Random random = new Random(8);
    int n = 40;
    float[] keys = gaussian(random, n * KV_HEADS * HEAD_DIM);
    float[] values = gaussian(random, n * KV_HEADS * HEAD_DIM);
    PagedLayerKv layer = cache().layer(0);
    layer.append(n, range(0, n), keys, values);
    BitSet drop = new BitSet();
    drop.set(4, 30);
    layer.fold(1, drop);
    HeadStore head = layer.head(1);
    assertThat(head.compensation().weight() + head.size()).isEqualTo(n);
    assertThat(head.compensation().weight()).isEqualTo(26);
    assertThat(head.compensation().position()).isEqualTo(29);
    for (int j = 0; j < HEAD_DIM; j++) {
      double k = 0;
      double v = 0;
      for (int t = 4; t < 30; t++) {
        k += row(keys, t, 1)[j];
        v += row(values, t, 1)[j];
      }
      assertThat(head.compensation().key()[j]).isEqualTo((float) (k / 26));
      assertThat(head.compensation().value()[j]).isEqualTo((float) (v / 26));
    }
    assertThat(layer.head(0).hasCompensation()).isFalse();
    assertThat(layer.positions(1))
        .containsExactly(0, 1, 2, 3, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39);
    // folding more: the running mean of all 27, |D| + kept = N still
    BitSet one = new BitSet();
    one.set(4);
    layer.fold(1, one);
    assertThat(head.compensation().weight()).isEqualTo(27);
    assertThat(head.compensation().weight() + head.size()).isEqualTo(n);
    for (int j = 0; j < HEAD_DIM; j++) {
      double k = 0;
      for (int t = 4; t < 31; t++) {
        k += row(keys, t, 1)[j];
      }
      assertThat((double) head.compensation().key()[j]).isCloseTo(k / 27, within(1e-6));
    }
  }

  @Test
  void queriesBeforeTheFoldedPositionsDoNotSeeTheEntry() {
    Random random = new Random(9);
    int n = 10;
    float[] keys = gaussian(random, n * KV_HEADS * HEAD_DIM);
    float[] values = gaussian(random, n * KV_HEADS * HEAD_DIM);
    PagedLayerKv folded = cache().layer(0);
    folded.append(n, range(0, n), keys, values);
    BitSet drop = new BitSet();
    drop.set(5, 8); // positions 5..7
    folded.fold(0, drop);
    folded.fold(1, drop);
    PagedLayerKv evicted = cache().layer(0);
    evicted.append(n, range(0, n), keys, values);
    evicted.evict(0, drop);
    evicted.evict(1, drop);
    // a query at position 6 sees neither the entry nor the tokens after it
    float[] q = gaussian(random, HEADS * HEAD_DIM);
    float[] a = new float[q.length];
    float[] b = new float[q.length];
    folded.attend(1, new int[] {6}, HEADS, q, SCALE, a, null);
    evicted.attend(1, new int[] {6}, HEADS, q, SCALE, b, null);
    assertThat(a).isEqualTo(b);
  }

  @Test
  void theEntrysBytesAreCountedAndGoBackToThePool() {
    Random random = new Random(10);
    PagedKvCache cache = cache();
    PagedLayerKv layer = cache.layer(0);
    int n = 64;
    layer.append(
        n,
        range(0, n),
        gaussian(random, n * KV_HEADS * HEAD_DIM),
        gaussian(random, n * KV_HEADS * HEAD_DIM));
    long before = cache.pool().usedBytes();
    BitSet drop = new BitSet();
    drop.set(4, 60);
    layer.fold(0, drop);
    HeadStore head = layer.head(0);
    long blocks = 0;
    for (var b : head.blocks()) {
      blocks += b.bytes();
    }
    assertThat(head.compensationBytes()).isEqualTo(2L * HEAD_DIM * 4 + 8);
    assertThat(head.bytes()).isEqualTo(blocks + head.compensationBytes());
    assertThat(cache.pool().usedBytes()).isEqualTo(layer.bytes()).isLessThan(before);
    cache.close();
    assertThat(cache.pool().usedBytes()).isZero();
  }
}
