package io.kvslim.tensor;

import java.math.BigInteger;

/**
 * Scalar functions computed bit for bit as llama.cpp's CPU backend computes them on x86-64 (an
 * AVX-512 build of ggml with GCC, linked against glibc), for the forward pass's llama.cpp numerics
 * and for the parts of kvslim's default path where matching it costs nothing:
 *
 * <ul>
 *   <li>{@link #exp}: ggml's vector {@code ggml_v_expf} (used by its softmax and SiLU), lane by
 *       lane: {@code e^x = 2^n · p(b)}, {@code n = round(x·log2 e)}, {@code b = x − n·ln 2} in two
 *       fused steps, a degree-5 polynomial evaluated with fused multiply-adds, scaled by {@code
 *       2^n} with one rounding ({@code vscalefps}); {@code |n| > 192} gives 0 or ∞. Within about 2
 *       ulp of {@code e^x}.
 *   <li>{@link #sum16}: the lane sum of a 16-float register as GCC's {@code _mm512_reduce_add_ps}
 *       computes it (halves added, then quarters, then pairs).
 *   <li>{@link #sinCos}: glibc's {@code sincosf} (the one ggml's RoPE calls) as its x86-64 FMA
 *       variant computes it: the argument widened to double, reduced by a multiple of π/2 (one
 *       fused multiply-subtract below 120, a 192-bit fixed-point product with 2/π above), then
 *       polynomials of degree 4 (cosine) and 3 (sine, odd terms) in the reduced argument squared,
 *       evaluated in double with fused multiply-adds, rounded once to float. Within 0.56 ulp; not
 *       always the correctly rounded value, which is why {@link Math#sin} does not reproduce it.
 * </ul>
 */
public final class LlamaCppMath {
  private LlamaCppMath() {}

  // ggml_v_expf's constants, shared with the lane-wise copy in Ops.swigluVectors
  /** log2(e), rounded to float. */
  public static final float EXP_LOG2E = 0x1.715476p+0f;

  /** 1.5·2^23: added and subtracted, it rounds to an integer. */
  public static final float EXP_ROUNDER = 0x1.8p23f;

  /** ln 2 in two parts, high and low. */
  public static final float EXP_LN2_HI = 0x1.62e4p-1f;

  public static final float EXP_LN2_LO = 0x1.7f7d1cp-20f;

  /** The polynomial's coefficients, from the constant term (1) to the fifth power. */
  public static final float EXP_C1 = 0x1.ffffecp-1f;

  public static final float EXP_C2 = 0x1.fffdb6p-2f;
  public static final float EXP_C3 = 0x1.555e66p-3f;
  public static final float EXP_C4 = 0x1.573e2ep-5f;
  public static final float EXP_C5 = 0x1.0e4020p-7f;

  /** ggml's {@code ggml_v_expf} for one lane (see the class comment). */
  public static float exp(float x) {
    float n = Math.fma(x, EXP_LOG2E, EXP_ROUNDER) - EXP_ROUNDER; // round(x·log2 e)
    if (Math.abs(n) > 192) {
      return n <= 0 ? 0f : Float.POSITIVE_INFINITY;
    }
    float b = Math.fma(-n, EXP_LN2_LO, Math.fma(-n, EXP_LN2_HI, x));
    float u = b * b;
    float p =
        Math.fma(
            Math.fma(Math.fma(EXP_C5, b, EXP_C4), u, Math.fma(EXP_C3, b, EXP_C2)),
            u,
            Math.fma(EXP_C1, b, 1.0f));
    return Math.scalb(p, (int) n); // exact, or one rounding to a subnormal, as vscalefps
  }

  /**
   * SiLU as ggml's vector path computes it, {@code x / (1 + exp(0 − x))} with {@link #exp}. (ggml
   * uses the C library's {@code expf} for the last {@code n mod 16} elements of a row; see {@link
   * #siluTail}.)
   */
  public static float silu(float x) {
    return x / (1f + exp(0f - x));
  }

  /**
   * SiLU of ggml's scalar tail, {@code x / (1 + expf(−x))}: glibc's {@code expf} is within 0.502
   * ulp, so the correctly rounded {@code e^x} used here almost always equals it.
   */
  public static float siluTail(float x) {
    return x / (1f + (float) Math.exp(-x));
  }

  /**
   * Sum of the eight lanes {@code acc[0..8)} as ggml's x86 {@code hsum_float_8}: {@code r_i =
   * a_{i+4} + a_i}, then {@code (r0 + r2) + (r1 + r3)}.
   */
  public static float sum8(float[] acc) {
    float r0 = acc[4] + acc[0];
    float r1 = acc[5] + acc[1];
    float r2 = acc[6] + acc[2];
    float r3 = acc[7] + acc[3];
    return (r0 + r2) + (r1 + r3);
  }

  /** Sum of {@code v[off..off+16)} in the order of {@code _mm512_reduce_add_ps}. */
  public static float sum16(float[] v, int off) {
    float a0 = v[off] + v[off + 8];
    float a1 = v[off + 1] + v[off + 9];
    float a2 = v[off + 2] + v[off + 10];
    float a3 = v[off + 3] + v[off + 11];
    float a4 = v[off + 4] + v[off + 12];
    float a5 = v[off + 5] + v[off + 13];
    float a6 = v[off + 6] + v[off + 14];
    float a7 = v[off + 7] + v[off + 15];
    float b0 = a0 + a4;
    float b1 = a1 + a5;
    float b2 = a2 + a6;
    float b3 = a3 + a7;
    return (b0 + b2) + (b1 + b3);
  }

  /**
   * Sum of {@code v[off..off+16)} with stride {@code stride} between the lanes, in the order of
   * {@link #sum16}.
   */
  public static float sum16(float[] v, int off, int stride) {
    float a0 = v[off] + v[off + 8 * stride];
    float a1 = v[off + stride] + v[off + 9 * stride];
    float a2 = v[off + 2 * stride] + v[off + 10 * stride];
    float a3 = v[off + 3 * stride] + v[off + 11 * stride];
    float a4 = v[off + 4 * stride] + v[off + 12 * stride];
    float a5 = v[off + 5 * stride] + v[off + 13 * stride];
    float a6 = v[off + 6 * stride] + v[off + 14 * stride];
    float a7 = v[off + 7 * stride] + v[off + 15 * stride];
    float b0 = a0 + a4;
    float b1 = a1 + a5;
    float b2 = a2 + a6;
    float b3 = a3 + a7;
    return (b0 + b2) + (b1 + b3);
  }

  /**
   * ggml's {@code ggml_vec_dot_f32} (AVX-512): elements in steps of 64, element {@code e} of a step
   * accumulated by fused multiply-add into accumulator {@code e} (four registers of 16 lanes),
   * registers 0+2 and 1+3, then their sum, then {@link #sum16}; the elements after the last full
   * step are added one at a time, product rounded then sum ({@code sumf += x[i]*y[i]}). {@code acc}
   * holds at least 64 floats of scratch.
   */
  public static float dot(float[] x, int xOff, float[] y, int yOff, int n, float[] acc) {
    int steps = n & ~63;
    float sum = 0f;
    if (steps > 0) {
      java.util.Arrays.fill(acc, 0, 64, 0f);
      for (int i = 0; i < steps; i += 64) {
        for (int e = 0; e < 64; e++) {
          acc[e] = Math.fma(x[xOff + i + e], y[yOff + i + e], acc[e]);
        }
      }
      foldSteps(acc);
      sum = sum16(acc, 0);
    }
    for (int i = steps; i < n; i++) {
      sum += x[xOff + i] * y[yOff + i];
    }
    return sum;
  }

  /**
   * Folds the four 16-lane accumulators {@code acc[0..64)} of {@link #dot} into {@code acc[0..16)}
   * as ggml does: registers 0+2 and 1+3, then the two sums.
   */
  public static void foldSteps(float[] acc) {
    for (int l = 0; l < 16; l++) {
      acc[l] = (acc[l] + acc[32 + l]) + (acc[16 + l] + acc[48 + l]);
    }
  }

  // glibc's sincosf tables: 2/π·2^24 (the quadrant lands in bits 24..31), π/2, 2π·2^-64, and the
  // cosine (C0..C4) and sine (S1..S3) coefficients of its minimax polynomials.
  private static final double HALF_PI_INV_SCALED = 0x1.45f306dc9c883p+23;
  private static final double HALF_PI = 0x1.921fb54442d18p0;
  private static final double TWO_PI_BY_2_64 = 0x1.921fb54442d18p-62;
  private static final double C1 = -0x1.ffffffd0c621cp-2;
  private static final double C2 = 0x1.55553e1068f19p-5;
  private static final double C3 = -0x1.6c087e89a359dp-10;
  private static final double C4 = 0x1.99343027bf8c3p-16;
  private static final double S1 = -0x1.555545995a603p-3;
  private static final double S2 = 0x1.1107605230bc4p-7;
  private static final double S3 = -0x1.994eb3774cf24p-13;

  /**
   * The leading 192 bits of 2/π as 24 overlapping 32-bit windows: window {@code i} is the integer
   * part of {@code 2/π · 2^(8i+8)}, modulo 2^32.
   */
  private static final int[] TWO_OVER_PI_WINDOWS = twoOverPiWindows();

  private static int[] twoOverPiWindows() {
    BigInteger bits = new BigInteger("a2f9836e4e441529fc2757d1f534ddc0db6295993c439041", 16);
    int[] w = new int[24];
    for (int i = 0; i < 24; i++) {
      w[i] = bits.shiftRight(192 - 8 * (i + 1)).intValue();
    }
    return w;
  }

  /**
   * Writes glibc's {@code sinf(y)} to {@code sin[at]} and {@code cosf(y)} to {@code cos[at]} (see
   * the class comment).
   */
  public static void sinCos(float y, float[] sin, float[] cos, int at) {
    int bits = Float.floatToRawIntBits(y);
    int top = (bits >>> 20) & 0x7ff; // exponent and 3 mantissa bits, sign cleared
    double x;
    int quadrant; // swaps sine and cosine when odd
    int signQuadrant; // picks the signs
    if (top < 0x3f4) { // |y| < 0.75, roughly π/4
      if (top < 0x398) { // |y| < 2^-12
        sin[at] = y;
        cos[at] = 1f;
        return;
      }
      x = y;
      quadrant = 0;
      signQuadrant = 0;
    } else if (top < 0x42f) { // |y| < 120: one multiply-subtract of the nearest multiple of π/2
      double r = y * HALF_PI_INV_SCALED;
      quadrant = ((int) r + 0x800000) >> 24;
      x = Math.fma(-quadrant, HALF_PI, y);
      signQuadrant = quadrant;
    } else if (top < 0x7f8) {
      // y·(2/π) in fixed point with 62 fraction bits: 32-bit mantissa times 96 bits of 2/π chosen
      // by the exponent; the top 2 integer bits are the quadrant, the rest (signed) the remainder
      int[] w = TWO_OVER_PI_WINDOWS;
      int index = (bits >>> 26) & 15;
      int mantissa = ((bits & 0xffffff) | 0x800000) << ((bits >>> 23) & 7);
      long m = mantissa & 0xffffffffL;
      long low = (m * (w[index + 8] & 0xffffffffL)) >>> 32;
      long high = (long) (mantissa * w[index]) << 32;
      long fraction = (low | high) + m * (w[index + 4] & 0xffffffffL);
      long q = (fraction + (1L << 61)) >>> 62;
      fraction -= q << 62;
      x = fraction * TWO_PI_BY_2_64;
      quadrant = (int) q;
      signQuadrant = quadrant + (bits >>> 31);
    } else {
      sin[at] = cos[at] = y - y; // NaN for ±∞ and NaN
      return;
    }
    double xs = (signQuadrant & 1) == (signQuadrant >> 1 & 1) ? x : -x; // sign[] = {1, −1, −1, 1}
    double c0 = 1;
    double c1 = C1;
    double c2 = C2;
    double c3 = C3;
    double c4 = C4;
    if ((signQuadrant & 2) != 0) { // the second table negates the cosine polynomial
      c0 = -1;
      c1 = -C1;
      c2 = -C2;
      c3 = -C3;
      c4 = -C4;
    }
    double x2 = x * x;
    double s1 = Math.fma(x2, S3, S2);
    double cHigh = Math.fma(x2, c4, c3);
    double x3 = x2 * xs;
    double x4 = x2 * x2;
    double x5 = x2 * x3;
    double x6 = x2 * x4;
    double cLow = Math.fma(x2, c1, c0);
    double s = Math.fma(x3, S1, xs);
    double c = Math.fma(x4, c2, cLow);
    float sinPoly = (float) Math.fma(s1, x5, s);
    float cosPoly = (float) Math.fma(cHigh, x6, c);
    if ((quadrant & 1) == 0) {
      sin[at] = sinPoly;
      cos[at] = cosPoly;
    } else {
      sin[at] = cosPoly;
      cos[at] = sinPoly;
    }
  }
}
