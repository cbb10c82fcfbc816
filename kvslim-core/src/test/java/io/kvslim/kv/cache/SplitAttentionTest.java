package io.kvslim.kv.cache;

import static io.kvslim.kv.KvTestData.gaussian;
import static io.kvslim.kv.KvTestData.range;
import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.tensor.Parallel;
import java.util.BitSet;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Flash-decoding ({@link SplitAttention}): one sequence over one KV head on two threads splits each
 * head's blocks into parts; the merged result equals the one-thread (unsplit) attention up to float
 * rounding, for every kind of block (full precision, ggml blocks, KIVI's residual window and its
 * probability-adding value format), with evicted slots and merged (weighted) entries.
 */
class SplitAttentionTest {
  static final int HEAD_DIM = 64;
  static final int GROUP = 4; // query heads per KV head

  static Stream<KvCacheFormat> formats() {
    return Stream.of(
        KvCacheFormat.of(KvFormats.F32),
        KvCacheFormat.of(KvFormats.F16),
        KvCacheFormat.of(KvFormats.Q8_0),
        KvCacheFormat.of(KvFormats.Q4_0),
        KvCacheFormat.kivi(2, 2, 32, 128),
        KvCacheFormat.of(lexico(256, 8, 1), lexico(256, 8, 2)),
        KvCacheFormat.of(lexico(512, 4, 3), lexico(512, 4, 4))
            .withResidual(128, KvFormats.F16)); // values summed by atom, then D · sum (per part)
  }

  /** Lexico over {@code atoms} random unit atoms of {@link #HEAD_DIM} channels. */
  static io.kvslim.kv.format.LexicoFormat lexico(int atoms, int s, long seed) {
    Random random = new Random(seed);
    float[] dict = new float[atoms * HEAD_DIM];
    for (int a = 0; a < atoms; a++) {
      double n = 0;
      for (int i = 0; i < HEAD_DIM; i++) {
        dict[a * HEAD_DIM + i] = (float) random.nextGaussian();
        n += dict[a * HEAD_DIM + i] * dict[a * HEAD_DIM + i];
      }
      for (int i = 0; i < HEAD_DIM; i++) {
        dict[a * HEAD_DIM + i] = (float) (dict[a * HEAD_DIM + i] / Math.sqrt(n));
      }
    }
    return new io.kvslim.kv.format.LexicoFormat(dict, atoms, s, "t" + seed);
  }

  @ParameterizedTest
  @MethodSource("formats")
  void splitDecodeEqualsUnsplitAttention(KvCacheFormat format) {
    for (int kvHeads : new int[] {1, 3}) {
      Random random = new Random(7);
      PagedKvCache cache = PagedKvCache.create(1, kvHeads, HEAD_DIM, format);
      PagedLayerKv layer = cache.layer(0);
      int heads = kvHeads * GROUP;
      int tokens = 0;
      for (int chunk : new int[] {1000, 1000, 900, 1, 1}) {
        layer.append(
            chunk,
            range(tokens, chunk),
            gaussian(random, chunk * kvHeads * HEAD_DIM),
            gaussian(random, chunk * kvHeads * HEAD_DIM));
        tokens += chunk;
      }
      layer.flushResidual();
      // evicted slots in every part of head 0, merged entries of weight 3 in the last head
      BitSet evicted = new BitSet();
      for (int t = 5; t < tokens - 200; t += 7) {
        evicted.set(t);
      }
      layer.evict(0, evicted);
      int last = kvHeads - 1;
      int[] targets = {10, 1500, 2400};
      float[] w = {3f, 3f, 3f};
      layer.merge(
          last,
          targets,
          3,
          gaussian(random, 3 * HEAD_DIM),
          gaussian(random, 3 * HEAD_DIM),
          w,
          new BitSet());
      float[] query = gaussian(random, heads * HEAD_DIM);
      int[] position = {tokens};
      float[] single = new float[query.length];
      float[] split = new float[query.length];
      layer.attend(1, position, heads, query, 0.125f, single, null, null);
      assertThat(layer.splitParts()).isEqualTo(1);
      try (Parallel pool = new Parallel(2)) {
        layer.attend(1, position, heads, query, 0.125f, split, null, pool);
      }
      // one KV head on two threads: 2·2 = 4 parts of ≥ 512 tokens; three heads ≥ two threads
      assertThat(layer.splitParts()).isEqualTo(kvHeads == 1 ? 4 : 1);
      double worst = 0;
      for (int i = 0; i < single.length; i++) {
        worst = Math.max(worst, Math.abs(split[i] - single[i]));
      }
      // the outputs are weighted means of ~2,500 unit-variance values: float rounding of such
      // sums is ~1e-7 absolute, whatever the (small) size of the mean. F16 values multiply by the
      // probability rounded to f16 (llama.cpp's KQV), and a part's probabilities are normalized by
      // the part's sum, so they round differently: about 2^-11/sqrt(2,500) ≈ 1e-5 each way (also
      // Lexico's window of F16 values)
      boolean f16 = format.values() == KvFormats.F16 || format.valueResidual() == KvFormats.F16;
      double bound = f16 ? 5e-5 : 1e-6;
      assertThat(worst).as("%s, %d KV heads", format, kvHeads).isLessThan(bound);
      if (kvHeads > 1) {
        assertThat(split).isEqualTo(single); // not split: the same bits
      }
      cache.close();
    }
  }
}
