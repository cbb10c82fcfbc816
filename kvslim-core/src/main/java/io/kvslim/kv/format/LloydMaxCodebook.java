package io.kvslim.kv.format;

import java.util.concurrent.ConcurrentHashMap;

/**
 * The data-free Lloyd–Max scalar codebook of TurboQuant (Zandieh et al., "TurboQuant: Online Vector
 * Quantization with Near-optimal Distortion Rate", arXiv:2504.19874; METHODS.md N1 step 1): {@code
 * 2^bits} centroids for one coordinate of a rotated unit vector of dimension {@code d}, modelled as
 * N(0, 1/d).
 *
 * <p>Solved as vLLM does for parity (vllm-project/vllm, {@code
 * vllm/model_executor/layers/quantization/turboquant/centroids.py}, {@code solve_lloyd_max}, lines
 * 31–80, and {@code _trapz}, lines 22–28): σ² = 1/d; centroids start at the centres of 2^b equal
 * cells on [−3.5σ, 3.5σ]; each iteration sets the boundaries to the midpoints of adjacent
 * centroids, closes the outer cells at ±10.5σ, and moves each centroid to its cell's mean, both
 * integrals by a 200-step trapezoid rule; at most 200 iterations, stopping (without taking that
 * iteration's move) when the largest move is below 1e-10. All in double, then rounded to float as
 * vLLM's tensor; the decision midpoints are then taken in float, as {@code turboquant_attn.py}
 * ({@code _ensure_on_device}: {@code (c_sorted[:-1] + c_sorted[1:]) / 2}).
 */
public final class LloydMaxCodebook {
  private static final ConcurrentHashMap<Long, LloydMaxCodebook> CACHE = new ConcurrentHashMap<>();

  private final int dim;
  private final int bits;
  private final float[] centroids;
  private final float[] midpoints;

  private LloydMaxCodebook(int dim, int bits, float[] centroids) {
    this.dim = dim;
    this.bits = bits;
    this.centroids = centroids;
    this.midpoints = new float[centroids.length - 1];
    for (int i = 0; i < midpoints.length; i++) {
      midpoints[i] = (centroids[i] + centroids[i + 1]) / 2f;
    }
  }

  /**
   * The codebook of {@code bits} (1..8) for dimension {@code dim} (≥ 1), solved once and cached.
   *
   * @throws IllegalArgumentException for other values
   */
  public static LloydMaxCodebook of(int dim, int bits) {
    if (bits < 1 || bits > 8 || dim < 1) {
      throw new IllegalArgumentException(
          "a Lloyd-Max codebook needs 1..8 bits and a positive dimension, got "
              + bits
              + " bits for dimension "
              + dim);
    }
    return CACHE.computeIfAbsent(
        ((long) dim << 8) | bits, k -> new LloydMaxCodebook(dim, bits, solve(dim, bits)));
  }

  public int dim() {
    return dim;
  }

  public int bits() {
    return bits;
  }

  /** The sorted centroids (a copy). */
  public float[] centroids() {
    return centroids.clone();
  }

  /** The {@code 2^bits − 1} sorted decision midpoints (a copy). */
  public float[] midpoints() {
    return midpoints.clone();
  }

  float[] centroidsView() {
    return centroids;
  }

  /** The code of {@code u}: the number of midpoints {@code ≤ u} (vLLM's bucketize). */
  public int code(float u) {
    int lo = 0;
    int hi = midpoints.length; // answer in [lo, hi]
    while (lo < hi) {
      int mid = (lo + hi) >>> 1;
      if (u >= midpoints[mid]) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    return lo;
  }

  private static double pdf(double x, double sigma2) {
    return (1.0 / Math.sqrt(2 * Math.PI * sigma2)) * Math.exp(-x * x / (2 * sigma2));
  }

  /** Trapezoid rule with n steps; {@code moment} 1 integrates x·pdf, 0 the pdf. */
  private static double trapz(int moment, double a, double b, double sigma2) {
    int n = 200;
    double h = (b - a) / n;
    double result = 0.5 * (f(moment, a, sigma2) + f(moment, b, sigma2));
    for (int i = 1; i < n; i++) {
      result += f(moment, a + i * h, sigma2);
    }
    return result * h;
  }

  private static double f(int moment, double x, double sigma2) {
    return moment == 0 ? pdf(x, sigma2) : x * pdf(x, sigma2);
  }

  static float[] solve(int dim, int bits) {
    int levels = 1 << bits;
    double sigma2 = 1.0 / dim;
    double sigma = Math.sqrt(sigma2);
    double lo = -3.5 * sigma;
    double hi = 3.5 * sigma;
    double[] c = new double[levels];
    for (int i = 0; i < levels; i++) {
      c[i] = lo + (hi - lo) * (i + 0.5) / levels;
    }
    double[] edges = new double[levels + 1];
    for (int iter = 0; iter < 200; iter++) {
      edges[0] = lo * 3;
      edges[levels] = hi * 3;
      for (int i = 0; i + 1 < levels; i++) {
        edges[i + 1] = (c[i] + c[i + 1]) / 2.0;
      }
      double[] next = new double[levels];
      double move = 0;
      for (int i = 0; i < levels; i++) {
        double num = trapz(1, edges[i], edges[i + 1], sigma2);
        double den = trapz(0, edges[i], edges[i + 1], sigma2);
        next[i] = den > 1e-15 ? num / den : c[i];
        move = Math.max(move, Math.abs(next[i] - c[i]));
      }
      if (move < 1e-10) {
        break;
      }
      c = next;
    }
    float[] out = new float[levels];
    for (int i = 0; i < levels; i++) {
      out[i] = (float) c[i];
    }
    return out;
  }
}
