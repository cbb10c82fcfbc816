package io.kvslim.model.convert;

import io.kvslim.model.ModelConfig;

/**
 * The exact folds of {@link KvHeadMerge}: each KV head's key rotation R (2×2 blocks on RoPE pairs)
 * and value rotation Q applied to the projection rows they act on, and the optional merge of a
 * group's key and value rows by their mean. Matrices are row-major floats in GGUF's order (one row
 * per output unit); a bias is a matrix of one column.
 */
final class HeadFold {
  private HeadFold() {}

  /** {@code W_q,h ← R W_q,h} for every query head h (R of its KV head). */
  static float[] queries(ModelConfig c, KvHeadMerge.Alignment a, int l, float[] w) {
    int hd = c.headDim();
    int cols = w.length / (c.heads() * hd);
    int group = c.heads() / c.kvHeads();
    for (int h = 0; h < c.heads(); h++) {
      rotatePairs(c, a.keyAngles()[l][h / group], w, h * hd, cols);
    }
    return w;
  }

  /** {@code W_k,i ← R_i W_k,i}; merged: the mean over each group of {@code factor} heads. */
  static float[] keys(
      ModelConfig c, KvHeadMerge.Alignment a, int l, float[] w, int cols, boolean merge) {
    int hd = c.headDim();
    for (int g = 0; g < c.kvHeads(); g++) {
      rotatePairs(c, a.keyAngles()[l][g], w, g * hd, cols);
    }
    return merge ? mergeGroups(w, c.kvHeads(), hd * cols, a.factor()) : w;
  }

  /** {@code W_v,i ← Q_iᵀ W_v,i}; merged: the mean over each group. */
  static float[] values(
      ModelConfig c, KvHeadMerge.Alignment a, int l, float[] w, int cols, boolean merge) {
    int hd = c.headDim();
    float[] out = new float[w.length];
    for (int g = 0; g < c.kvHeads(); g++) {
      double[] q = a.valueQ()[l][g];
      int base = g * hd * cols;
      for (int r = 0; r < hd; r++) {
        for (int col = 0; col < cols; col++) {
          double s = 0;
          for (int k = 0; k < hd; k++) {
            s += q[k * hd + r] * w[base + k * cols + col]; // (Qᵀ)[r][k] = Q[k][r]
          }
          out[base + r * cols + col] = (float) s;
        }
      }
    }
    return merge ? mergeGroups(out, c.kvHeads(), hd * cols, a.factor()) : out;
  }

  /** {@code W_o[:, h] ← W_o[:, h] Q_i} for every query head h (Q of its KV head). */
  static float[] output(ModelConfig c, KvHeadMerge.Alignment a, int l, float[] w) {
    int hd = c.headDim();
    int qDim = c.heads() * hd;
    int rows = w.length / qDim;
    int group = c.heads() / c.kvHeads();
    float[] out = new float[w.length];
    double[] slice = new double[hd];
    for (int h = 0; h < c.heads(); h++) {
      double[] q = a.valueQ()[l][h / group];
      for (int d = 0; d < rows; d++) {
        int base = d * qDim + h * hd;
        for (int k = 0; k < hd; k++) {
          slice[k] = w[base + k];
        }
        for (int j = 0; j < hd; j++) {
          double s = 0;
          for (int k = 0; k < hd; k++) {
            s += slice[k] * q[k * hd + j];
          }
          out[base + j] = (float) s;
        }
      }
    }
    return out;
  }

  /**
   * Rotates rows (pairFirst, pairSecond) of the head starting at row {@code row0} by its angles.
   */
  private static void rotatePairs(ModelConfig c, double[] angles, float[] w, int row0, int cols) {
    for (int p = 0; p < angles.length; p++) {
      if (angles[p] == 0) {
        continue;
      }
      double cos = Math.cos(angles[p]);
      double sin = Math.sin(angles[p]);
      int ra = (row0 + KvHeadMerge.pairFirst(c, p)) * cols;
      int rb = (row0 + KvHeadMerge.pairSecond(c, p)) * cols;
      for (int col = 0; col < cols; col++) {
        double x = w[ra + col];
        double y = w[rb + col];
        w[ra + col] = (float) (cos * x - sin * y);
        w[rb + col] = (float) (sin * x + cos * y);
      }
    }
  }

  /** Heads of {@code size} floats each, every {@code factor} consecutive ones averaged. */
  static float[] mergeGroups(float[] w, int heads, int size, int factor) {
    float[] out = new float[heads / factor * size];
    for (int m = 0; m < heads / factor; m++) {
      for (int i = 0; i < size; i++) {
        double sum = 0;
        for (int g = m * factor; g < (m + 1) * factor; g++) {
          sum += w[g * size + i];
        }
        out[m * size + i] = (float) (sum / factor);
      }
    }
    return out;
  }
}
