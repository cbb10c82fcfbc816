package io.kvslim.tensor;

/**
 * Matrix-vector and matrix-matrix products of a {@link WeightMatrix} with float activations, rows
 * split across a {@link Parallel} pool.
 */
public final class MatMul {
  /** Fewest weight rows per task, so tasks are worth scheduling and write whole cache lines. */
  public static final int ROW_GRAIN = 16;

  private MatMul() {}

  /** {@code out[r] = w.row(r) · x} for every row {@code r}; {@code x} holds {@code w.cols()}. */
  public static void matvec(WeightMatrix w, float[] x, float[] out, Parallel pool) {
    checkLengths(w, x, 1, out);
    pool.forRange(w.rows(), ROW_GRAIN, (start, end) -> w.dotRows(start, end - start, x, out));
  }

  /**
   * {@code outs[i][r] = ws[i].row(r) · x} for every matrix {@code i} (all with {@code x.length}
   * columns) in one dispatch over their rows together: one barrier instead of one per matrix (the
   * Q, K and V projections of a decode step). Each product is bit-identical to {@link #matvec}'s.
   */
  public static void matvecs(WeightMatrix[] ws, float[] x, float[][] outs, Parallel pool) {
    for (int i = 0; i < ws.length; i++) {
      checkLengths(ws[i], x, 1, outs[i]);
    }
    forRowsOf(ws, pool, (i, start, count) -> ws[i].dotRows(start, count, x, outs[i]));
  }

  /**
   * {@link #matmul} of each matrix {@code ws[i]} (all with the same columns) with the same {@code
   * n} activation rows into {@code outs[i]}, in one dispatch over their rows together: one barrier
   * instead of one per matrix (the Q, K and V projections of a batched step). Each product is
   * bit-identical to {@link #matmul}'s.
   */
  public static void matmuls(WeightMatrix[] ws, float[] x, int n, float[][] outs, Parallel pool) {
    for (int i = 0; i < ws.length; i++) {
      checkLengths(ws[i], x, n, outs[i]);
    }
    forRowsOf(ws, pool, (i, start, count) -> ws[i].matmulRows(start, count, x, n, outs[i]));
  }

  /** Rows {@code [start, start + count)} of matrix {@code matrix}. */
  @FunctionalInterface
  private interface RowsTask {
    void run(int matrix, int start, int count);
  }

  /** Splits the rows of all the matrices, one after the other, over the pool. */
  private static void forRowsOf(WeightMatrix[] ws, Parallel pool, RowsTask task) {
    int total = 0;
    for (WeightMatrix w : ws) {
      total += w.rows();
    }
    pool.forRange(
        total,
        ROW_GRAIN,
        (start, end) -> {
          int first = 0;
          for (int i = 0; i < ws.length && start < end; i++) {
            int rows = ws[i].rows();
            int s = Math.max(start, first);
            int e = Math.min(end, first + rows);
            if (s < e) {
              task.run(i, s - first, e - s);
            }
            first += rows;
          }
        });
  }

  /**
   * {@code out[t][r] = w.row(r) · x[t]} for {@code n} activation rows: {@code x} is {@code n ×
   * cols} and {@code out} is {@code n × rows}, both row-major. Each weight row is decoded once for
   * all activation rows by {@link WeightMatrix#dotTile} (the activations, re-read per weight row,
   * stay in cache while {@code n × cols} floats fit there).
   */
  public static void matmul(WeightMatrix w, float[] x, int n, float[] out, Parallel pool) {
    checkLengths(w, x, n, out);
    if (n == 1) {
      matvec(w, x, out, pool);
      return;
    }
    int rows = w.rows();
    int cols = w.cols();
    pool.forRange(rows, ROW_GRAIN, (start, end) -> w.matmulRows(start, end - start, x, n, out));
  }

  private static void checkLengths(WeightMatrix w, float[] x, int n, float[] out) {
    if (n < 1) {
      throw new IllegalArgumentException("need at least one activation row, got " + n);
    }
    if (x.length < (long) n * w.cols()) {
      throw new IllegalArgumentException(
          "activations hold " + x.length + " floats, need " + n + " x " + w.cols());
    }
    if (out.length < (long) n * w.rows()) {
      throw new IllegalArgumentException(
          "output holds " + out.length + " floats, need " + n + " x " + w.rows());
    }
  }
}
