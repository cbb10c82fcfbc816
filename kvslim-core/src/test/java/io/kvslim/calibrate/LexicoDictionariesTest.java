package io.kvslim.calibrate;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** Lexico's dictionary learning on synthetic sparse data (no model needed). */
class LexicoDictionariesTest {
  static final int D = 16;

  /**
   * {@code n} vectors, each a sum of 3 atoms of a hidden dictionary of 40 unit-norm atoms with
   * random coefficients, plus a little noise.
   */
  static float[] sparseData(int n, SplittableRandom r) {
    int hidden = 40;
    float[] truth = new float[hidden * D];
    for (int i = 0; i < truth.length; i++) {
      truth[i] = (float) (r.nextDouble() * 2 - 1);
    }
    for (int a = 0; a < hidden; a++) {
      double n2 = 0;
      for (int i = 0; i < D; i++) {
        n2 += truth[a * D + i] * truth[a * D + i];
      }
      for (int i = 0; i < D; i++) {
        truth[a * D + i] /= (float) Math.sqrt(n2);
      }
    }
    float[] x = new float[n * D];
    for (int t = 0; t < n; t++) {
      for (int j = 0; j < 3; j++) {
        int a = r.nextInt(hidden);
        double c = r.nextDouble() * 4 - 2;
        for (int i = 0; i < D; i++) {
          x[t * D + i] += (float) (c * truth[a * D + i]);
        }
      }
      for (int i = 0; i < D; i++) {
        x[t * D + i] += (float) (0.01 * (r.nextDouble() - 0.5));
      }
    }
    return x;
  }

  static void assertUnitNorm(float[] dict, int atoms) {
    for (int a = 0; a < atoms; a++) {
      double n2 = 0;
      for (int i = 0; i < D; i++) {
        n2 += (double) dict[a * D + i] * dict[a * D + i];
      }
      assertThat(Math.sqrt(n2))
          .as("atom %d", a)
          .isCloseTo(1.0, org.assertj.core.data.Offset.offset(1e-5));
    }
  }

  /**
   * Every round keeps the atoms of unit norm; the least-squares update with the round's codes never
   * increases the reconstruction error on the sample (the codes rescaled with their atoms), and the
   * re-coded error after a few rounds is well below the starting one.
   */
  @Test
  void updatesKeepUnitAtomsAndNeverIncreaseTheError() {
    int n = 600;
    int atoms = 64;
    int s = 3;
    float[] x = sparseData(n, new SplittableRandom(7));
    float[] dict = LexicoDictionaries.initial(x, n, D, atoms, new SplittableRandom(1));
    assertUnitNorm(dict, atoms);
    double first = -1;
    double last = -1;
    for (int round = 0; round < 6; round++) {
      LexicoDictionaries.Codes codes = LexicoDictionaries.encode(dict, atoms, x, n, D, s);
      double before = LexicoDictionaries.error(dict, x, n, D, codes);
      LexicoDictionaries.update(dict, atoms, x, n, D, codes);
      double after = LexicoDictionaries.error(dict, x, n, D, codes);
      assertThat(after).as("round %d", round).isLessThanOrEqualTo(before * (1 + 1e-5) + 1e-9);
      assertUnitNorm(dict, atoms);
      if (first < 0) {
        first = before;
      }
      last =
          LexicoDictionaries.error(
              dict, x, n, D, LexicoDictionaries.encode(dict, atoms, x, n, D, s));
    }
    assertThat(last).isLessThan(first * 0.7);
  }

  /**
   * The Gram-matrix OMP of training picks the same atoms as the reference {@link
   * io.kvslim.kv.format.Omp} (on a dictionary without near ties) and its coefficients agree.
   */
  @Test
  void trainingOmpMatchesTheReferenceOmp() {
    int n = 200;
    int atoms = 48;
    int s = 4;
    SplittableRandom r = new SplittableRandom(11);
    float[] x = sparseData(n, r);
    float[] dict = LexicoDictionaries.initial(sparseData(atoms, r), atoms, D, atoms, r);
    LexicoDictionaries.Codes codes = LexicoDictionaries.encode(dict, atoms, x, n, D, s);
    int[] index = new int[s];
    float[] coef = new float[s];
    int same = 0;
    for (int t = 0; t < n; t++) {
      int k = io.kvslim.kv.format.Omp.encode(dict, atoms, D, x, t * D, s, index, coef, null);
      boolean all = k == s;
      for (int j = 0; j < k && all; j++) {
        all = codes.index()[t * s + j] == index[j];
        if (all) {
          assertThat(codes.coef()[t * s + j])
              .isCloseTo(
                  coef[j], org.assertj.core.data.Offset.offset(1e-3f * (1 + Math.abs(coef[j]))));
        }
      }
      same += all ? 1 : 0;
    }
    assertThat(same).isGreaterThanOrEqualTo(n * 95 / 100);
  }

  /** With fewer samples than atoms the rest start as random unit vectors; same seed, same bytes. */
  @Test
  void smallSamplesAndSeedsAreDeterministic() {
    float[] x = sparseData(10, new SplittableRandom(3));
    float[] a = LexicoDictionaries.initial(x, 10, D, 32, new SplittableRandom(5));
    float[] b = LexicoDictionaries.initial(x, 10, D, 32, new SplittableRandom(5));
    assertUnitNorm(a, 32);
    assertThat(a).containsExactly(b);
    LexicoDictionaries.round(a, 32, x, 10, D, 4);
    LexicoDictionaries.round(b, 32, x, 10, D, 4);
    assertUnitNorm(a, 32);
    assertThat(a).containsExactly(b);
  }
}
