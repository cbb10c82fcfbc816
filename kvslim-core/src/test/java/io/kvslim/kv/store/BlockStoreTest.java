package io.kvslim.kv.store;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.kv.cache.PagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.format.KvFormats;
import java.util.BitSet;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** Byte accounting, memory release, compaction and the pool limit. */
class BlockStoreTest {
  static final int KV_HEADS = 4;
  static final int HEAD_DIM = 64;

  static float[] rows(Random random, int tokens) {
    float[] x = new float[tokens * KV_HEADS * HEAD_DIM];
    for (int i = 0; i < x.length; i++) {
      x[i] = (float) random.nextGaussian();
    }
    return x;
  }

  static int[] positions(int from, int count) {
    int[] p = new int[count];
    for (int i = 0; i < count; i++) {
      p[i] = from + i;
    }
    return p;
  }

  static long sumOverBlocks(PagedLayerKv layer, int kvHead) {
    long sum = 0;
    for (KvBlock b : layer.head(kvHead).blocks()) {
      sum += b.bytes();
    }
    return sum;
  }

  static void assertBytesEqualSumOverBlocks(PagedKvCache cache) {
    long total = 0;
    for (int l = 0; l < cache.layerCount(); l++) {
      long layerTotal = 0;
      for (int g = 0; g < KV_HEADS; g++) {
        assertThat(cache.layer(l).bytes(g)).isEqualTo(sumOverBlocks(cache.layer(l), g));
        layerTotal += sumOverBlocks(cache.layer(l), g);
      }
      assertThat(cache.layer(l).bytes()).isEqualTo(layerTotal);
      total += layerTotal;
    }
    assertThat(cache.bytes()).isEqualTo(total);
  }

  @Test
  void appendBytesOfARunEqualsAppendBytesOfItsPositionsInEveryState() {
    Random random = new Random(5);
    for (KvCacheFormat format :
        new KvCacheFormat[] {
          KvCacheFormat.of(KvFormats.F32),
          KvCacheFormat.kivi(2, 2, 32, 128),
          KvCacheFormat.kivi(2, 2, 32, 0)
        }) {
      LayerStore store = new LayerStore(new BlockPool(), KV_HEADS, HEAD_DIM, format);
      int next = 0;
      for (int step = 0; step < 40; step++) {
        for (int n : new int[] {1, 2, 31, 32, 33}) {
          for (int first : new int[] {next, next + 5}) {
            HeadStore head = store.head(0);
            assertThat(head.appendBytes(n, first))
                .as("%s, %d tokens held, %d from %d", format, head.size(), n, first)
                .isEqualTo(head.appendBytes(n, positions(first, n), 0));
          }
        }
        int n = 1 + random.nextInt(step % 7 == 0 ? 40 : 3);
        store.append(n, positions(next, n), rows(random, n), rows(random, n));
        next += n;
        if (step % 9 == 4 && store.head(0).size() > 4) {
          BitSet gone = new BitSet();
          gone.set(1);
          gone.set(store.head(0).size() - 1);
          store.evict(0, gone);
        }
      }
      store.release();
    }
  }

  @Test
  void bytesEqualTheSumOverBlocksAndCloseReturnsToTheBaseline() {
    Random random = new Random(1);
    BlockPool pool = new BlockPool();
    PagedKvCache other =
        new PagedKvCache(pool, 1, KV_HEADS, HEAD_DIM, KvCacheFormat.of(KvFormats.F16));
    other.layer(0).append(5, positions(0, 5), rows(random, 5), rows(random, 5));
    long baseline = pool.usedBytes();
    assertThat(baseline).isPositive();

    PagedKvCache cache =
        new PagedKvCache(
            pool, 2, KV_HEADS, HEAD_DIM, KvCacheFormat.of(KvFormats.Q8_0, KvFormats.Q4_0));
    for (int l = 0; l < 2; l++) {
      cache.layer(l).append(70, positions(0, 70), rows(random, 70), rows(random, 70));
    }
    assertBytesEqualSumOverBlocks(cache);
    // 70 tokens → 3 blocks of 32 per head and layer.
    long block = KvBlock.bytesFor(32, HEAD_DIM, KvFormats.Q8_0, KvFormats.Q4_0);
    assertThat(cache.bytes()).isEqualTo(2L * KV_HEADS * 3 * block);
    assertThat(pool.usedBytes()).isEqualTo(baseline + cache.bytes());

    BitSet some = new BitSet();
    some.set(3, 40);
    cache.layer(1).evict(2, some);
    assertBytesEqualSumOverBlocks(cache);
    assertThat(pool.usedBytes()).isEqualTo(baseline + cache.bytes());

    cache.close();
    assertThat(cache.bytes()).isZero();
    assertThat(pool.usedBytes()).isEqualTo(baseline);
    other.close();
    assertThat(pool.usedBytes()).isZero();
  }

  @Test
  void headsWithDifferentLengthsHoldDifferentBytes() {
    Random random = new Random(2);
    PagedKvCache cache =
        PagedKvCache.create(1, KV_HEADS, HEAD_DIM, KvCacheFormat.of(KvFormats.F16));
    PagedLayerKv layer = cache.layer(0);
    layer.append(128, positions(0, 128), rows(random, 128), rows(random, 128));
    for (int g = 1; g < KV_HEADS; g++) {
      BitSet drop = new BitSet();
      drop.set(0, 32 * g); // head g keeps 128 − 32g tokens
      layer.evict(g, drop);
    }
    long block = KvBlock.bytesFor(32, HEAD_DIM, KvFormats.F16, KvFormats.F16);
    for (int g = 0; g < KV_HEADS; g++) {
      assertThat(layer.size(g)).isEqualTo(128 - 32 * g);
      assertThat(layer.bytes(g)).isEqualTo((4 - g) * block);
    }
    assertThat(cache.pool().usedBytes()).isEqualTo(cache.bytes());
  }

  @Test
  void evictingScatteredTokensCompactsPerTokenBlocksAndFreesMemory() {
    Random random = new Random(3);
    PagedKvCache cache =
        PagedKvCache.create(1, KV_HEADS, HEAD_DIM, KvCacheFormat.of(KvFormats.Q4_0));
    PagedLayerKv layer = cache.layer(0);
    layer.append(96, positions(0, 96), rows(random, 96), rows(random, 96));
    float[] before = new float[HEAD_DIM];
    layer.head(0).readKey(94, before);
    BitSet odd = new BitSet();
    for (int t = 1; t < 96; t += 2) {
      odd.set(t);
    }
    layer.evict(0, odd);
    assertThat(layer.head(0).blocks()).hasSize(2);
    assertThat(layer.head(0).blocks().get(0).filled()).isEqualTo(32);
    assertThat(layer.head(0).blocks().get(1).filled()).isEqualTo(16);
    assertThat(layer.head(0).blocks().get(1).capacity()).isEqualTo(16); // cut to its tokens
    // 48 rows, two headers, and the even positions as bitmaps: 63 and 31 bits
    long row = KvFormats.Q4_0.blockBytes(1, HEAD_DIM);
    assertThat(layer.bytes(0)).isEqualTo(2 * KvBlock.HEADER_BYTES + 48 * 2 * row + 8 + 4);
    assertThat(layer.bytes(1))
        .isEqualTo(3 * KvBlock.bytesFor(32, HEAD_DIM, KvFormats.Q4_0, KvFormats.Q4_0));
    int[] expected = new int[48];
    for (int i = 0; i < 48; i++) {
      expected[i] = 2 * i;
    }
    assertThat(layer.positions(0)).containsExactly(expected);
    float[] after = new float[HEAD_DIM];
    layer.head(0).readKey(47, after); // token 94's row, moved without requantizing
    assertThat(after).isEqualTo(before);
    assertThat(cache.pool().usedBytes()).isEqualTo(cache.bytes());
    // Appends continue after the compacted tail.
    layer.append(20, positions(96, 20), rows(random, 20), rows(random, 20));
    assertThat(layer.head(0).blocks()).hasSize(3);
    assertThat(layer.size(0)).isEqualTo(68);
  }

  @Test
  void theLimitRefusesAnAppendCleanly() {
    Random random = new Random(4);
    KvCacheFormat format = KvCacheFormat.of(KvFormats.F16);
    long block = KvBlock.bytesFor(32, HEAD_DIM, KvFormats.F16, KvFormats.F16);
    BlockPool pool = new BlockPool(KV_HEADS * 2 * block + block / 2);
    PagedKvCache cache = new PagedKvCache(pool, 1, KV_HEADS, HEAD_DIM, format);
    PagedLayerKv layer = cache.layer(0);
    layer.append(40, positions(0, 40), rows(random, 40), rows(random, 40));
    long used = pool.usedBytes();
    float[] query = rows(random, 1);
    float[] out = new float[query.length];
    layer.attend(1, new int[] {40}, KV_HEADS, query, 0.125f, out, null);

    // 30 more tokens need a third block per head: refused, and nothing changes.
    assertThatThrownBy(
            () -> layer.append(30, positions(40, 30), rows(random, 30), rows(random, 30)))
        .isInstanceOf(KvMemoryExhaustedException.class)
        .hasMessageContaining("limit");
    assertThat(pool.usedBytes()).isEqualTo(used);
    assertThat(cache.bytes()).isEqualTo(used);
    for (int g = 0; g < KV_HEADS; g++) {
      assertThat(layer.size(g)).isEqualTo(40);
    }
    float[] again = new float[query.length];
    layer.attend(1, new int[] {40}, KV_HEADS, query, 0.125f, again, null);
    assertThat(again).isEqualTo(out);

    // What still fits in the partly filled blocks is accepted.
    layer.append(24, positions(40, 24), rows(random, 24), rows(random, 24));
    assertThat(pool.usedBytes()).isEqualTo(used);
    assertThat(layer.size(0)).isEqualTo(64);
  }

  @Test
  void anEvictionWhoseMaskDoesNotFitChangesNothing() {
    Random random = new Random(6);
    KvCacheFormat kivi = KvCacheFormat.kivi(2, 2, 32, 0);
    BlockPool pool = new BlockPool(1 << 20);
    PagedKvCache cache = new PagedKvCache(pool, 1, KV_HEADS, HEAD_DIM, kivi);
    PagedLayerKv layer = cache.layer(0);
    layer.append(32, positions(0, 32), rows(random, 32), rows(random, 32));
    layer.flushResidual(); // as attention does after the step
    long others = pool.limitBytes() - pool.usedBytes(); // another sequence takes the rest
    pool.reserve(others);
    BitSet one = new BitSet();
    one.set(5);
    // per-channel keys cannot move rows: the dead slot needs a live mask, 8 bytes the pool lacks
    assertThatThrownBy(() -> layer.evict(0, one)).isInstanceOf(KvMemoryExhaustedException.class);
    assertThat(layer.size(0)).isEqualTo(32);
    assertThat(layer.head(0).blocks().get(0).isLive(5)).isTrue();
    assertThat(layer.head(0).blocks().get(0).bookkeepingBytes()).isEqualTo(KvBlock.HEADER_BYTES);
    assertThat(pool.usedBytes()).isEqualTo(cache.bytes() + others);
    // evicting a whole block frees it
    BitSet all = new BitSet();
    all.set(0, 32);
    layer.evict(1, all);
    assertThat(layer.head(1).blocks()).isEmpty();
    layer.evict(0, one);
    assertThat(layer.size(0)).isEqualTo(31);
    assertThat(pool.usedBytes()).isEqualTo(cache.bytes() + others);
  }

  @Test
  void positionsAfterEvictionAreExactAndCostOnlyWhereThereAreGaps() {
    Random random = new Random(7);
    PagedKvCache cache =
        PagedKvCache.create(1, KV_HEADS, HEAD_DIM, KvCacheFormat.of(KvFormats.F16));
    PagedLayerKv layer = cache.layer(0);
    layer.append(96, positions(0, 96), rows(random, 96), rows(random, 96));
    BitSet middle = new BitSet();
    middle.set(40, 50); // one gap, inside the second block once repacked
    layer.evict(0, middle);
    int[] expected = new int[86];
    for (int i = 0; i < 86; i++) {
      expected[i] = i < 40 ? i : i + 10;
    }
    assertThat(layer.positions(0)).containsExactly(expected);
    var blocks = layer.head(0).blocks();
    assertThat(blocks).hasSize(3);
    assertThat(blocks.get(0).positionBytes()).isZero();
    assertThat(blocks.get(1).positionBytes()).isEqualTo(4); // two runs
    assertThat(blocks.get(2).positionBytes()).isZero();
    assertThat(blocks.get(2).capacity()).isEqualTo(22);
    long row = KvFormats.F16.blockBytes(1, HEAD_DIM);
    assertThat(layer.bytes(0)).isEqualTo(3 * KvBlock.HEADER_BYTES + 86 * 2 * row + 4);
    // appends go on in a new block, and attention sees the original positions
    layer.append(5, positions(96, 5), rows(random, 5), rows(random, 5));
    assertThat(blocks).hasSize(4);
    assertThat(layer.positions(0)).endsWith(95, 96, 97, 98, 99, 100);
    assertThat(cache.pool().usedBytes()).isEqualTo(cache.bytes());
  }

  @Test
  void aConversionThatDoesNotFitChangesNothing() {
    Random random = new Random(5);
    long q8Block = KvBlock.bytesFor(32, HEAD_DIM, KvFormats.Q8_0, KvFormats.Q8_0);
    BlockPool pool = new BlockPool(KV_HEADS * q8Block);
    PagedKvCache cache =
        new PagedKvCache(pool, 1, KV_HEADS, HEAD_DIM, KvCacheFormat.of(KvFormats.Q8_0));
    cache.layer(0).append(32, positions(0, 32), rows(random, 32), rows(random, 32));
    LayerStore store = cache.layer(0).store();
    assertThatThrownBy(() -> store.convertBlock(0, 0, KvFormats.F32, KvFormats.F32))
        .isInstanceOf(KvMemoryExhaustedException.class);
    assertThat(store.head(0).blocks().get(0).keyFormat()).isSameAs(KvFormats.Q8_0);
    assertThat(pool.usedBytes()).isEqualTo(KV_HEADS * q8Block);
  }

  @Test
  void positionsFromReadsTheTailAndRemovalsCountEvictions() {
    Random random = new Random(9);
    try (PagedKvCache cache =
        PagedKvCache.create(
            1, KV_HEADS, HEAD_DIM, KvCacheFormat.of(KvFormats.F16).withBlockTokens(16))) {
      PagedLayerKv layer = cache.layer(0);
      layer.append(100, positions(0, 100), rows(random, 100), rows(random, 100));
      HeadStore head = layer.head(1);
      assertThat(head.removals()).isZero();
      BitSet evicted = new BitSet();
      evicted.set(3);
      evicted.set(40, 47);
      layer.evict(1, evicted);
      assertThat(head.removals()).isEqualTo(1);
      layer.evict(1, new BitSet()); // nothing removed: not counted
      assertThat(head.removals()).isEqualTo(1);
      layer.append(5, positions(100, 5), rows(random, 5), rows(random, 5));
      int[] all = new int[head.size()];
      assertThat(head.positions(all)).isEqualTo(head.size());
      for (int from : new int[] {0, 1, 3, 39, 40, 64, 91, head.size() - 1, head.size()}) {
        int[] tail = new int[head.size()];
        java.util.Arrays.fill(tail, -1);
        assertThat(head.positionsFrom(from, tail)).isEqualTo(head.size());
        for (int i = 0; i < head.size(); i++) {
          assertThat(tail[i]).as("from %d, index %d", from, i).isEqualTo(i < from ? -1 : all[i]);
        }
      }
    }
  }
}
