package io.kvslim.calibrate;

import io.kvslim.kv.attention.VectorKernels;
import io.kvslim.kv.format.Omp;

/**
 * The linear algebra of {@link LexicoDictionaries}' training: orthogonal matching pursuit over a
 * batch of samples from the Gram matrix, and a dense Cholesky solve for the dictionary update.
 */
final class GramOmp {
  private GramOmp() {}

  /**
   * Codes every sample of {@code x} by orthogonal matching pursuit at sparsity {@code s}: the same
   * greedy choice and least-squares re-solve as {@link Omp}, computed from the Gram matrix {@code
   * DᵀD} and {@code Dᵀx} (the correlations with the residual are {@code Dᵀx − DᵀD_S c}), so an
   * iteration costs N·k instead of N·d; the authors' {@code omp_v0} takes {@code DᵀD} the same way
   * ({@code lexico/dictionary_learning/model.py} line 26).
   */
  static LexicoDictionaries.Codes encode(float[] dict, int atoms, float[] x, int n, int d, int s) {
    float[] gram = new float[atoms * atoms];
    for (int a = 0; a < atoms; a++) {
      for (int b = 0; b <= a; b++) {
        float g = VectorKernels.dot(dict, a * d, dict, b * d, d);
        gram[a * atoms + b] = g;
        gram[b * atoms + a] = g;
      }
    }
    int[] index = new int[n * s];
    float[] coef = new float[n * s];
    double[] h = new double[atoms];
    double[] corr = new double[atoms];
    boolean[] used = new boolean[atoms];
    double[] sub = new double[s * s];
    double[] rhs = new double[s];
    double[] c = new double[s];
    int[] idx = new int[s];
    for (int t = 0; t < n; t++) {
      double x2 = 0;
      for (int i = 0; i < d; i++) {
        x2 += (double) x[t * d + i] * x[t * d + i];
      }
      for (int a = 0; a < atoms; a++) {
        h[a] = VectorKernels.dot(dict, a * d, x, t * d, d);
        corr[a] = h[a];
      }
      int k = 0;
      while (k < s) {
        int best = -1;
        double bestAbs = 1e-7 * Math.sqrt(x2);
        for (int a = 0; a < atoms; a++) {
          if (!used[a] && Math.abs(corr[a]) > bestAbs) {
            bestAbs = Math.abs(corr[a]);
            best = a;
          }
        }
        if (best < 0) {
          break; // the residual is (numerically) zero
        }
        used[best] = true;
        idx[k] = best;
        for (int j = 0; j <= k; j++) {
          sub[k * s + j] = gram[best * atoms + idx[j]];
          sub[j * s + k] = sub[k * s + j];
        }
        rhs[k] = h[best];
        k++;
        if (!solveSmall(sub, s, rhs, k, c)) {
          k--; // the new atom is in the span of the others: stop before it
          solveSmall(sub, s, rhs, k, c);
          break;
        }
        for (int a = 0; a < atoms; a++) {
          double v = h[a];
          for (int j = 0; j < k; j++) {
            v -= c[j] * gram[idx[j] * atoms + a];
          }
          corr[a] = v;
        }
      }
      for (int j = 0; j < k; j++) {
        index[t * s + j] = idx[j];
        coef[t * s + j] = (float) c[j];
      }
      for (int a = 0; a < atoms; a++) {
        used[a] = false;
      }
    }
    return new LexicoDictionaries.Codes(s, index, coef);
  }

  /**
   * Solves the leading {@code k × k} system by Cholesky; false when it is not positive definite.
   */
  private static boolean solveSmall(double[] a, int stride, double[] b, int k, double[] out) {
    double[] l = new double[k * k];
    for (int i = 0; i < k; i++) {
      for (int j = 0; j <= i; j++) {
        double sum = a[i * stride + j];
        for (int m = 0; m < j; m++) {
          sum -= l[i * k + m] * l[j * k + m];
        }
        if (i == j) {
          if (sum <= 1e-8 * Math.max(1, a[i * stride + i])) {
            return false;
          }
          l[i * k + i] = Math.sqrt(sum);
        } else {
          l[i * k + j] = sum / l[j * k + j];
        }
      }
    }
    System.arraycopy(b, 0, out, 0, k);
    solveInPlace(l, k, out);
    return true;
  }

  /** Lower Cholesky factor of the symmetric positive definite {@code a} ({@code m × m}). */
  static double[] cholesky(double[] a, int m) {
    double[] l = new double[m * m];
    for (int i = 0; i < m; i++) {
      for (int j = 0; j <= i; j++) {
        double sum = a[i * m + j];
        for (int k = 0; k < j; k++) {
          sum -= l[i * m + k] * l[j * m + k];
        }
        if (i == j) {
          l[i * m + i] = Math.sqrt(Math.max(sum, 1e-300));
        } else {
          l[i * m + j] = sum / l[j * m + j];
        }
      }
    }
    return l;
  }

  /** Solves {@code L Lᵀ z = b} in place. */
  static void solveInPlace(double[] l, int m, double[] b) {
    for (int i = 0; i < m; i++) {
      double sum = b[i];
      for (int k = 0; k < i; k++) {
        sum -= l[i * m + k] * b[k];
      }
      b[i] = sum / l[i * m + i];
    }
    for (int i = m - 1; i >= 0; i--) {
      double sum = b[i];
      for (int k = i + 1; k < m; k++) {
        sum -= l[k * m + i] * b[k];
      }
      b[i] = sum / l[i * m + i];
    }
  }
}
