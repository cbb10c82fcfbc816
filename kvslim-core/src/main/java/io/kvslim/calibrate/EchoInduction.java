package io.kvslim.calibrate;

import java.util.SplittableRandom;

/**
 * RazorAttention's head scoring (Tang et al. 2024, "RazorAttention: Efficient KV Cache Compression
 * Through Retrieval Heads", arXiv:2407.15891 §3.2; METHODS.md S1 step 1): the model reads a random
 * token sequence X of length m twice, [BOS, X, X]. For each query at position m + j of the second
 * copy (its token is X[j]), the <b>echo</b> score is the attention to X[j]'s position in the first
 * copy (the same token earlier), the <b>induction</b> score the attention to the position after it
 * (the token that followed X[j]). Scores are means over j and over several random sequences.
 *
 * <p>With a BOS token, the first copy is at positions 1..m and the second at m+1..2m: the query at
 * {@code p = 1 + m + j} scores {@code probs[1 + j]} (echo) and {@code probs[2 + j]} (induction; for
 * the last j that is the first token of the second copy, which followed X[m−1]).
 */
final class EchoInduction {
  private EchoInduction() {}

  /**
   * Adds the echo and induction attention of the query at {@code p} to {@code sums[0]} and {@code
   * sums[1]} when {@code p} is in the second copy; returns whether it was.
   *
   * @param offset position of the first copy's first token (1 after a BOS)
   * @param m the length of X
   */
  static boolean accumulate(float[] probs, int p, int offset, int m, double[] sums) {
    int j = p - offset - m;
    if (j < 0 || j >= m) {
      return false;
    }
    sums[0] += probs[offset + j];
    sums[1] += probs[offset + j + 1];
    return true;
  }

  /**
   * A sequence [BOS, X, X] (no BOS when {@code bos < 0}) with X drawn from {@code pool}: distinct
   * tokens when the pool has at least m, so that echo and induction positions are unambiguous.
   */
  static int[] sequence(SplittableRandom r, int[] pool, int m, int bos) {
    int[] x = new int[m];
    if (pool.length >= m) {
      int[] shuffled = pool.clone();
      for (int i = 0; i < m; i++) { // partial Fisher-Yates
        int j = i + r.nextInt(shuffled.length - i);
        int t = shuffled[i];
        shuffled[i] = shuffled[j];
        shuffled[j] = t;
        x[i] = shuffled[i];
      }
    } else {
      for (int i = 0; i < m; i++) {
        x[i] = pool[r.nextInt(pool.length)];
      }
    }
    int offset = bos >= 0 ? 1 : 0;
    int[] seq = new int[offset + 2 * m];
    if (bos >= 0) {
      seq[0] = bos;
    }
    System.arraycopy(x, 0, seq, offset, m);
    System.arraycopy(x, 0, seq, offset + m, m);
    return seq;
  }

  /** The KV heads' scores: the largest of each group's query heads ({@code [layer][kvHead]}). */
  static double[][] perKvHead(double[][] perHead, int kvHeads) {
    double[][] out = new double[perHead.length][kvHeads];
    for (int l = 0; l < perHead.length; l++) {
      int group = perHead[l].length / kvHeads;
      for (int g = 0; g < kvHeads; g++) {
        double best = Double.NEGATIVE_INFINITY;
        for (int h = g * group; h < (g + 1) * group; h++) {
          best = Math.max(best, perHead[l][h]);
        }
        out[l][g] = best;
      }
    }
    return out;
  }
}
