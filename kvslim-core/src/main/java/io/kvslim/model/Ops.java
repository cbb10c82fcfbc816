package io.kvslim.model;

import io.kvslim.tensor.LlamaCppMath;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
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
   * bit. The vector part runs {@link LlamaCppMath#exp}'s operations lane-wise ({@link
   * #swigluVectors}): fused multiply-adds, products, a sum and a quotient, each correctly rounded
   * whether C2 compiles it or the Vector API's Java fallback runs it, so the bits are those of the
   * scalar function.
   */
  public static void swiglu(float[] gate, float[] up, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
      swigluRange(gate, up, cols, r * cols, 0, cols);
    }
  }

  /**
   * {@link #swiglu(float[], float[], int, int)} on the elements {@code [from, to)} of the row of
   * {@code cols} that starts at {@code off} (one thread's slice of a step), with the same
   * per-element functions.
   */
  public static void swigluRange(float[] gate, float[] up, int cols, int off, int from, int to) {
    int vectorPart = cols & ~15;
    int i = from;
    int vectorEnd = Math.min(to, vectorPart);
    if (vectorEnd > i) {
      i = swigluVectors(gate, up, off + i, off + vectorEnd) - off;
    }
    for (; i < to; i++) {
      float g = gate[off + i];
      gate[off + i] =
          (i < vectorPart ? LlamaCppMath.silu(g) : LlamaCppMath.siluTail(g)) * up[off + i];
    }
  }

  /**
   * {@code gate[i] = LlamaCppMath.silu(gate[i]) * up[i]} for whole vectors from {@code i}, bit for
   * bit: {@link LlamaCppMath#exp} of {@code 0 − x} lane by lane, its {@code 2^n} scaling a product
   * with {@code 2^n} built from its exponent bits (exact, or one rounding to a subnormal, as {@code
   * Math.scalb}). A vector with a lane whose {@code n} lies outside [−126, 127] (|x| above ~87,
   * where e^-x over- or underflows) is left to the scalar function. Returns the first element not
   * done.
   */
  private static int swigluVectors(float[] gate, float[] up, int i, int end) {
    int lanes = S.length();
    for (; i + lanes <= end; i += lanes) {
      FloatVector x = FloatVector.fromArray(S, gate, i);
      FloatVector y = FloatVector.zero(S).sub(x);
      FloatVector n =
          y.fma(
                  FloatVector.broadcast(S, LlamaCppMath.EXP_LOG2E),
                  FloatVector.broadcast(S, LlamaCppMath.EXP_ROUNDER))
              .sub(LlamaCppMath.EXP_ROUNDER);
      if (n.compare(VectorOperators.GT, 127f).or(n.compare(VectorOperators.LT, -126f)).anyTrue()) {
        for (int j = i; j < i + lanes; j++) {
          gate[j] = LlamaCppMath.silu(gate[j]) * up[j];
        }
        continue;
      }
      FloatVector minusN = n.neg();
      FloatVector b =
          minusN.fma(
              FloatVector.broadcast(S, LlamaCppMath.EXP_LN2_LO),
              minusN.fma(FloatVector.broadcast(S, LlamaCppMath.EXP_LN2_HI), y));
      FloatVector u = b.mul(b);
      FloatVector p =
          b.fma(
                  FloatVector.broadcast(S, LlamaCppMath.EXP_C5),
                  FloatVector.broadcast(S, LlamaCppMath.EXP_C4))
              .fma(
                  u,
                  b.fma(
                      FloatVector.broadcast(S, LlamaCppMath.EXP_C3),
                      FloatVector.broadcast(S, LlamaCppMath.EXP_C2)))
              .fma(
                  u,
                  b.fma(
                      FloatVector.broadcast(S, LlamaCppMath.EXP_C1), FloatVector.broadcast(S, 1f)));
      FloatVector twoToN =
          ((IntVector) n.convert(VectorOperators.F2I, 0))
              .add(127)
              .lanewise(VectorOperators.LSHL, 23)
              .reinterpretAsFloats();
      FloatVector e = p.mul(twoToN);
      x.div(e.add(1f)).mul(FloatVector.fromArray(S, up, i)).intoArray(gate, i);
    }
    return i;
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

  /**
   * log of the softmax normalizer, computed in double: {@code log(sum exp(x - max)) + max}, the
   * differences {@code x - max} too (as the golden NLL files were computed: in float they would
   * move an NLL by up to ~1e-9, enough to change its 6th decimal now and then).
   */
  public static double logSumExp(float[] x, int off, int n) {
    double max = Double.NEGATIVE_INFINITY;
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
