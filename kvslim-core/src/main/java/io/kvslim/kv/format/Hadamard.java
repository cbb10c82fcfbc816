package io.kvslim.kv.format;

/**
 * The orthonormal Sylvester Hadamard rotation Π = H/√d that TurboQuant applies to keys (METHODS.md
 * N1 step 3), as vLLM builds it (vllm-project/vllm, {@code
 * vllm/v1/attention/backends/turboquant_attn.py}, {@code _build_hadamard_cached}: {@code H ← [[H,
 * H], [H, −H]]} from {@code [[1]]}, divided by √d), shared by all layers. Π is symmetric, so Π⁻¹ =
 * Πᵀ = Π. Applied by the fast Walsh–Hadamard transform, O(d log d), in place.
 */
public final class Hadamard {
  private Hadamard() {}

  /** Whether {@code d} is a power of 2 (what Π needs). */
  public static boolean fits(int d) {
    return d > 0 && (d & (d - 1)) == 0;
  }

  /** {@code x[off..off+d) ← Π·x}: the butterflies of H (Sylvester order), then 1/√d. */
  public static void rotate(float[] x, int off, int d) {
    for (int h = 1; h < d; h <<= 1) {
      for (int i = off; i < off + d; i += 2 * h) {
        for (int j = i; j < i + h; j++) {
          float a = x[j];
          float b = x[j + h];
          x[j] = a + b;
          x[j + h] = a - b;
        }
      }
    }
    float scale = (float) (1.0 / Math.sqrt(d));
    for (int j = off; j < off + d; j++) {
      x[j] *= scale;
    }
  }

  /** The matrix Π = H/√d built by the Sylvester recursion, row-major (for tests and references). */
  public static double[][] matrix(int d) {
    if (!fits(d)) {
      throw new IllegalArgumentException("a Hadamard matrix needs a power of 2, got " + d);
    }
    int[][] h = {{1}};
    while (h.length < d) {
      int n = h.length;
      int[][] next = new int[2 * n][2 * n];
      for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) {
          next[i][j] = h[i][j];
          next[i][j + n] = h[i][j];
          next[i + n][j] = h[i][j];
          next[i + n][j + n] = -h[i][j];
        }
      }
      h = next;
    }
    double s = 1.0 / Math.sqrt(d);
    double[][] m = new double[d][d];
    for (int i = 0; i < d; i++) {
      for (int j = 0; j < d; j++) {
        m[i][j] = h[i][j] * s;
      }
    }
    return m;
  }
}
