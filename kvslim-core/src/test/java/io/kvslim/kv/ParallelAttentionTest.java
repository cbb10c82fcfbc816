package io.kvslim.kv;

import static io.kvslim.kv.KvTestData.gaussian;
import static io.kvslim.kv.KvTestData.range;
import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.kv.KvTestData.RecordingObserver;
import io.kvslim.kv.cache.PagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.tensor.Parallel;
import java.util.BitSet;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Attention on the engine's pool equals serial attention bit for bit, observed probabilities
 * included (same rows, same order), and a prefill chunk equals the same queries attended one at a
 * time: tiles and threads change where a row is computed, never its arithmetic.
 */
class ParallelAttentionTest {
  static final int KV_HEADS = 2;
  static final int HEADS = 6;
  static final int HEAD_DIM = 64;
  static final float SCALE = 0.125f;
  static Parallel pool;

  @BeforeAll
  static void startPool() {
    pool = new Parallel(3);
  }

  @AfterAll
  static void closePool() {
    pool.close();
  }

  static Stream<KvCacheFormat> formats() {
    return Stream.of(
        KvCacheFormat.of(KvFormats.F32),
        KvCacheFormat.of(KvFormats.F16),
        KvCacheFormat.of(KvFormats.BF16),
        KvCacheFormat.of(KvFormats.Q8_0),
        KvCacheFormat.of(KvFormats.Q4_0),
        KvCacheFormat.of(KvFormats.Q5_1),
        KvCacheFormat.kivi(2, 2, 32, 0),
        KvCacheFormat.kivi(4, 2, 32, 32));
  }

  /** A layer with 90 tokens, some evicted per head (so blocks have dead slots or were repacked). */
  static PagedLayerKv filledLayer(KvCacheFormat format, Random random) {
    PagedLayerKv layer = PagedKvCache.create(1, KV_HEADS, HEAD_DIM, format).layer(0);
    int n = 90;
    layer.append(
        n,
        range(0, n),
        gaussian(random, n * KV_HEADS * HEAD_DIM),
        gaussian(random, n * KV_HEADS * HEAD_DIM));
    BitSet evict = new BitSet();
    for (int t = 5; t < n; t += 7) {
      evict.set(t);
    }
    layer.evict(1, evict);
    return layer;
  }

  @ParameterizedTest
  @MethodSource("formats")
  void parallelAttentionEqualsSerialBitForBit(KvCacheFormat format) {
    Random random = new Random(21);
    PagedLayerKv layer = filledLayer(format, random);
    int n = 40; // more rows than one tile
    int[] positions = range(50, n);
    float[] queries = gaussian(random, n * HEADS * HEAD_DIM);
    float[] serial = new float[queries.length];
    float[] parallel = new float[queries.length];
    layer.attend(n, positions, HEADS, queries, SCALE, serial, null);
    layer.attend(n, positions, HEADS, queries, SCALE, parallel, null, pool);
    assertThat(parallel).isEqualTo(serial);

    RecordingObserver serialSeen = new RecordingObserver();
    RecordingObserver parallelSeen = new RecordingObserver();
    float[] serialObserved = new float[queries.length];
    float[] parallelObserved = new float[queries.length];
    layer.attend(n, positions, HEADS, queries, SCALE, serialObserved, serialSeen);
    layer.attend(n, positions, HEADS, queries, SCALE, parallelObserved, parallelSeen, pool);
    assertThat(serialObserved).isEqualTo(serial);
    assertThat(parallelObserved).isEqualTo(serial);
    assertThat(parallelSeen.heads).isEqualTo(serialSeen.heads);
    assertThat(parallelSeen.rows).hasSize(n * HEADS);
    for (int r = 0; r < serialSeen.rows.size(); r++) {
      assertThat(parallelSeen.rows.get(r)).isEqualTo(serialSeen.rows.get(r));
    }
  }

  @ParameterizedTest
  @MethodSource("formats")
  void aPrefillChunkEqualsItsQueriesOneByOne(KvCacheFormat format) {
    Random random = new Random(22);
    PagedLayerKv layer = filledLayer(format, random);
    int n = 37;
    int[] positions = range(40, n);
    float[] queries = gaussian(random, n * HEADS * HEAD_DIM);
    float[] chunk = new float[queries.length];
    layer.attend(n, positions, HEADS, queries, SCALE, chunk, null, pool);
    int row = HEADS * HEAD_DIM;
    for (int i = 0; i < n; i++) {
      float[] one = new float[row];
      float[] query = java.util.Arrays.copyOfRange(queries, i * row, (i + 1) * row);
      layer.attend(1, new int[] {positions[i]}, HEADS, query, SCALE, one, null);
      assertThat(one)
          .as("%s query %d", format, i)
          .isEqualTo(java.util.Arrays.copyOfRange(chunk, i * row, (i + 1) * row));
    }
  }
}
