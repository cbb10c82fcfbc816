package io.kvslim.kv.format;

import io.kvslim.kv.attention.VectorKernels;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * {@link Omp} for a chunk of rows at a time, from the dictionary's Gram matrix: the batched OMP of
 * the Lexico authors' {@code omp_v0} (krafton-ai/lexico, {@code lexico/omp.py}: the projections
 * {@code Dᵀy} of every signal at once, line 28; the argmax of their magnitudes, line 64; the Gram
 * row of the chosen atom, line 65; the projections updated from Gram rows instead of a new {@code
 * Dᵀr}, line 84).
 *
 * <p>Per row: {@code h = Dᵀx} once (for four rows at a time, lanes over atoms, so no horizontal
 * sums), then each iteration picks the unused atom of largest {@code |corr|} and sets {@code corr =
 * h − Σ_j c_j G[a_j, :]}, which equals {@code Dᵀ(x − D_S c)}: an iteration costs {@code k·N}
 * instead of {@code N·d}. The least-squares step is {@link Omp}'s own: the sub-Gram matrix and
 * {@code D_Sᵀx} in double from the dictionary and the same Cholesky solve, so for the same atoms
 * the coefficients are {@link Omp#encode}'s bit for bit. Only the correlations are in float (theirs
 * are in double): the atoms chosen are {@link Omp}'s unless two correlations tie within float
 * rounding.
 *
 * <p>The transposed dictionary and the Gram matrix ({@code N × N} floats, 4 MiB for 1024 atoms) are
 * built on first use. Thread-safe: every call has its own scratch.
 */
final class OmpEncoder {
  private static final VectorSpecies<Float> F = VectorKernels.FLOATS;
  private static final int L = F.length();

  private final float[] dict; // [atom][channel]
  private final int atoms;
  private final int d;
  private final int padded; // atoms rounded up to two vectors; the padding atoms are zero
  private volatile Tables tables;

  private record Tables(float[] transposed, float[] gram) {}

  OmpEncoder(float[] dict, int atoms, int d) {
    this.dict = dict;
    this.atoms = atoms;
    this.d = d;
    this.padded = (atoms + 2 * L - 1) / (2 * L) * (2 * L);
  }

  /** Atoms rounded up to two vectors: the length of a projection ({@link #project}). */
  int padded() {
    return padded;
  }

  /** The dictionary transposed, {@code d × padded} (channel-major, padding atoms zero). */
  float[] transposed() {
    return tables().transposed;
  }

  private Tables tables() {
    Tables t = tables;
    if (t == null) {
      synchronized (this) {
        t = tables;
        if (t == null) {
          float[] transposed = new float[d * padded];
          for (int a = 0; a < atoms; a++) {
            for (int i = 0; i < d; i++) {
              transposed[i * padded + a] = dict[a * d + i];
            }
          }
          float[] gram = new float[atoms * padded];
          project(transposed, padded, d, dict, 0, d, atoms, gram, 0, padded);
          t = new Tables(transposed, gram);
          tables = t;
        }
      }
    }
    return t;
  }

  /**
   * {@code h[hOff + t·hStride + a] = Σ_i x[xOff + t·xStride + i] · dt[i·padded + a]} for {@code t <
   * count} and every (padded) atom, each sum a chain of fused multiply-adds in channel order from
   * 0, whatever the row's place in the chunk (so a row's codes never depend on its chunk).
   */
  static void project(
      float[] dt,
      int padded,
      int d,
      float[] x,
      int xOff,
      int xStride,
      int count,
      float[] h,
      int hOff,
      int hStride) {
    int t = 0;
    for (; t + 3 < count; t += 4) {
      int x0 = xOff + t * xStride;
      int x1 = x0 + xStride;
      int x2 = x1 + xStride;
      int x3 = x2 + xStride;
      int h0 = hOff + t * hStride;
      for (int a = 0; a < padded; a += 2 * L) {
        FloatVector s00 = FloatVector.zero(F);
        FloatVector s01 = FloatVector.zero(F);
        FloatVector s10 = FloatVector.zero(F);
        FloatVector s11 = FloatVector.zero(F);
        FloatVector s20 = FloatVector.zero(F);
        FloatVector s21 = FloatVector.zero(F);
        FloatVector s30 = FloatVector.zero(F);
        FloatVector s31 = FloatVector.zero(F);
        for (int i = 0; i < d; i++) {
          FloatVector v0 = FloatVector.fromArray(F, dt, i * padded + a);
          FloatVector v1 = FloatVector.fromArray(F, dt, i * padded + a + L);
          FloatVector b0 = FloatVector.broadcast(F, x[x0 + i]);
          FloatVector b1 = FloatVector.broadcast(F, x[x1 + i]);
          FloatVector b2 = FloatVector.broadcast(F, x[x2 + i]);
          FloatVector b3 = FloatVector.broadcast(F, x[x3 + i]);
          s00 = v0.fma(b0, s00);
          s01 = v1.fma(b0, s01);
          s10 = v0.fma(b1, s10);
          s11 = v1.fma(b1, s11);
          s20 = v0.fma(b2, s20);
          s21 = v1.fma(b2, s21);
          s30 = v0.fma(b3, s30);
          s31 = v1.fma(b3, s31);
        }
        s00.intoArray(h, h0 + a);
        s01.intoArray(h, h0 + a + L);
        s10.intoArray(h, h0 + hStride + a);
        s11.intoArray(h, h0 + hStride + a + L);
        s20.intoArray(h, h0 + 2 * hStride + a);
        s21.intoArray(h, h0 + 2 * hStride + a + L);
        s30.intoArray(h, h0 + 3 * hStride + a);
        s31.intoArray(h, h0 + 3 * hStride + a + L);
      }
    }
    for (; t < count; t++) {
      int x0 = xOff + t * xStride;
      int h0 = hOff + t * hStride;
      int a = 0;
      for (; a + 8 * L <= padded; a += 8 * L) {
        // eight atom vectors at a time: eight independent chains (one row has no others to hide
        // the latency of a chain of fused multiply-adds behind)
        FloatVector s0 = FloatVector.zero(F);
        FloatVector s1 = FloatVector.zero(F);
        FloatVector s2 = FloatVector.zero(F);
        FloatVector s3 = FloatVector.zero(F);
        FloatVector s4 = FloatVector.zero(F);
        FloatVector s5 = FloatVector.zero(F);
        FloatVector s6 = FloatVector.zero(F);
        FloatVector s7 = FloatVector.zero(F);
        for (int i = 0; i < d; i++) {
          FloatVector b0 = FloatVector.broadcast(F, x[x0 + i]);
          int at = i * padded + a;
          s0 = FloatVector.fromArray(F, dt, at).fma(b0, s0);
          s1 = FloatVector.fromArray(F, dt, at + L).fma(b0, s1);
          s2 = FloatVector.fromArray(F, dt, at + 2 * L).fma(b0, s2);
          s3 = FloatVector.fromArray(F, dt, at + 3 * L).fma(b0, s3);
          s4 = FloatVector.fromArray(F, dt, at + 4 * L).fma(b0, s4);
          s5 = FloatVector.fromArray(F, dt, at + 5 * L).fma(b0, s5);
          s6 = FloatVector.fromArray(F, dt, at + 6 * L).fma(b0, s6);
          s7 = FloatVector.fromArray(F, dt, at + 7 * L).fma(b0, s7);
        }
        s0.intoArray(h, h0 + a);
        s1.intoArray(h, h0 + a + L);
        s2.intoArray(h, h0 + a + 2 * L);
        s3.intoArray(h, h0 + a + 3 * L);
        s4.intoArray(h, h0 + a + 4 * L);
        s5.intoArray(h, h0 + a + 5 * L);
        s6.intoArray(h, h0 + a + 6 * L);
        s7.intoArray(h, h0 + a + 7 * L);
      }
      for (; a < padded; a += 2 * L) {
        FloatVector s00 = FloatVector.zero(F);
        FloatVector s01 = FloatVector.zero(F);
        for (int i = 0; i < d; i++) {
          FloatVector b0 = FloatVector.broadcast(F, x[x0 + i]);
          s00 = FloatVector.fromArray(F, dt, i * padded + a).fma(b0, s00);
          s01 = FloatVector.fromArray(F, dt, i * padded + a + L).fma(b0, s01);
        }
        s00.intoArray(h, h0 + a);
        s01.intoArray(h, h0 + a + L);
      }
    }
  }

  /**
   * Codes rows {@code x[xOff + t·xStride ..+d)}, {@code t < count}, with at most {@code s} atoms
   * each: row t's atoms go to {@code index[t·s ..)}, their coefficients to {@code coef[t·s ..)},
   * and how many were chosen to {@code counts[t]}.
   */
  void encode(
      float[] x, int xOff, int xStride, int count, int s, int[] index, float[] coef, int[] counts) {
    Tables tb = tables();
    float[] h = new float[count * padded];
    project(tb.transposed, padded, d, x, xOff, xStride, count, h, 0, padded);
    float[] corr = new float[padded];
    float[] rows = new float[s * padded]; // the Gram rows of the row's atoms, in order
    float[] live = new float[padded];
    java.util.Arrays.fill(live, 0, atoms, 1f);
    float[] lanes = new float[2 * L];
    double[] sub = new double[s * s];
    double[] rhs = new double[s];
    double[] c = new double[s];
    double[] l = new double[s * s];
    double[] y = new double[s];
    int[] idx = new int[s];
    float[] weights = new float[s];
    for (int t = 0; t < count; t++) {
      int off = xOff + t * xStride;
      int hOff = t * padded;
      int k = 0;
      int rejected = -1;
      int best = argmax(h, hOff, live, padded, lanes);
      while (k < s) {
        if (best < 0) {
          break; // every correlation is 0 (or NaN): the residual is zero
        }
        live[best] = 0f;
        idx[k] = best;
        for (int j = 0; j <= k; j++) {
          double gj = tb.gram[best * padded + idx[j]];
          sub[k * s + j] = gj;
          sub[j * s + k] = gj;
        }
        rhs[k] = h[hOff + best];
        k++;
        if (!extendAndSolve(sub, s, rhs, k, l, y, c)) {
          k--; // the new atom is (numerically) in the span of the others: stop before it
          rejected = best; // c still holds the solution on the others
          break;
        }
        if (k < s) {
          System.arraycopy(tb.gram, best * padded, rows, (k - 1) * padded, padded);
          for (int j = 0; j < k; j++) {
            weights[j] = (float) -c[j];
          }
          System.arraycopy(h, hOff, corr, 0, padded);
          for (int j = 0; j < k - 1; j++) {
            addRow(rows, j * padded, weights[j], corr, padded);
          }
          best = addRowArgmax(rows, (k - 1) * padded, weights[k - 1], corr, live, padded, lanes);
        }
      }
      for (int j = 0; j < k; j++) {
        index[t * s + j] = idx[j];
        coef[t * s + j] = (float) c[j];
        live[idx[j]] = 1f;
      }
      if (rejected >= 0) {
        live[rejected] = 1f;
      }
      counts[t] = k;
    }
  }

  /**
   * {@link Omp#solve} of the leading {@code k × k} system when {@code l} (stride {@code stride})
   * already holds the Cholesky factor of the leading {@code k − 1} rows and {@code y} their forward
   * substitution: only row {@code k − 1} of the factor and of {@code y} is new (the rows of a
   * Cholesky factor do not depend on the rows after them), then the back substitution. The same
   * operations in the same order as {@link Omp#solve}: the same bits. False, leaving {@code out} as
   * it was, when the system is not positive definite.
   */
  static boolean extendAndSolve(
      double[] a, int stride, double[] b, int k, double[] l, double[] y, double[] out) {
    int i = k - 1;
    for (int j = 0; j <= i; j++) {
      double sum = a[i * stride + j];
      for (int m = 0; m < j; m++) {
        sum -= l[i * stride + m] * l[j * stride + m];
      }
      if (i == j) {
        if (sum <= 1e-10 * Math.max(1, a[i * stride + i])) {
          return false;
        }
        l[i * stride + i] = Math.sqrt(sum);
      } else {
        l[i * stride + j] = sum / l[j * stride + j];
      }
    }
    double sum = b[i];
    for (int m = 0; m < i; m++) {
      sum -= l[i * stride + m] * y[m];
    }
    y[i] = sum / l[i * stride + i];
    for (int r = k - 1; r >= 0; r--) {
      double v = y[r];
      for (int m = r + 1; m < k; m++) {
        v -= l[m * stride + r] * out[m];
      }
      out[r] = v / l[r * stride + r];
    }
    return true;
  }

  /** {@code corr += w · rows[from ..+padded)}, lane by lane. */
  private static void addRow(float[] rows, int from, float w, float[] corr, int padded) {
    FloatVector wv = FloatVector.broadcast(F, w);
    for (int a = 0; a < padded; a += L) {
      FloatVector.fromArray(F, rows, from + a)
          .fma(wv, FloatVector.fromArray(F, corr, a))
          .intoArray(corr, a);
    }
  }

  /** {@link #addRow}, then {@link #argmax} of the result, in the same pass. */
  private static int addRowArgmax(
      float[] rows, int from, float w, float[] corr, float[] live, int padded, float[] lanes) {
    FloatVector wv = FloatVector.broadcast(F, w);
    FloatVector max = FloatVector.zero(F);
    FloatVector at = FloatVector.broadcast(F, -1f);
    FloatVector iota = FloatVector.fromArray(F, IOTA, 0);
    for (int a = 0; a < padded; a += L) {
      FloatVector c =
          FloatVector.fromArray(F, rows, from + a).fma(wv, FloatVector.fromArray(F, corr, a));
      c.intoArray(corr, a);
      FloatVector v = c.lanewise(VectorOperators.ABS).mul(FloatVector.fromArray(F, live, a));
      VectorMask<Float> gt = v.compare(VectorOperators.GT, max);
      max = max.blend(v, gt);
      at = at.blend(iota.add((float) a), gt);
    }
    max.intoArray(lanes, 0);
    at.intoArray(lanes, L);
    return firstMax(lanes);
  }

  /**
   * The first atom of largest {@code |corr[a]|·live[a]}, or -1 when that is not positive: per lane
   * the first maximum (a strict comparison), then {@link #firstMax}, which is what a scalar scan in
   * index order with {@code >} finds.
   */
  private static int argmax(float[] corr, int off, float[] live, int padded, float[] lanes) {
    FloatVector max = FloatVector.zero(F);
    FloatVector at = FloatVector.broadcast(F, -1f);
    FloatVector iota = FloatVector.fromArray(F, IOTA, 0);
    for (int a = 0; a < padded; a += L) {
      FloatVector v =
          FloatVector.fromArray(F, corr, off + a)
              .lanewise(VectorOperators.ABS)
              .mul(FloatVector.fromArray(F, live, a));
      VectorMask<Float> gt = v.compare(VectorOperators.GT, max);
      max = max.blend(v, gt);
      at = at.blend(iota.add((float) a), gt);
    }
    max.intoArray(lanes, 0);
    at.intoArray(lanes, L);
    return firstMax(lanes);
  }

  /**
   * Of the lanes' maxima ({@code lanes[0..L)}) and their atoms ({@code lanes[L..2L)}), the smallest
   * atom holding the overall maximum, or -1 when it is not positive.
   */
  private static int firstMax(float[] lanes) {
    float m = 0f;
    float best = -1f;
    for (int lane = 0; lane < L; lane++) {
      float v = lanes[lane];
      if (v > m || (v == m && m > 0f && lanes[L + lane] < best)) {
        m = v;
        best = lanes[L + lane];
      }
    }
    return (int) best;
  }

  private static final float[] IOTA = iota();

  private static float[] iota() {
    float[] v = new float[L];
    for (int i = 0; i < L; i++) {
      v[i] = i;
    }
    return v;
  }
}
