package io.kvslim.tensor;

/** Temporary matmul (replaced by the tiled kernels). */
public final class MatMul {
  private MatMul() {}

  public static void matvec(WeightMatrix w, float[] x, float[] out, Parallel pool) {
    matmul(w, x, 1, out, pool);
  }

  public static void matmul(WeightMatrix w, float[] x, int n, float[] out, Parallel pool) {
    int rows = w.rows();
    int cols = w.cols();
    pool.forRange(
        rows,
        16,
        (s, e) -> {
          for (int r = s; r < e; r++) {
            for (int t = 0; t < n; t++) {
              out[t * rows + r] = w.dot(r, x, t * cols);
            }
          }
        });
  }
}
