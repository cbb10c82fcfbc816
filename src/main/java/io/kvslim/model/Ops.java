package io.kvslim.model;

import io.kvslim.tensor.LlamaCppMath;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/** Elementwise kernels of the forward pass: RMSNorm, SwiGLU, residual adds, softmax. */
public final class Ops {
  private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;

  private Ops() {}

  /**
   * RMSNorm (Zhang and Sennrich 2019, eq. 4): {@code out = x / sqrt(mean(x^2) + eps) * w}. The sum
   * of squares is accumulated in double, as ggml does.
   */
  public static void rmsNorm(
      float[] out, int outOff, float[] x, int xOff, float[] w, int n, float eps) {
    double sum = 0;
    for (int i = 0; i < n; i++) {
      float v = x[xOff + i];
      sum += v * v;
    }
    float mean = (float) (sum / n);
    float scale = 1.0f / (float) Math.sqrt(mean + eps);
    int i = 0;
    int upper = S.loopBound(n);
    FloatVector vs = FloatVector.broadcast(S, scale);
    for (; i < upper; i += S.length()) {
      FloatVector v = FloatVector.fromArray(S, x, xOff + i).mul(vs);
      v.mul(FloatVector.fromArray(S, w, i)).intoArray(out, outOff + i);
    }
    for (; i < n; i++) {
      out[outOff + i] = (x[xOff + i] * scale) * w[i];
    }
  }

  /**
   * SwiGLU (Shazeer 2020) over {@code rows} rows of {@code cols}: {@code gate[i] = silu(gate[i]) *
   * up[i]}, silu(x) = x / (1 + e^-x), with the exponential ggml's SiLU uses ({@link
   * LlamaCppMath#silu}: its vector path over the first {@code cols − cols mod 16} of each row, the
   * C library's {@code expf} after), so the result equals llama.cpp's {@code ffn_gate_par} bit for
   * bit. Scalar on purpose: the Vector API's transcendental functions differ between the
   * interpreter and C2; this is plain float arithmetic, the same in both.
   */
  public static void swiglu(float[] gate, float[] up, int rows, int cols) {
    int vectorPart = cols & ~15;
    for (int r = 0; r < rows; r++) {
      int off = r * cols;
      for (int i = off; i < off + vectorPart; i++) {
        gate[i] = LlamaCppMath.silu(gate[i]) * up[i];
      }
      for (int i = off + vectorPart; i < off + cols; i++) {
        gate[i] = LlamaCppMath.siluTail(gate[i]) * up[i];
      }
    }
  }

  /**
   * {@link #swiglu(float[], float[], int, int)} on the elements {@code [from, to)} of the row of
   * {@code cols} that starts at {@code off} (one thread's slice of a step), with the same
   * per-element functions.
   */
  public static void swigluRange(float[] gate, float[] up, int cols, int off, int from, int to) {
    int vectorPart = cols & ~15;
    for (int i = from; i < to; i++) {
      float g = gate[off + i];
      gate[off + i] =
          (i < vectorPart ? LlamaCppMath.silu(g) : LlamaCppMath.siluTail(g)) * up[off + i];
    }
  }

  /** {@code a[i] += b[i]}. */
  public static void add(float[] a, float[] b, int n) {
    int i = 0;
    int upper = S.loopBound(n);
    for (; i < upper; i += S.length()) {
      FloatVector.fromArray(S, a, i).add(FloatVector.fromArray(S, b, i)).intoArray(a, i);
    }
    for (; i < n; i++) {
      a[i] += b[i];
    }
  }

  /** {@code a[i] += b[i]} over a range of rows sharing a bias {@code b} of length n. */
  public static void addBias(float[] a, int rows, float[] b, int n) {
    for (int r = 0; r < rows; r++) {
      int off = r * n;
      for (int i = 0; i < n; i++) {
        a[off + i] += b[i];
      }
    }
  }

  /** Index of the largest value (first on ties). */
  public static int argmax(float[] x, int off, int n) {
    int best = 0;
    float bv = x[off];
    for (int i = 1; i < n; i++) {
      if (x[off + i] > bv) {
        bv = x[off + i];
        best = i;
      }
    }
    return best;
  }

  /** log of the softmax normalizer, computed in double: {@code log(sum exp(x - max)) + max}. */
  public static double logSumExp(float[] x, int off, int n) {
    float max = Float.NEGATIVE_INFINITY;
    for (int i = 0; i < n; i++) {
      max = Math.max(max, x[off + i]);
    }
    double sum = 0;
    for (int i = 0; i < n; i++) {
      sum += Math.exp(x[off + i] - max);
    }
    return Math.log(sum) + max;
  }
}
