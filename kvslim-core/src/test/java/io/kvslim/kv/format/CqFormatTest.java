package io.kvslim.kv.format;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.calibrate.KMeans;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Coupled Quantization's format (METHODS.md Q5 "Test") on random codebooks and data. */
class CqFormatTest {
  static final int D = 64;
  static final int CAPACITY = 32;

  /** Codebooks from k-means on random data (Gaussian, per-channel scales), and other data. */
  static CqFormat format(int c, long seed) {
    SplittableRandom r = new SplittableRandom(seed);
    int n = 1024;
    int groups = D / c;
    float[] book = new float[groups * CqFormat.CENTROIDS * c];
    float[] data = new float[n * c];
    for (int g = 0; g < groups; g++) {
      for (int t = 0; t < n * c; t++) {
        data[t] = (float) (r.nextGaussian() * (1 + (t % c)));
      }
      float[] centroids = KMeans.train(data, n, c, CqFormat.CENTROIDS, 4, r.split());
      System.arraycopy(centroids, 0, book, g * centroids.length, centroids.length);
    }
    return new CqFormat(c, book, "test");
  }

  static float[] rows(int count, long seed) {
    SplittableRandom r = new SplittableRandom(seed);
    float[] x = new float[count * D];
    for (int i = 0; i < x.length; i++) {
      x[i] = (float) (r.nextGaussian() * (1 + (i % 8)));
    }
    return x;
  }

  static MemorySegment block(CqFormat f) {
    return MemorySegment.ofArray(new byte[(int) f.blockBytes(CAPACITY, D)]);
  }

  @ParameterizedTest
  @ValueSource(ints = {2, 4, 8})
  void storedBitsAreDTimesEightOverCPerVector(int c) {
    CqFormat f = format(c, 1);
    assertThat(f.blockBytes(CAPACITY, D) * 8).isEqualTo((long) CAPACITY * D * 8 / c);
    assertThat(f.scaleBytes(CAPACITY, D)).isZero();
    assertThat(f.tableBytes()).isEqualTo(4L * D * CqFormat.CENTROIDS);
    assertThat(f.bitsPerChannel()).isEqualTo(8.0 / c);
  }

  /**
   * Round trip: each reconstructed group is exactly the codebook row the brute-force search finds
   * nearest, and each element's error is at most the group's distance to that row (so at most the
   * distance to any centroid).
   */
  @ParameterizedTest
  @ValueSource(ints = {2, 4, 8})
  void eachGroupDecodesToItsNearestCentroid(int c) {
    CqFormat f = format(c, 2);
    float[] x = rows(CAPACITY, 3);
    MemorySegment block = block(f);
    f.encode(x, 0, D, CAPACITY, block, 0, CAPACITY, D);
    float[] book = new float[CqFormat.CENTROIDS * c];
    float[] out = new float[D];
    for (int s = 0; s < CAPACITY; s++) {
      f.decode(block, s, CAPACITY, D, out, 0);
      for (int g = 0; g < D / c; g++) {
        for (int j = 0; j < CqFormat.CENTROIDS; j++) {
          for (int i = 0; i < c; i++) {
            book[j * c + i] = f.centroid(g, j, i);
          }
        }
        int want = KMeans.bruteForce(x, s * D + g * c, c, CqFormat.CENTROIDS, book);
        double dist = 0;
        for (int i = 0; i < c; i++) {
          assertThat(out[g * c + i]).isEqualTo(f.centroid(g, want, i));
          double e = x[s * D + g * c + i] - out[g * c + i];
          dist += e * e;
        }
        for (int i = 0; i < c; i++) {
          assertThat((double) Math.abs(x[s * D + g * c + i] - out[g * c + i]))
              .isLessThanOrEqualTo(Math.sqrt(dist) * (1 + 1e-6));
        }
        assertThat(
                block.get(java.lang.foreign.ValueLayout.JAVA_BYTE, (long) s * (D / c) + g) & 0xFF)
            .isEqualTo(want);
      }
    }
  }

  @ParameterizedTest
  @ValueSource(ints = {2, 4, 8})
  void fusedScoresEqualScoresOverTheDequantizedBlock(int c) {
    CqFormat f = format(c, 4);
    float[] x = rows(CAPACITY, 5);
    MemorySegment block = block(f);
    f.encode(x, 0, D, CAPACITY, block, 0, CAPACITY, D);
    float[] q = rows(1, 6);
    float[] fused = new float[CAPACITY];
    float[] ref = new float[CAPACITY];
    float[] work = new float[KvFormat.workLength(D)];
    f.dots(block, CAPACITY, CAPACITY, D, q, 0, fused, work);
    f.dotsReference(block, CAPACITY, CAPACITY, D, q, 0, ref);
    float[] k = new float[D];
    for (int s = 0; s < CAPACITY; s++) {
      f.decode(block, s, CAPACITY, D, k, 0);
      double magnitude = 0;
      for (int j = 0; j < D; j++) {
        magnitude += Math.abs((double) q[j] * k[j]);
      }
      assertThat((double) Math.abs(fused[s] - ref[s])).isLessThanOrEqualTo(1e-5 * magnitude);
    }
    // several rows at once: each equals the one-row kernel bit for bit
    float[] prepared = new float[2 * f.preparedQueryLength(D)];
    float[] q2 = rows(2, 7);
    f.prepareQuery(q2, 0, D, prepared, 0);
    f.prepareQuery(q2, D, D, prepared, f.preparedQueryLength(D));
    float[] out = new float[2 * CAPACITY];
    f.scoresRows(
        block,
        CAPACITY,
        CAPACITY,
        D,
        prepared,
        f.preparedQueryLength(D),
        new int[] {0, 1},
        2,
        out,
        CAPACITY,
        work,
        new float[CAPACITY * D]);
    for (int row = 0; row < 2; row++) {
      f.dots(block, CAPACITY, CAPACITY, D, q2, row * D, fused, work);
      for (int s = 0; s < CAPACITY; s++) {
        assertThat(out[row * CAPACITY + s]).isEqualTo(fused[s]);
      }
    }
  }

  @ParameterizedTest
  @ValueSource(ints = {2, 4, 8})
  void fusedWeightedSumEqualsTheSumOverTheDequantizedBlock(int c) {
    CqFormat f = format(c, 8);
    float[] x = rows(CAPACITY, 9);
    MemorySegment block = block(f);
    f.encode(x, 0, D, CAPACITY, block, 0, CAPACITY, D);
    float[] w = new float[CAPACITY];
    SplittableRandom r = new SplittableRandom(10);
    for (int s = 0; s < CAPACITY; s++) {
      w[s] = s % 5 == 0 ? 0f : (float) r.nextDouble();
    }
    float[] fused = new float[D];
    float[] ref = new float[D];
    float[] magnitude = new float[D];
    f.accumulateBlock(block, CAPACITY, CAPACITY, D, w, 0, fused, 0, new float[D * 3 + 64]);
    float[] v = new float[D];
    for (int s = 0; s < CAPACITY; s++) {
      f.accumulateReference(block, s, CAPACITY, D, w[s], ref);
      f.decode(block, s, CAPACITY, D, v, 0);
      for (int j = 0; j < D; j++) {
        magnitude[j] += Math.abs(w[s] * v[j]);
      }
    }
    for (int j = 0; j < D; j++) {
      assertThat((double) Math.abs(fused[j] - ref[j])).isLessThanOrEqualTo(1e-5 * magnitude[j]);
    }
  }

  @ParameterizedTest
  @ValueSource(ints = {2, 8})
  void rowsMoveWithoutRequantizingAndTheHeadDimensionIsChecked(int c) {
    CqFormat f = format(c, 11);
    float[] x = rows(2, 12);
    MemorySegment a = block(f);
    MemorySegment b = block(f);
    f.encode(x, 0, D, 2, a, 0, CAPACITY, D);
    f.copyRow(a, 1, b, 5, CAPACITY, D);
    float[] one = new float[D];
    float[] two = new float[D];
    f.decode(a, 1, CAPACITY, D, one, 0);
    f.decode(b, 5, CAPACITY, D, two, 0);
    assertThat(two).containsExactly(one);
    assertThatThrownBy(() -> f.checkHeadDim(128))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("64 channels but the head dimension is 128");
  }
}
