package io.kvslim.calibrate;

import io.kvslim.kv.format.CqFormat;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;

/**
 * Plain (uniform) k-means in R^c for Coupled Quantization's codebooks (METHODS.md Q5 step 1, the
 * CPU-faithful version: the paper's Fisher-guided centroids need gradients). k-means++ seeding,
 * then Lloyd iterations (assign each vector to its nearest centroid with {@link CqFormat#nearest},
 * the same search the format encodes with; move each centroid to its members' mean, summed in
 * double) until no assignment changes or {@code iterations} are done; an empty cluster keeps its
 * centroid. When there are at most {@code k} distinct vectors, they are the centroids (padded with
 * copies of the first), so every calibration vector reconstructs exactly.
 */
public final class KMeans {
  private KMeans() {}

  /**
   * Centroids {@code [k][dim]} of the {@code n} vectors {@code data[t·dim ..+dim)}.
   *
   * @param k the codebook size ({@link CqFormat#CENTROIDS} for cq)
   */
  public static float[] train(
      float[] data, int n, int dim, int k, int iterations, SplittableRandom random) {
    if (n < 1) {
      throw new IllegalArgumentException("k-means needs at least one vector");
    }
    float[] centroids = new float[k * dim];
    List<Integer> distinct = distinct(data, n, dim, k + 1);
    if (distinct.size() <= k) {
      for (int j = 0; j < k; j++) {
        int t = distinct.get(j < distinct.size() ? j : 0);
        System.arraycopy(data, t * dim, centroids, j * dim, dim);
      }
      return centroids;
    }
    seed(data, n, dim, k, random, centroids);
    int[] assign = new int[n];
    Arrays.fill(assign, -1);
    for (int it = 0; it < iterations; it++) {
      if (!lloyd(data, n, dim, k, centroids, assign)) {
        break;
      }
    }
    return centroids;
  }

  /** Up to {@code limit} indices of distinct vectors, in order of first occurrence. */
  static List<Integer> distinct(float[] data, int n, int dim, int limit) {
    Set<List<Float>> seen = new HashSet<>();
    List<Integer> out = new java.util.ArrayList<>();
    for (int t = 0; t < n && out.size() < limit; t++) {
      Float[] v = new Float[dim];
      for (int i = 0; i < dim; i++) {
        v[i] = data[t * dim + i];
      }
      if (seen.add(List.of(v))) {
        out.add(t);
      }
    }
    return out;
  }

  /** k-means++: the first centroid uniform, each next one with probability ∝ squared distance. */
  private static void seed(
      float[] data, int n, int dim, int k, SplittableRandom random, float[] centroids) {
    double[] d2 = new double[n];
    Arrays.fill(d2, Double.POSITIVE_INFINITY);
    int pick = random.nextInt(n);
    for (int j = 0; j < k; j++) {
      System.arraycopy(data, pick * dim, centroids, j * dim, dim);
      double total = 0;
      for (int t = 0; t < n; t++) {
        double s = 0;
        for (int i = 0; i < dim; i++) {
          double diff = data[t * dim + i] - centroids[j * dim + i];
          s += diff * diff;
        }
        d2[t] = Math.min(d2[t], s);
        total += d2[t];
      }
      if (total <= 0) {
        pick = random.nextInt(n);
        continue;
      }
      double r = random.nextDouble() * total;
      pick = n - 1;
      for (int t = 0; t < n; t++) {
        r -= d2[t];
        if (r < 0) {
          pick = t;
          break;
        }
      }
    }
  }

  /** One Lloyd iteration; true when some assignment changed. */
  static boolean lloyd(float[] data, int n, int dim, int k, float[] centroids, int[] assign) {
    boolean changed = false;
    int[] nearest = nearestAll(data, n, dim, k, centroids);
    double[] sums = new double[k * dim];
    int[] counts = new int[k];
    for (int t = 0; t < n; t++) {
      changed |= nearest[t] != assign[t];
      assign[t] = nearest[t];
      counts[nearest[t]]++;
      for (int i = 0; i < dim; i++) {
        sums[nearest[t] * dim + i] += data[t * dim + i];
      }
    }
    for (int j = 0; j < k; j++) {
      if (counts[j] > 0) {
        for (int i = 0; i < dim; i++) {
          centroids[j * dim + i] = (float) (sums[j * dim + i] / counts[j]);
        }
      }
    }
    return changed;
  }

  /** Each vector's nearest centroid (k = {@link CqFormat#CENTROIDS}: the format's own search). */
  static int[] nearestAll(float[] data, int n, int dim, int k, float[] centroids) {
    int[] out = new int[n];
    if (k == CqFormat.CENTROIDS) {
      CqFormat f = new CqFormat(dim, centroids, "kmeans");
      float[] dist = new float[k];
      for (int t = 0; t < n; t++) {
        out[t] = f.nearest(data, t * dim, 0, dist);
      }
      return out;
    }
    for (int t = 0; t < n; t++) {
      out[t] = bruteForce(data, t * dim, dim, k, centroids);
    }
    return out;
  }

  /** The nearest centroid by the plain loop (ties to the lowest index). */
  public static int bruteForce(float[] x, int off, int dim, int k, float[] centroids) {
    int best = 0;
    float bestD = Float.POSITIVE_INFINITY;
    for (int j = 0; j < k; j++) {
      float d = 0f;
      for (int i = 0; i < dim; i++) {
        float t = x[off + i] - centroids[j * dim + i];
        d += t * t;
      }
      if (d < bestD) {
        bestD = d;
        best = j;
      }
    }
    return best;
  }

  /** Mean squared error of the vectors against their nearest centroids. */
  public static double error(float[] data, int n, int dim, int k, float[] centroids) {
    int[] nearest = nearestAll(data, n, dim, k, centroids);
    double s = 0;
    for (int t = 0; t < n; t++) {
      for (int i = 0; i < dim; i++) {
        double diff = data[t * dim + i] - centroids[nearest[t] * dim + i];
        s += diff * diff;
      }
    }
    return s / n;
  }
}
