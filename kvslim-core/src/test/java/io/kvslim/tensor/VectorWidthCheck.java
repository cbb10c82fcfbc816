package io.kvslim.tensor;

import io.kvslim.gguf.GgmlType;

/**
 * Checks every type's vector and tiled kernels against the scalar reference at this JVM's vector
 * width; {@link VectorWidthTest} runs it in JVMs capped at 128 and 256 bits. Exits 1 on a mismatch.
 */
public final class VectorWidthCheck {
  private static final int ROWS = 2;
  private static final int TILE = 6;
  private static final int ROUNDS = 20;

  private VectorWidthCheck() {}

  public static void main(String[] args) {
    int failures = 0;
    for (GgmlType type : RandomWeights.TYPES) {
      int block = type.blockSize();
      for (int cols : block == 1 ? new int[] {5, 37, 100} : new int[] {block, 2 * block}) {
        failures += check(type, cols);
      }
    }
    for (GgmlType type : RandomWeights.TYPES) {
      failures += checkMatMul(type, type.blockSize() == 1 ? 64 : 2 * type.blockSize());
    }
    System.out.println(
        "float lanes " + Simd.FL + ", byte lanes " + Simd.BL + ", failures " + failures);
    System.exit(failures == 0 ? 0 : 1);
  }

  /**
   * The decode (matvec: several weight rows per pass) and prefill (matmul: panels and tiles)
   * kernels must give exactly {@link WeightMatrix#dot}'s bits at this width too.
   */
  private static int checkMatMul(GgmlType type, int cols) {
    int rows = 37;
    int n = 6;
    WeightMatrix w = RandomWeights.matrix(type, rows, cols, cols + 7);
    float[] x = RandomWeights.activations(n * cols, cols + 8);
    float[] mm = new float[n * rows];
    float[] mv = new float[rows];
    int failures = 0;
    try (Parallel pool = new Parallel(1)) {
      for (int round = 0; round < ROUNDS && failures == 0; round++) {
        MatMul.matmul(w, x, n, mm, pool);
        MatMul.matvec(w, x, mv, pool);
        for (int r = 0; r < rows; r++) {
          if (mv[r] != w.dot(r, x, 0)) {
            System.out.printf("MISMATCH %s matvec row=%d round=%d%n", type, r, round);
            failures++;
          }
          for (int t = 0; t < n; t++) {
            if (mm[t * rows + r] != w.dot(r, x, t * cols)) {
              System.out.printf("MISMATCH %s matmul row=%d t=%d round=%d%n", type, r, t, round);
              failures++;
            }
          }
        }
      }
    }
    return failures;
  }

  private static int check(GgmlType type, int cols) {
    WeightMatrix w = RandomWeights.matrix(type, ROWS, cols, cols);
    float[] x = RandomWeights.activations(TILE * cols, cols + 1);
    float[] scalar = new float[ROWS * TILE];
    float[] tolerance = new float[ROWS * TILE];
    for (int r = 0; r < ROWS; r++) {
      for (int t = 0; t < TILE; t++) {
        scalar[r * TILE + t] = w.dotScalar(r, x, t * cols);
        tolerance[r * TILE + t] = (float) RandomWeights.tolerance(w, r, x, t * cols);
      }
    }
    // Later rounds run the kernels compiled by C2 (see the JVM flags in VectorWidthTest).
    int failures = 0;
    float[] tile = new float[TILE];
    for (int round = 0; round < ROUNDS && failures == 0; round++) {
      for (int r = 0; r < ROWS; r++) {
        w.dotTile(r, x, 0, cols, TILE, tile, 0, 1);
        for (int t = 0; t < TILE; t++) {
          float expected = scalar[r * TILE + t];
          float vector = w.dot(r, x, t * cols);
          float tol = tolerance[r * TILE + t];
          if (Math.abs(vector - expected) > tol || Math.abs(tile[t] - expected) > tol) {
            System.out.printf(
                "MISMATCH %s cols=%d row=%d t=%d round=%d scalar=%s vector=%s tile=%s%n",
                type, cols, r, t, round, expected, vector, tile[t]);
            failures++;
          }
        }
      }
    }
    return failures;
  }
}
