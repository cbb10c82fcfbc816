package io.kvslim.kv.format;

/**
 * Orthogonal Matching Pursuit over a dictionary of unit-norm atoms (METHODS.md Q9 step 3). The
 * authors' dictionary training encodes with {@code omp_v0(D, k, DᵀD, s)} (krafton-ai/lexico, {@code
 * lexico/dictionary_learning/model.py}, {@code Autoencoder.encode}, lines 23–28); {@code
 * lexico/omp.py} itself was not in the stored snapshot, so this follows the paper's description:
 * greedily pick the atom most correlated with the residual, re-solve least squares on the chosen
 * atoms, and repeat until {@code s} atoms are chosen or the residual is zero. This implementation
 * solves the normal equations {@code (D_Sᵀ D_S) c = D_Sᵀ x} in double by Cholesky, and never picks
 * an atom twice.
 */
public final class Omp {
  private Omp() {}

  /**
   * Codes {@code x[off..+d)} with at most {@code s} atoms of {@code dict} ({@code atoms × d},
   * atom-major). Writes the chosen atoms to {@code index} and their coefficients to {@code coef};
   * returns how many were chosen. {@code residualNorms}, when not null, receives ‖x − D_S c‖ after
   * each iteration.
   */
  public static int encode(
      float[] dict,
      int atoms,
      int d,
      float[] x,
      int off,
      int s,
      int[] index,
      float[] coef,
      double[] residualNorms) {
    double[] r = new double[d];
    for (int i = 0; i < d; i++) {
      r[i] = x[off + i];
    }
    double[] gram = new double[s * s];
    double[] rhs = new double[s];
    double[] c = new double[s];
    boolean[] used = new boolean[atoms];
    int k = 0;
    while (k < s) {
      double norm = 0;
      for (double v : r) {
        norm += v * v;
      }
      if (norm == 0) {
        break;
      }
      int best = -1;
      double bestAbs = -1;
      for (int a = 0; a < atoms; a++) {
        if (used[a]) {
          continue;
        }
        double dot = 0;
        for (int i = 0; i < d; i++) {
          dot += dict[a * d + i] * r[i];
        }
        if (Math.abs(dot) > bestAbs) {
          bestAbs = Math.abs(dot);
          best = a;
        }
      }
      if (bestAbs <= 0) {
        break;
      }
      used[best] = true;
      index[k] = best;
      for (int j = 0; j <= k; j++) {
        double g = 0;
        for (int i = 0; i < d; i++) {
          g += (double) dict[index[j] * d + i] * dict[best * d + i];
        }
        gram[k * s + j] = g;
        gram[j * s + k] = g;
      }
      double b = 0;
      for (int i = 0; i < d; i++) {
        b += (double) dict[best * d + i] * x[off + i];
      }
      rhs[k] = b;
      k++;
      if (!solve(gram, s, rhs, k, c)) {
        k--; // the new atom is (numerically) in the span of the others: stop before it
        used[best] = false;
        solve(gram, s, rhs, k, c);
        break;
      }
      for (int i = 0; i < d; i++) {
        double v = x[off + i];
        for (int j = 0; j < k; j++) {
          v -= c[j] * dict[index[j] * d + i];
        }
        r[i] = v;
      }
      if (residualNorms != null) {
        double n2 = 0;
        for (double v : r) {
          n2 += v * v;
        }
        residualNorms[k - 1] = Math.sqrt(n2);
      }
    }
    for (int j = 0; j < k; j++) {
      coef[j] = (float) c[j];
    }
    return k;
  }

  /**
   * Solves the leading {@code k × k} system by Cholesky; false when it is not positive definite.
   */
  static boolean solve(double[] a, int stride, double[] b, int k, double[] out) {
    double[] l = new double[k * k];
    for (int i = 0; i < k; i++) {
      for (int j = 0; j <= i; j++) {
        double sum = a[i * stride + j];
        for (int m = 0; m < j; m++) {
          sum -= l[i * k + m] * l[j * k + m];
        }
        if (i == j) {
          if (sum <= 1e-10 * Math.max(1, a[i * stride + i])) {
            return false;
          }
          l[i * k + i] = Math.sqrt(sum);
        } else {
          l[i * k + j] = sum / l[j * k + j];
        }
      }
    }
    double[] y = new double[k];
    for (int i = 0; i < k; i++) {
      double sum = b[i];
      for (int m = 0; m < i; m++) {
        sum -= l[i * k + m] * y[m];
      }
      y[i] = sum / l[i * k + i];
    }
    for (int i = k - 1; i >= 0; i--) {
      double sum = y[i];
      for (int m = i + 1; m < k; m++) {
        sum -= l[m * k + i] * out[m];
      }
      out[i] = sum / l[i * k + i];
    }
    return true;
  }
}
