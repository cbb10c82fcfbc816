package io.kvslim.kv.format;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.kv.cache.PagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.store.KvCacheFormat;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * KIVI keys with several groups of tokens in one block ({@code KiviKeyFormat(bits, group)}) store,
 * decode and score exactly as blocks of one group each: the same codes and scales, the same bits of
 * every score (one and several query rows) and every decoded element; a block cut short by an
 * eviction ends with a shorter group; the bytes are each group's scales plus the codes.
 */
class KiviKeyGroupsTest {
  private static final int HEAD_DIM = 64;
  private static final int GROUP = 32;

  private static float[] data(SplittableRandom r, int n) {
    float[] x = new float[n];
    for (int i = 0; i < n; i++) {
      x[i] = (float) (r.nextGaussian() * (1 + (i % 5)));
    }
    return x;
  }

  @ParameterizedTest
  @ValueSource(ints = {1, 2, 4, 8})
  void aBlockOfGroupsEqualsBlocksOfOneGroup(int bits) {
    SplittableRandom r = new SplittableRandom(bits);
    KiviKeyFormat grouped = new KiviKeyFormat(bits, GROUP);
    KiviKeyFormat single = new KiviKeyFormat(bits);
    for (int capacity : new int[] {128, 96, 100, 17}) {
      for (int count : new int[] {capacity, capacity - 3}) {
        float[] src = data(r, count * HEAD_DIM);
        MemorySegment big =
            MemorySegment.ofArray(new byte[(int) grouped.blockBytes(capacity, HEAD_DIM)]);
        grouped.encode(src, 0, HEAD_DIM, count, big, 0, capacity, HEAD_DIM);
        int groups = (capacity + GROUP - 1) / GROUP;
        assertThat(grouped.blockBytes(capacity, HEAD_DIM))
            .isEqualTo(groups * 4L * HEAD_DIM + (long) capacity * HEAD_DIM * bits / 8);
        MemorySegment offHeap = java.lang.foreign.Arena.ofAuto().allocate(big.byteSize(), 8);
        offHeap.copyFrom(big);
        float[] q = data(r, 3 * HEAD_DIM);
        float[] prepared = new float[3 * HEAD_DIM];
        for (int i = 0; i < 3; i++) {
          grouped.prepareQuery(q, i * HEAD_DIM, HEAD_DIM, prepared, i * HEAD_DIM);
        }
        float[] work = new float[KvFormat.workLength(HEAD_DIM)];
        float[] scores = new float[capacity];
        float[] scoresOff = new float[capacity];
        grouped.scores(big, count, capacity, HEAD_DIM, prepared, 0, scores, work);
        grouped.scores(offHeap, count, capacity, HEAD_DIM, prepared, 0, scoresOff, work);
        float[] rowScores = new float[3 * capacity];
        grouped.scoresRows(
            big,
            count,
            capacity,
            HEAD_DIM,
            prepared,
            HEAD_DIM,
            new int[] {0, 1, 2},
            3,
            rowScores,
            capacity,
            work,
            new float[capacity * HEAD_DIM]);
        float[] decoded = new float[HEAD_DIM];
        for (int first = 0; first < count; first += GROUP) {
          int n = Math.min(GROUP, count - first);
          int cap = Math.min(GROUP, capacity - first);
          MemorySegment small =
              MemorySegment.ofArray(new byte[(int) single.blockBytes(cap, HEAD_DIM)]);
          single.encode(src, first * HEAD_DIM, HEAD_DIM, n, small, 0, cap, HEAD_DIM);
          float[] want = new float[cap];
          single.scores(small, n, cap, HEAD_DIM, prepared, 0, want, work);
          float[] wantRows = new float[3 * cap];
          single.scoresRows(
              small,
              n,
              cap,
              HEAD_DIM,
              prepared,
              HEAD_DIM,
              new int[] {0, 1, 2},
              3,
              wantRows,
              cap,
              work,
              new float[cap * HEAD_DIM]);
          for (int t = 0; t < n; t++) {
            String at = "bits " + bits + " capacity " + capacity + " token " + (first + t);
            assertThat(scores[first + t]).as(at).isEqualTo(want[t]);
            assertThat(scoresOff[first + t]).as(at + " off the heap").isEqualTo(want[t]);
            for (int i = 0; i < 3; i++) {
              assertThat(rowScores[i * capacity + first + t])
                  .as(at + " row " + i)
                  .isEqualTo(wantRows[i * cap + t]);
            }
            float[] wantRow = new float[HEAD_DIM];
            single.decode(small, t, cap, HEAD_DIM, wantRow, 0);
            grouped.decode(big, first + t, capacity, HEAD_DIM, decoded, 0);
            assertThat(decoded).as(at + " decoded").isEqualTo(wantRow);
          }
        }
      }
    }
  }

  /**
   * A KIVI cache in blocks of R = 128 tokens (four key groups each) attends exactly as one in
   * blocks of one 32-token group: a prompt, then decode steps across several flushes, every output
   * bit for bit.
   */
  @ParameterizedTest
  @ValueSource(ints = {2, 4})
  void blocksOfSeveralGroupsAttendAsBlocksOfOne(int bits) {
    int kvHeads = 2;
    int heads = 4;
    KvCacheFormat grouped = KvCacheFormat.kivi(bits, bits, GROUP, 128);
    KvCacheFormat single =
        new KvCacheFormat(
            new KiviKeyFormat(bits),
            new KiviValueFormat(bits, GROUP),
            GROUP,
            128,
            KvFormats.F32,
            KvFormats.F32);
    assertThat(grouped.blockTokens()).isEqualTo(128);
    PagedLayerKv a = PagedKvCache.create(1, kvHeads, HEAD_DIM, grouped).layer(0);
    PagedLayerKv b = PagedKvCache.create(1, kvHeads, HEAD_DIM, single).layer(0);
    SplittableRandom r = new SplittableRandom(11);
    int prompt = 300;
    int[] positions = new int[prompt];
    for (int i = 0; i < prompt; i++) {
      positions[i] = i;
    }
    float[] k = data(r, prompt * kvHeads * HEAD_DIM);
    float[] v = data(r, prompt * kvHeads * HEAD_DIM);
    a.append(prompt, positions, k, v);
    b.append(prompt, positions, k, v);
    for (int step = 0; step < 200; step++) {
      int[] at = {prompt + step};
      float[] q = data(r, heads * HEAD_DIM);
      float[] outA = new float[q.length];
      float[] outB = new float[q.length];
      a.attend(1, at, heads, q, 0.125f, outA, null);
      b.attend(1, at, heads, q, 0.125f, outB, null);
      assertThat(outA).as("bits %d step %d", bits, step).isEqualTo(outB);
      float[] nk = data(r, kvHeads * HEAD_DIM);
      float[] nv = data(r, kvHeads * HEAD_DIM);
      a.append(1, at, nk, nv);
      b.append(1, at, nk, nv);
    }
    assertThat(a.bytes()).isLessThan(b.bytes()); // the same codes in fewer block headers
  }

  @ParameterizedTest
  @ValueSource(ints = {32, 64, 96, 128, 256, 1024, 0})
  void kiviTakesBlocksOfSeveralGroupsThatDivideTheResidual(int residual) {
    KvCacheFormat f = KvCacheFormat.kivi(2, 2, GROUP, residual);
    int want =
        switch (residual) {
          case 64 -> 64;
          case 96 -> 96;
          case 128, 256, 1024 -> 128;
          default -> 32;
        };
    assertThat(f.blockTokens()).isEqualTo(want);
    assertThat(f.keys().name()).isEqualTo(want == GROUP ? "kivi_k2" : "kivi_k2_g32");
    assertThat(KvFormats.byName(f.keys().name())).isEqualTo(f.keys());
  }
}
