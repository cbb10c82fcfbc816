package io.kvslim.kv.format;

import static org.assertj.core.api.Assertions.assertThat;

import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Lexico's OMP and sparse-code format (METHODS.md Q9 "Test") on random dictionaries. */
class LexicoFormatTest {
  static final int D = 32;
  static final int CAPACITY = 16;

  /** {@code atoms} random unit-norm atoms of {@code D} channels. */
  static float[] dictionary(int atoms, long seed) {
    SplittableRandom r = new SplittableRandom(seed);
    float[] dict = new float[atoms * D];
    for (int a = 0; a < atoms; a++) {
      double n = 0;
      for (int i = 0; i < D; i++) {
        dict[a * D + i] = (float) r.nextGaussian();
        n += dict[a * D + i] * dict[a * D + i];
      }
      for (int i = 0; i < D; i++) {
        dict[a * D + i] = (float) (dict[a * D + i] / Math.sqrt(n));
      }
    }
    return dict;
  }

  static float[] rows(int count, long seed) {
    SplittableRandom r = new SplittableRandom(seed);
    float[] x = new float[count * D];
    for (int i = 0; i < x.length; i++) {
      x[i] = (float) (r.nextGaussian() * 2);
    }
    return x;
  }

  @Test
  void withSparsityDAndAFullRankDictionaryOmpIsExactAndItsResidualNeverGrows() {
    float[] dict = dictionary(2 * D, 1);
    float[] x = rows(8, 2);
    int[] index = new int[D];
    float[] coef = new float[D];
    double[] norms = new double[D];
    for (int t = 0; t < 8; t++) {
      int k = Omp.encode(dict, 2 * D, D, x, t * D, D, index, coef, norms);
      assertThat(k).isEqualTo(D);
      for (int j = 1; j < k; j++) {
        assertThat(norms[j]).isLessThanOrEqualTo(norms[j - 1] * (1 + 1e-12));
      }
      for (int i = 0; i < D; i++) {
        double v = 0;
        for (int j = 0; j < k; j++) {
          v += coef[j] * dict[index[j] * D + i];
        }
        assertThat(Math.abs(v - x[t * D + i])).isLessThanOrEqualTo(1e-5 * 2 * 4);
      }
    }
  }

  @ParameterizedTest
  @ValueSource(ints = {1, 4, 7})
  void theRowIsTwentyBitsPerAtomAndDecodesWithinTheOmpAndFp8Bound(int s) {
    float[] dict = dictionary(256, 3);
    LexicoFormat f = new LexicoFormat(dict, 256, s, "t");
    assertThat(f.rowBytes(D)).isEqualTo((20 * s + 7) / 8);
    assertThat(f.scaleBytes(CAPACITY, D)).isZero();
    float[] x = rows(CAPACITY, 4);
    MemorySegment block = MemorySegment.ofArray(new byte[(int) f.blockBytes(CAPACITY, D)]);
    f.encode(x, 0, D, CAPACITY, block, 0, CAPACITY, D);
    int[] index = new int[s];
    float[] coef = new float[s];
    float[] out = new float[D];
    for (int t = 0; t < CAPACITY; t++) {
      int k = Omp.encode(dict, 256, D, x, t * D, s, index, coef, null);
      f.decode(block, t, CAPACITY, D, out, 0);
      for (int j = 0; j < k; j++) {
        assertThat(f.atom(block, t, D, j)).isEqualTo(index[j]);
        assertThat(f.coefficient(block, t, D, j))
            .isEqualTo(Fp8E4m3Format.toFloat(Fp8E4m3Format.fromFloat(coef[j])));
      }
      for (int i = 0; i < D; i++) {
        double omp = 0;
        double bound = 0;
        for (int j = 0; j < k; j++) {
          omp += coef[j] * dict[index[j] * D + i];
          bound +=
              Math.abs(coef[j] - f.coefficient(block, t, D, j)) * Math.abs(dict[index[j] * D + i]);
        }
        double residual = Math.abs(x[t * D + i] - omp);
        assertThat((double) Math.abs(x[t * D + i] - out[i]))
            .isLessThanOrEqualTo(residual + bound + 1e-5);
      }
    }
  }

  @ParameterizedTest
  @ValueSource(ints = {2, 6})
  void theGatheredScoresAndTheFusedSumEqualTheDequantizedOnes(int s) {
    float[] dict = dictionary(512, 5);
    LexicoFormat f = new LexicoFormat(dict, 512, s, "t");
    float[] x = rows(CAPACITY, 6);
    MemorySegment block = MemorySegment.ofArray(new byte[(int) f.blockBytes(CAPACITY, D)]);
    f.encode(x, 0, D, CAPACITY, block, 0, CAPACITY, D);
    float[] q = rows(1, 7);
    float[] fused = new float[CAPACITY];
    float[] ref = new float[CAPACITY];
    float[] work = new float[KvFormat.workLength(D)];
    f.dots(block, CAPACITY, CAPACITY, D, q, 0, fused, work);
    f.dotsReference(block, CAPACITY, CAPACITY, D, q, 0, ref);
    float[] k = new float[D];
    for (int t = 0; t < CAPACITY; t++) {
      f.decode(block, t, CAPACITY, D, k, 0);
      double magnitude = 0;
      for (int i = 0; i < D; i++) {
        magnitude += Math.abs((double) q[i] * k[i]);
      }
      for (int j = 0; j < s; j++) {
        magnitude += Math.abs(f.coefficient(block, t, D, j)) * Math.sqrt(D) * 4;
      }
      assertThat((double) Math.abs(fused[t] - ref[t])).isLessThanOrEqualTo(1e-5 * magnitude);
    }
    float[] w = new float[CAPACITY];
    SplittableRandom r = new SplittableRandom(8);
    for (int t = 0; t < CAPACITY; t++) {
      w[t] = (float) r.nextDouble();
    }
    float[] acc = new float[D];
    float[] accRef = new float[D];
    f.accumulateBlock(block, CAPACITY, CAPACITY, D, w, 0, acc, 0, work);
    for (int t = 0; t < CAPACITY; t++) {
      f.accumulateReference(block, t, CAPACITY, D, w[t], accRef);
    }
    for (int i = 0; i < D; i++) {
      assertThat((double) Math.abs(acc[i] - accRef[i]))
          .isLessThanOrEqualTo(1e-5 * (1 + Math.abs(accRef[i])) * s * CAPACITY);
    }
  }
}
