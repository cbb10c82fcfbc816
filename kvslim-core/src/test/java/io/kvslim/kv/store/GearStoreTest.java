package io.kvslim.kv.store;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.kv.cache.PagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.format.GearKeyFormat;
import io.kvslim.kv.format.GearValueFormat;
import io.kvslim.kv.format.KvFormats;
import java.lang.foreign.MemorySegment;
import java.util.BitSet;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** GEAR's token-group values in the paged store: block flushes, bytes, eviction. */
class GearStoreTest {
  static final int KV_HEADS = BlockStoreTest.KV_HEADS;
  static final int HEAD_DIM = BlockStoreTest.HEAD_DIM;
  static final int BLOCK = 32;

  @Test
  void keysAndValuesAreCompressedABlockAtATimeAndEvictedUnderAMask() {
    GearKeyFormat keys = new GearKeyFormat(4, 2, 3, 0.05);
    GearValueFormat values = new GearValueFormat(4, 32, 2, 3, 0.05);
    KvCacheFormat format =
        new KvCacheFormat(keys, values, BLOCK, BLOCK, KvFormats.F32, KvFormats.F32);
    BlockPool pool = new BlockPool();
    PagedKvCache cache = new PagedKvCache(pool, 1, KV_HEADS, HEAD_DIM, format);
    PagedLayerKv layer = cache.layer(0);
    Random random = new Random(3);
    float[] k = BlockStoreTest.rows(random, BLOCK + 10);
    float[] v = BlockStoreTest.rows(random, BLOCK + 10);
    layer.append(BLOCK - 1, BlockStoreTest.positions(0, BLOCK - 1), k, v);
    layer.flushResidual();
    HeadStore head = layer.head(1);
    assertThat(head.blocks().get(0).keyFormat()).isEqualTo(KvFormats.F32); // not a block yet
    float[] k2 = java.util.Arrays.copyOfRange(k, (BLOCK - 1) * KV_HEADS * HEAD_DIM, k.length);
    float[] v2 = java.util.Arrays.copyOfRange(v, (BLOCK - 1) * KV_HEADS * HEAD_DIM, v.length);
    layer.append(11, BlockStoreTest.positions(BLOCK - 1, 11), k2, v2);
    layer.flushResidual();
    KvBlock first = head.blocks().get(0);
    assertThat(first.keyFormat()).isEqualTo(keys);
    assertThat(first.valueFormat()).isEqualTo(values);
    assertThat(head.blocks().get(1).keyFormat()).isEqualTo(KvFormats.F32);
    assertThat(first.bytes())
        .isEqualTo(
            KvBlock.HEADER_BYTES
                + keys.blockBytes(BLOCK, HEAD_DIM)
                + values.blockBytes(BLOCK, HEAD_DIM));
    assertThat(pool.usedBytes()).isEqualTo(cache.bytes());
    // the stored block decodes as the format encodes head 1's rows directly
    int stride = KV_HEADS * HEAD_DIM;
    MemorySegment kb = MemorySegment.ofArray(new byte[(int) keys.blockBytes(BLOCK, HEAD_DIM)]);
    keys.encode(k, HEAD_DIM, stride, BLOCK, kb, 0, BLOCK, HEAD_DIM);
    MemorySegment vb = MemorySegment.ofArray(new byte[(int) values.blockBytes(BLOCK, HEAD_DIM)]);
    values.encode(v, HEAD_DIM, stride, BLOCK, vb, 0, BLOCK, HEAD_DIM);
    float[] got = new float[HEAD_DIM];
    float[] want = new float[HEAD_DIM];
    for (int t = 0; t < BLOCK; t++) {
      head.readKey(t, got);
      keys.decode(kb, t, BLOCK, HEAD_DIM, want, 0);
      assertThat(got).containsExactly(want);
      head.readValue(t, got);
      values.decode(vb, t, BLOCK, HEAD_DIM, want, 0);
      assertThat(got).containsExactly(want);
    }
    // an eviction leaves the compressed block in place under a live mask
    BitSet gone = new BitSet();
    gone.set(1);
    gone.set(5);
    gone.set(BLOCK + 2);
    layer.evict(1, gone);
    assertThat(head.size()).isEqualTo(BLOCK + 10 - 3);
    assertThat(head.blocks().get(0).keyFormat()).isEqualTo(keys);
    assertThat(head.blocks().get(0).isLive(5)).isFalse();
    head.readValue(1, got); // token 2 is now the second live one
    values.decode(vb, 2, BLOCK, HEAD_DIM, want, 0);
    assertThat(got).containsExactly(want);
    assertThat(pool.usedBytes()).isEqualTo(cache.bytes());
    cache.close();
    assertThat(pool.usedBytes()).isZero();
  }
}
