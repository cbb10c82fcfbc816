package io.kvslim.calibrate;

import io.kvslim.kv.Rotary;
import io.kvslim.model.Forward;
import io.kvslim.model.ModelConfig;

/**
 * DuoAttention's training-free retrieval score per KV head (METHODS.md S2 step 4b), as kvpress
 * computes it on the fly: {@code duo_attention_on_the_fly} in {@code
 * kvpress/presses/duo_attention_press.py} (NVIDIA/kvpress, lines 144–210). Per calibration sample
 * (here: one window of the text) and layer:
 *
 * <ol>
 *   <li>the mean query of each query head and the mean key of each KV head over the sample's
 *       tokens, after the projections and before RoPE (lines 179–193);
 *   <li>both repeated to {@code positions} positions (kvpress's {@code q_len}, 500) and rotated by
 *       RoPE at positions 0..q_len−1 (lines 195–198);
 *   <li>the attention of the last position's query over the {@code q_len} keys, softmax in fp32
 *       (here fp64) (lines 200–202);
 *   <li>the score: the mean over positions of the cumulative attention curve, {@code
 *       cumsum(attn).mean()}, then the mean over the query heads of each KV head's group (lines
 *       204–206);
 *   <li>averaged over the samples (lines 208–209).
 * </ol>
 *
 * A head whose attention stays on the last positions (local, streaming) gets a score near 0, one
 * that reads from the start near 1; kvpress marks the lowest {@code head_compression_ratio} of the
 * scores as streaming heads. The queries and keys are those of the engine's forward pass, received
 * through {@link Forward.ProjectionListener} (the model is not recomputed).
 */
final class DuoScores implements Forward.ProjectionListener {
  private final ModelConfig c;
  private final Rotary rope;
  private final int positions;
  private final double[][][] qSum; // [layer][head][dim]
  private final double[][][] kSum; // [layer][kvHead][dim]
  private final int[] rows; // per layer, rows summed in the current sample
  private final double[][] scores; // [layer][kvHead], summed over samples
  private int samples;

  DuoScores(ModelConfig c, Rotary rope, int positions) {
    this.c = c;
    this.rope = rope;
    this.positions = positions;
    this.qSum = new double[c.layers()][c.heads()][c.headDim()];
    this.kSum = new double[c.layers()][c.kvHeads()][c.headDim()];
    this.rows = new int[c.layers()];
    this.scores = new double[c.layers()][c.kvHeads()];
  }

  @Override
  public void onProjections(int layer, int n, float[] q, float[] k) {
    int d = c.headDim();
    for (int r = 0; r < n; r++) {
      for (int h = 0; h < c.heads(); h++) {
        double[] s = qSum[layer][h];
        int off = (r * c.heads() + h) * d;
        for (int i = 0; i < d; i++) {
          s[i] += q[off + i];
        }
      }
      for (int g = 0; g < c.kvHeads(); g++) {
        double[] s = kSum[layer][g];
        int off = (r * c.kvHeads() + g) * d;
        for (int i = 0; i < d; i++) {
          s[i] += k[off + i];
        }
      }
    }
    rows[layer] += n;
  }

  /** Ends a sample: adds its scores (from the means seen since the last call) and resets. */
  void endSample() {
    int d = c.headDim();
    int group = c.heads() / c.kvHeads();
    for (int l = 0; l < c.layers(); l++) {
      if (rows[l] == 0) {
        throw new IllegalStateException("no tokens were seen in layer " + l);
      }
      float[][] keys = new float[c.kvHeads()][];
      for (int g = 0; g < c.kvHeads(); g++) {
        keys[g] = mean(kSum[l][g], rows[l]);
      }
      for (int h = 0; h < c.heads(); h++) {
        float[] query = mean(qSum[l][h], rows[l]);
        scores[l][h / group] += score(query, keys[h / group], rope, d, positions) / group;
      }
      rows[l] = 0;
      for (double[] s : qSum[l]) {
        java.util.Arrays.fill(s, 0);
      }
      for (double[] s : kSum[l]) {
        java.util.Arrays.fill(s, 0);
      }
    }
    samples++;
  }

  /** The scores averaged over the samples, {@code [layer][kvHead]}. */
  double[][] scores() {
    double[][] out = new double[scores.length][];
    for (int l = 0; l < scores.length; l++) {
      out[l] = scores[l].clone();
      for (int g = 0; g < out[l].length; g++) {
        out[l][g] /= samples;
      }
    }
    return out;
  }

  private static float[] mean(double[] sum, int n) {
    float[] m = new float[sum.length];
    for (int i = 0; i < m.length; i++) {
      m[i] = (float) (sum[i] / n);
    }
    return m;
  }

  /**
   * The score of one query head: {@code query} and {@code key} (before RoPE) repeated at positions
   * 0..positions−1 and rotated; the last position's attention over all of them; the mean of its
   * cumulative sum.
   */
  static double score(float[] query, float[] key, Rotary rope, int headDim, int positions) {
    int half = rope.dims() / 2;
    float[] cos = new float[half];
    float[] sin = new float[half];
    float[] q = query.clone();
    rope.angles(positions - 1, cos, sin, 0);
    rope.rotate(q, 0, 1, headDim, cos, sin, 0);
    double[] logits = new double[positions];
    double scale = 1.0 / Math.sqrt(headDim);
    double max = Double.NEGATIVE_INFINITY;
    float[] k = new float[headDim];
    for (int p = 0; p < positions; p++) {
      System.arraycopy(key, 0, k, 0, headDim);
      rope.angles(p, cos, sin, 0);
      rope.rotate(k, 0, 1, headDim, cos, sin, 0);
      double dot = 0;
      for (int i = 0; i < headDim; i++) {
        dot += (double) q[i] * k[i];
      }
      logits[p] = dot * scale;
      max = Math.max(max, logits[p]);
    }
    double sum = 0;
    for (int p = 0; p < positions; p++) {
      logits[p] = Math.exp(logits[p] - max);
      sum += logits[p];
    }
    return areaUnderCumulative(logits, sum);
  }

  /** The mean over positions of the cumulative sum of {@code weights / total}. */
  static double areaUnderCumulative(double[] weights, double total) {
    double cumulative = 0;
    double area = 0;
    for (double w : weights) {
      cumulative += w / total;
      area += cumulative;
    }
    return area / weights.length;
  }
}
