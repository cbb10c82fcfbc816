package io.kvslim.model;

/**
 * Rotary position embedding (Su et al. 2021, "RoFormer", eq. 34), computed as ggml does: the angle
 * for pair i is {@code pos * freqScale * base^(-2i/dims) / factor_i}, with {@code base^(-2/dims)}
 * raised by repeated float multiplication, so rotations match llama.cpp's bit for bit in most
 * cases. NORMAL rotates adjacent pairs (x[2i], x[2i+1]); NEOX rotates (x[i], x[i + dims/2]).
 */
public final class Rope {
  private final int dims;
  private final float thetaScale;
  private final float freqScale;
  private final float[] freqFactors; // may be null (llama3 scaling stores them in rope_freqs)
  private final ModelConfig.RopeType type;

  public Rope(ModelConfig c, float[] freqFactors) {
    this.dims = c.ropeDims();
    this.thetaScale = (float) Math.pow(c.ropeBase(), -2.0 / dims);
    this.freqScale = c.ropeFreqScale();
    this.freqFactors = freqFactors;
    this.type = c.ropeType();
  }

  /** Fills {@code cos[off..off+dims/2)} and {@code sin[...]} for a position. */
  public void angles(int pos, float[] cos, float[] sin, int off) {
    float theta = pos;
    for (int i = 0; i < dims / 2; i++) {
      float ff = freqFactors != null ? freqFactors[i] : 1f;
      float t = freqScale * (theta / ff);
      cos[off + i] = (float) Math.cos(t);
      sin[off + i] = (float) Math.sin(t);
      theta *= thetaScale;
    }
  }

  /**
   * Rotates {@code heads} consecutive head vectors of size {@code headDim} starting at {@code off},
   * with the angles at {@code cos[a..a+dims/2)} and {@code sin[a..]}.
   */
  public void rotate(float[] x, int off, int heads, int headDim, float[] cos, float[] sin, int a) {
    int half = dims / 2;
    for (int h = 0; h < heads; h++) {
      int base = off + h * headDim;
      if (type == ModelConfig.RopeType.NORMAL) {
        for (int i = 0; i < half; i++) {
          float x0 = x[base + 2 * i];
          float x1 = x[base + 2 * i + 1];
          x[base + 2 * i] = x0 * cos[a + i] - x1 * sin[a + i];
          x[base + 2 * i + 1] = x0 * sin[a + i] + x1 * cos[a + i];
        }
      } else {
        for (int i = 0; i < half; i++) {
          float x0 = x[base + i];
          float x1 = x[base + i + half];
          x[base + i] = x0 * cos[a + i] - x1 * sin[a + i];
          x[base + i + half] = x0 * sin[a + i] + x1 * cos[a + i];
        }
      }
    }
  }

  public int dims() {
    return dims;
  }
}
