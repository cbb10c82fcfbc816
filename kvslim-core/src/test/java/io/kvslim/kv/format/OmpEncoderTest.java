package io.kvslim.kv.format;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** {@link OmpEncoder}, the chunked Gram-matrix OMP, against the scalar {@link Omp}. */
class OmpEncoderTest {

  static float[] dictionary(int atoms, int d, long seed) {
    SplittableRandom r = new SplittableRandom(seed);
    float[] dict = new float[atoms * d];
    for (int a = 0; a < atoms; a++) {
      double n = 0;
      for (int i = 0; i < d; i++) {
        dict[a * d + i] = (float) r.nextGaussian();
        n += dict[a * d + i] * dict[a * d + i];
      }
      for (int i = 0; i < d; i++) {
        dict[a * d + i] = (float) (dict[a * d + i] / Math.sqrt(n));
      }
    }
    return dict;
  }

  static float[] rows(int count, int d, long seed) {
    SplittableRandom r = new SplittableRandom(seed);
    float[] x = new float[count * d];
    for (int i = 0; i < x.length; i++) {
      x[i] = (float) (r.nextGaussian() * 2);
    }
    return x;
  }

  @ParameterizedTest
  @CsvSource({"1, 16, 8", "5, 16, 8", "9, 100, 32", "4, 1024, 64", "1, 1024, 64", "3, 200, 64"})
  void theProjectionIsAChainOfFusedMultiplyAddsPerRowAndAtom(int count, int atoms, int d) {
    float[] dict = dictionary(atoms, d, 1);
    int lanes = io.kvslim.kv.attention.VectorKernels.FLOATS.length();
    int padded = (atoms + 2 * lanes - 1) / (2 * lanes) * (2 * lanes);
    float[] dt = new float[d * padded];
    for (int a = 0; a < atoms; a++) {
      for (int i = 0; i < d; i++) {
        dt[i * padded + a] = dict[a * d + i];
      }
    }
    int stride = d + 3;
    float[] x = rows(count + 1, stride, 2);
    float[] h = new float[count * padded];
    OmpEncoder.project(dt, padded, d, x, 5, stride, count, h, 0, padded);
    for (int t = 0; t < count; t++) {
      for (int a = 0; a < padded; a++) {
        float sum = 0f;
        for (int i = 0; i < d; i++) {
          sum = Math.fma(x[5 + t * stride + i], dt[i * padded + a], sum);
        }
        assertThat(h[t * padded + a]).as("row %d atom %d", t, a).isEqualTo(sum);
      }
    }
  }

  /**
   * The atoms are {@link Omp}'s but where two correlations tie within float rounding (none in these
   * 600 rows); the coefficients agree to float rounding of the Gram entries. (With {@code s} close
   * to {@code d} the last atoms are chosen on a residual near float rounding, where the two may
   * part: not a case here.)
   */
  @ParameterizedTest
  @CsvSource({"1024, 64, 8", "1024, 64, 16", "256, 32, 4", "100, 32, 7", "64, 16, 6"})
  void theAtomsAreThoseOfTheScalarOmpAndTheCoefficientsAgree(int atoms, int d, int s) {
    float[] dict = dictionary(atoms, d, 3);
    int n = 600;
    float[] x = rows(n, d, 4);
    OmpEncoder enc = new OmpEncoder(dict, atoms, d);
    int[] index = new int[n * s];
    float[] coef = new float[n * s];
    int[] counts = new int[n];
    for (int t = 0; t < n; t += 32) {
      int c = Math.min(32, n - t);
      int[] i2 = new int[c * s];
      float[] c2 = new float[c * s];
      int[] k2 = new int[c];
      enc.encode(x, t * d, d, c, s, i2, c2, k2);
      System.arraycopy(i2, 0, index, t * s, c * s);
      System.arraycopy(c2, 0, coef, t * s, c * s);
      System.arraycopy(k2, 0, counts, t, c);
    }
    int[] refIndex = new int[s];
    float[] refCoef = new float[s];
    for (int t = 0; t < n; t++) {
      int k = Omp.encode(dict, atoms, d, x, t * d, s, refIndex, refCoef, null);
      assertThat(counts[t]).as("row %d", t).isEqualTo(k);
      for (int j = 0; j < k; j++) {
        assertThat(index[t * s + j]).as("row %d atom %d", t, j).isEqualTo(refIndex[j]);
        assertThat((double) Math.abs(coef[t * s + j] - refCoef[j]))
            .as("row %d coefficient %d", t, j)
            .isLessThanOrEqualTo(1e-4 * (1 + Math.abs(refCoef[j])));
      }
    }
  }

  @Test
  void theIncrementalCholeskySolveGivesTheBitsOfTheFullOne() {
    int s = 8;
    float[] dict = dictionary(s + 1, 6, 11);
    double[] a = new double[s * s];
    double[] b = new double[s];
    SplittableRandom r = new SplittableRandom(12);
    for (int i = 0; i < s; i++) {
      for (int j = 0; j < s; j++) {
        double g = 0;
        for (int m = 0; m < 6; m++) {
          g += (double) dict[i * 6 + m] * dict[j * 6 + m];
        }
        a[i * s + j] = g;
      }
      b[i] = r.nextGaussian();
    }
    double[] l = new double[s * s];
    double[] y = new double[s];
    double[] out = new double[s];
    double[] full = new double[s];
    int k = 1;
    for (; k <= s; k++) {
      boolean solved = Omp.solve(a, s, b, k, full);
      double[] before = out.clone();
      assertThat(OmpEncoder.extendAndSolve(a, s, b, k, l, y, out)).isEqualTo(solved);
      if (!solved) {
        assertThat(out).isEqualTo(before);
        break;
      }
      for (int j = 0; j < k; j++) {
        assertThat(out[j]).as("k %d coefficient %d", k, j).isEqualTo(full[j]);
      }
    }
    assertThat(k).as("6 channels: the seventh atom is in the span of the others").isEqualTo(7);
  }

  @Test
  void aRowsCodesDoNotDependOnItsChunk() {
    int atoms = 1024;
    int d = 64;
    int s = 8;
    float[] dict = dictionary(atoms, d, 5);
    OmpEncoder enc = new OmpEncoder(dict, atoms, d);
    int n = 37;
    float[] x = rows(n, d, 6);
    int[] index = new int[n * s];
    float[] coef = new float[n * s];
    int[] counts = new int[n];
    enc.encode(x, 0, d, n, s, index, coef, counts);
    int[] i1 = new int[s];
    float[] c1 = new float[s];
    int[] k1 = new int[1];
    for (int t = 0; t < n; t++) {
      enc.encode(x, t * d, d, 1, s, i1, c1, k1);
      assertThat(k1[0]).isEqualTo(counts[t]);
      for (int j = 0; j < k1[0]; j++) {
        assertThat(i1[j]).isEqualTo(index[t * s + j]);
        assertThat(c1[j]).isEqualTo(coef[t * s + j]);
      }
    }
  }

  @Test
  void aZeroRowHasNoAtomsAndPaddingAtomsAreNeverChosen() {
    int atoms = 20; // not a multiple of the vector length: the Gram matrix has padding atoms
    int d = 16;
    int s = 16;
    float[] dict = dictionary(atoms, d, 7);
    OmpEncoder enc = new OmpEncoder(dict, atoms, d);
    float[] x = new float[3 * d];
    float[] r = rows(2, d, 8);
    System.arraycopy(r, 0, x, d, 2 * d);
    int[] index = new int[3 * s];
    float[] coef = new float[3 * s];
    int[] counts = new int[3];
    enc.encode(x, 0, d, 3, s, index, coef, counts);
    assertThat(counts[0]).isZero();
    for (int t = 1; t < 3; t++) {
      assertThat(counts[t]).isEqualTo(d); // d independent atoms reconstruct any row
      for (int j = 0; j < counts[t]; j++) {
        assertThat(index[t * s + j]).isBetween(0, atoms - 1);
      }
      for (int i = 0; i < d; i++) {
        double v = 0;
        for (int j = 0; j < counts[t]; j++) {
          v += coef[t * s + j] * dict[index[t * s + j] * d + i];
        }
        assertThat(Math.abs(v - x[t * d + i])).isLessThanOrEqualTo(1e-3);
      }
    }
  }
}
