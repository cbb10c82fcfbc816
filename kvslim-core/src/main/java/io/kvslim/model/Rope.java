package io.kvslim.model;

import io.kvslim.kv.Rotary;
import io.kvslim.tensor.LlamaCppMath;

/**
 * Rotary position embedding (Su et al. 2021, "RoFormer", eq. 34), computed bit for bit as ggml's
 * CPU backend does: the angle for pair i is {@code pos * freqScale * base^(-2i/dims) / factor_i},
 * with {@code base^(-2/dims)} (float exponent) raised by repeated float multiplication; cosine and
 * sine are glibc's ({@link LlamaCppMath#sinCos}), and the rotation {@code (x0·cos − x1·sin, x0·sin
 * + x1·cos)} fuses the first product of each pair into a multiply-add, as GCC compiles ggml's
 * expression. NORMAL rotates adjacent pairs (x[2i], x[2i+1]); NEOX rotates (x[i], x[i + dims/2]).
 */
public final class Rope implements Rotary {
  private final int dims;
  private final float thetaScale;
  private final float freqScale;
  private final float[] freqFactors; // may be null (llama3 scaling stores them in rope_freqs)
  private final ModelConfig.RopeType type;

  public Rope(ModelConfig c, float[] freqFactors) {
    this.dims = c.ropeDims();
    // powf(base, -2.0f/dims) in ggml: the exponent is a float
    this.thetaScale = (float) Math.pow(c.ropeBase(), -2.0f / dims);
    this.freqScale = c.ropeFreqScale();
    this.freqFactors = freqFactors;
    this.type = c.ropeType();
  }

  /** Fills {@code cos[off..off+dims/2)} and {@code sin[...]} for a position. */
  @Override
  public void angles(int pos, float[] cos, float[] sin, int off) {
    float theta = pos;
    for (int i = 0; i < dims / 2; i++) {
      float ff = freqFactors != null ? freqFactors[i] : 1f;
      float t = freqScale * (theta / ff);
      LlamaCppMath.sinCos(t, sin, cos, off + i);
      theta *= thetaScale;
    }
  }

  /**
   * Rotates {@code heads} consecutive head vectors of size {@code headDim} starting at {@code off},
   * with the angles at {@code cos[a..a+dims/2)} and {@code sin[a..]}.
   */
  @Override
  public void rotate(float[] x, int off, int heads, int headDim, float[] cos, float[] sin, int a) {
    int half = dims / 2;
    for (int h = 0; h < heads; h++) {
      int base = off + h * headDim;
      if (type == ModelConfig.RopeType.NORMAL) {
        for (int i = 0; i < half; i++) {
          float x0 = x[base + 2 * i];
          float x1 = x[base + 2 * i + 1];
          x[base + 2 * i] = Math.fma(x0, cos[a + i], -(x1 * sin[a + i]));
          x[base + 2 * i + 1] = Math.fma(x0, sin[a + i], x1 * cos[a + i]);
        }
      } else {
        for (int i = 0; i < half; i++) {
          float x0 = x[base + i];
          float x1 = x[base + i + half];
          x[base + i] = Math.fma(x0, cos[a + i], -(x1 * sin[a + i]));
          x[base + i + half] = Math.fma(x0, sin[a + i], x1 * cos[a + i]);
        }
      }
    }
  }

  @Override
  public int pairOffset() {
    return type == ModelConfig.RopeType.NORMAL ? 1 : dims / 2;
  }

  @Override
  public int dims() {
    return dims;
  }
}
