package io.kvslim.kv.policy;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * PQCache's product-quantized keys of one (layer, KV head) (Zhang et al. 2024, "PQCache: Product
 * Quantization-based KVCache for Long Context LLM Inference", arXiv:2407.12820; METHODS.md H5):
 * each key of {@code dim} floats is cut into {@code m} sub-vectors of {@code dim/m}; per sub-space
 * a k-means codebook of {@code 2^bits} centroids is trained on the prompt's keys (euclidean, the
 * reference's {@code metric euc}), and every key is stored as its {@code m} nearest-centroid codes.
 * The inner product of a query with a key is then approximated from a table of query·centroid
 * products: {@code ŝ = Σ_s T[s][code_s]}.
 *
 * <p>Reference (HugoZHL/PQCache): the codebook is trained on the prompt's keys after the sink
 * tokens ({@code vq_method/retrieval_based/pq_search.py} lines 240-249: {@code xb = key_states[:,
 * :, self.sink_size:, :]} reshaped into {@code n_subvec_per_head} sub-vectors), by scikit-learn's
 * {@code KMeans(n_init=1, random_state=0, max_iter=...)} ({@code multi_core_compressor_v2.py} lines
 * 165-173; k-means++ initialisation, Lloyd iterations); no index is built when there are no more
 * keys than centroids (lines 155-166: {@code if n_xb > cent_cnt}). A key that arrives later is
 * coded with the existing centroids, nearest by euclidean distance ({@code predict_index_gpu},
 * lines 201-212). Here k-means++ is seeded with {@link SplittableRandom} and runs {@code
 * iterations} Lloyd rounds at most (the reference sizes {@code max_iter} from measured GPU time, 3
 * to 300; a fixed count keeps runs deterministic), stopping early when no assignment changes; an
 * emptied cluster keeps its centroid.
 */
public final class PqIndex {
  private final int dim;
  private final int subspaces;
  private final int sub;
  private final int centroids;
  private final int bits;
  private final float[] table; // [s][c][j], sub-space-major
  private short[] codes = new short[0]; // token-major, subspaces a token
  private int coded;

  private PqIndex(int dim, int subspaces, int bits, float[] table) {
    this.dim = dim;
    this.subspaces = subspaces;
    this.sub = dim / subspaces;
    this.bits = bits;
    this.centroids = 1 << bits;
    this.table = table;
  }

  /** Checks that a key of {@code dim} floats splits into {@code subspaces} equal sub-vectors. */
  public static void check(int dim, int subspaces, int bits) {
    if (subspaces < 1 || dim % subspaces != 0) {
      throw new IllegalArgumentException(
          "pqcache needs subvectors dividing the head dimension " + dim + ", got " + subspaces);
    }
    if (bits < 1 || bits > 12) {
      throw new IllegalArgumentException("pqcache codes have 1 to 12 bits, got " + bits);
    }
  }

  /**
   * Trains the codebooks on keys {@code [from, from + n)} of {@code keys} (token-major rows of
   * {@code dim} floats) and codes those keys; returns null when {@code n ≤ 2^bits} (no index, as
   * the reference).
   */
  public static PqIndex train(
      float[] keys, int from, int n, int dim, int subspaces, int bits, int iterations, long seed) {
    check(dim, subspaces, bits);
    int k = 1 << bits;
    if (n <= k) {
      return null;
    }
    int sub = dim / subspaces;
    float[] table = new float[subspaces * k * sub];
    for (int s = 0; s < subspaces; s++) {
      float[] points = new float[n * sub];
      for (int i = 0; i < n; i++) {
        System.arraycopy(keys, (from + i) * dim + s * sub, points, i * sub, sub);
      }
      float[] c = kmeans(points, n, sub, k, iterations, new SplittableRandom(seed + 31L * s));
      System.arraycopy(c, 0, table, s * k * sub, k * sub);
    }
    PqIndex index = new PqIndex(dim, subspaces, bits, table);
    for (int i = 0; i < n; i++) {
      index.add(keys, (from + i) * dim);
    }
    return index;
  }

  /** k-means++ seeding, then at most {@code iterations} Lloyd rounds; centroids row-major. */
  static float[] kmeans(float[] x, int n, int d, int k, int iterations, SplittableRandom random) {
    float[] c = new float[k * d];
    double[] dist = new double[n];
    int first = random.nextInt(n);
    System.arraycopy(x, first * d, c, 0, d);
    for (int i = 0; i < n; i++) {
      dist[i] = distance(x, i * d, c, 0, d);
    }
    for (int j = 1; j < k; j++) {
      double total = 0;
      for (int i = 0; i < n; i++) {
        total += dist[i];
      }
      int pick;
      if (total <= 0) {
        pick = random.nextInt(n); // every point sits on a centroid already
      } else {
        double r = random.nextDouble() * total;
        pick = n - 1;
        for (int i = 0; i < n; i++) {
          r -= dist[i];
          if (r < 0) {
            pick = i;
            break;
          }
        }
      }
      System.arraycopy(x, pick * d, c, j * d, d);
      for (int i = 0; i < n; i++) {
        dist[i] = Math.min(dist[i], distance(x, i * d, c, j * d, d));
      }
    }
    int[] assign = new int[n];
    Arrays.fill(assign, -1);
    double[] sum = new double[k * d];
    int[] count = new int[k];
    for (int it = 0; it < iterations; it++) {
      boolean changed = false;
      for (int i = 0; i < n; i++) {
        int a = nearest(x, i * d, c, k, d);
        if (a != assign[i]) {
          assign[i] = a;
          changed = true;
        }
      }
      if (!changed) {
        break;
      }
      Arrays.fill(sum, 0);
      Arrays.fill(count, 0);
      for (int i = 0; i < n; i++) {
        int a = assign[i];
        count[a]++;
        for (int j = 0; j < d; j++) {
          sum[a * d + j] += x[i * d + j];
        }
      }
      for (int a = 0; a < k; a++) {
        if (count[a] > 0) {
          for (int j = 0; j < d; j++) {
            c[a * d + j] = (float) (sum[a * d + j] / count[a]);
          }
        }
      }
    }
    return c;
  }

  private static double distance(float[] x, int xOff, float[] c, int cOff, int d) {
    double s = 0;
    for (int j = 0; j < d; j++) {
      double t = x[xOff + j] - c[cOff + j];
      s += t * t;
    }
    return s;
  }

  /** The nearest of {@code k} centroids (euclidean), ties to the lower index. */
  private static int nearest(float[] x, int xOff, float[] c, int k, int d) {
    int best = 0;
    double bestDist = Double.POSITIVE_INFINITY;
    for (int a = 0; a < k; a++) {
      double dd = distance(x, xOff, c, a * d, d);
      if (dd < bestDist) {
        bestDist = dd;
        best = a;
      }
    }
    return best;
  }

  /** Codes the key at {@code key[off..off + dim)} as the next token. */
  public void add(float[] key, int off) {
    if (codes.length < (coded + 1) * subspaces) {
      codes = Arrays.copyOf(codes, Math.max(64, 2 * codes.length) * subspaces);
    }
    for (int s = 0; s < subspaces; s++) {
      int code = nearest(key, off + s * sub, table, s * centroids, centroids, sub);
      codes[coded * subspaces + s] = (short) code;
    }
    coded++;
  }

  private static int nearest(float[] x, int xOff, float[] table, int first, int k, int d) {
    int best = 0;
    double bestDist = Double.POSITIVE_INFINITY;
    for (int a = 0; a < k; a++) {
      double dd = distance(x, xOff, table, (first + a) * d, d);
      if (dd < bestDist) {
        bestDist = dd;
        best = a;
      }
    }
    return best;
  }

  /** Keys coded so far. */
  public int coded() {
    return coded;
  }

  /** The code of token {@code t} in sub-space {@code s}. */
  public int code(int t, int s) {
    return codes[t * subspaces + s];
  }

  /** Element {@code j} of centroid {@code c} of sub-space {@code s}. */
  public float centroid(int s, int c, int j) {
    return table[(s * centroids + c) * sub + j];
  }

  /**
   * Approximate scores {@code out[t] = Σ_s q_s·centroid_{s, code(t, s)}} of coded tokens {@code [0,
   * n)} for the query at {@code q[off..off + dim)}; {@code lookup} holds at least {@code
   * subspaces·2^bits} floats (the query·centroid table, built here).
   */
  public void scores(float[] q, int off, int n, float[] lookup, float[] out) {
    for (int s = 0; s < subspaces; s++) {
      for (int c = 0; c < centroids; c++) {
        float dot = 0f;
        int at = (s * centroids + c) * sub;
        for (int j = 0; j < sub; j++) {
          dot += q[off + s * sub + j] * table[at + j];
        }
        lookup[s * centroids + c] = dot;
      }
    }
    for (int t = 0; t < n; t++) {
      float sum = 0f;
      for (int s = 0; s < subspaces; s++) {
        sum += lookup[s * centroids + codes[t * subspaces + s]];
      }
      out[t] = sum;
    }
  }

  /** Floats of the lookup table {@link #scores} needs. */
  public int lookupLength() {
    return subspaces * centroids;
  }

  /**
   * Bytes this index holds in RAM: {@code bits} per code and sub-space for every coded token, and
   * the centroids as fp16 (the reference moves them to the GPU as float16, {@code pq_search.py}
   * line 180).
   */
  public long bytes() {
    return ((long) coded * subspaces * bits + 7) / 8 + 2L * subspaces * centroids * sub;
  }

  public int dim() {
    return dim;
  }
}
