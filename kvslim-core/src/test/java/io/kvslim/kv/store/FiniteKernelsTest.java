package io.kvslim.kv.store;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.kv.format.KvFormat;
import io.kvslim.kv.format.KvFormats;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * A block hands out the f16 kernels that skip the infinity check ({@link KvBlock#keyKernels},
 * {@link KvBlock#valueKernels}) only while every filled row is finite, rechecking after any change
 * to its bytes; those kernels give the checking kernels' bits on finite rows.
 */
class FiniteKernelsTest {
  static final int DIM = 64;
  static final int CAPACITY = 32;

  static float[] rows(Random random, int count) {
    float[] x = new float[count * DIM];
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

  static KvBlock block(KvFormat format, float[] k, float[] v, int count) {
    KvBlock b = new KvBlock(CAPACITY, DIM, format, format);
    b.append(count, positions(0, count), 0, k, 0, v, 0, DIM);
    return b;
  }

  @Test
  void finiteF16RowsGetTheUncheckedKernelsUntilANonFiniteRowArrives() {
    Random random = new Random(1);
    KvBlock b = block(KvFormats.F16, rows(random, 10), rows(random, 10), 10);
    KvFormat fast = KvFormats.F16.assumingFinite();
    assertThat(fast).isNotSameAs(KvFormats.F16);
    assertThat(b.keyKernels()).isSameAs(fast);
    assertThat(b.valueKernels()).isSameAs(fast);

    float[] k = rows(random, 1);
    float[] v = rows(random, 1);
    k[5] = Float.POSITIVE_INFINITY; // 1e6 overflows f16 too, a NaN as well
    v[7] = Float.NaN;
    b.append(1, new int[] {10}, 0, k, 0, v, 0, DIM);
    assertThat(b.keyKernels()).isSameAs(KvFormats.F16);
    assertThat(b.valueKernels()).isSameAs(KvFormats.F16);

    KvBlock overflow = block(KvFormats.F16, rows(random, 3), rows(random, 3), 3);
    float[] big = rows(random, 1);
    big[0] = 1e6f; // beyond f16's 65504: stored as infinity
    overflow.append(1, new int[] {3}, 0, big, 0, big, 0, DIM);
    assertThat(overflow.keyKernels()).isSameAs(KvFormats.F16);
  }

  @Test
  void aRewrittenRowIsCheckedAgain() {
    Random random = new Random(2);
    KvBlock b = block(KvFormats.F16, rows(random, CAPACITY), rows(random, CAPACITY), CAPACITY);
    assertThat(b.keyKernels()).isSameAs(KvFormats.F16.assumingFinite());
    float[] k = rows(random, 1);
    float[] v = rows(random, 1);
    k[63] = Float.NEGATIVE_INFINITY;
    b.rewriteRow(4, k, 0, v, 0, new float[2 * CAPACITY * DIM]);
    assertThat(b.keyKernels()).isSameAs(KvFormats.F16);
    assertThat(b.valueKernels()).isSameAs(KvFormats.F16.assumingFinite());
  }

  @Test
  void formatsWithoutTheCheckHandOutThemselves() {
    Random random = new Random(3);
    for (KvFormat f : new KvFormat[] {KvFormats.F32, KvFormats.BF16, KvFormats.byName("q8_0")}) {
      KvBlock b = block(f, rows(random, 5), rows(random, 5), 5);
      assertThat(b.keyKernels()).isSameAs(f);
      assertThat(b.valueKernels()).isSameAs(f);
    }
  }

  @Test
  void theUncheckedKernelsGiveTheCheckedKernelsBits() {
    Random random = new Random(4);
    KvBlock b = block(KvFormats.F16, rows(random, 29), rows(random, 29), 29);
    KvFormat fast = b.keyKernels();
    assertThat(fast).isNotSameAs(KvFormats.F16);
    float[] q = rows(random, 1);
    float[] prepared = new float[KvFormats.F16.preparedQueryLength(DIM)];
    KvFormats.F16.prepareQuery(q, 0, DIM, prepared, 0);
    float[] work = new float[KvFormat.workLength(DIM)];
    float[] checked = new float[CAPACITY];
    float[] unchecked = new float[CAPACITY];
    KvFormats.F16.scores(b.keys(), 29, CAPACITY, DIM, prepared, 0, checked, work);
    fast.scores(b.keys(), 29, CAPACITY, DIM, prepared, 0, unchecked, work);
    assertThat(unchecked).isEqualTo(checked);
    float[] weights = rows(random, 1);
    float[] a = new float[DIM];
    float[] c = new float[DIM];
    KvFormats.F16.accumulateBlock(b.values(), 29, CAPACITY, DIM, weights, 0, a, 0, work);
    fast.accumulateBlock(b.values(), 29, CAPACITY, DIM, weights, 0, c, 0, work);
    assertThat(c).isEqualTo(a);
  }
}
