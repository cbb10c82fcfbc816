package io.kvslim.kv;

/**
 * Rotary position embedding as the model applies it, handed to a cache that applies it itself
 * ({@link LayerKv#appliesRope}): a cache with StreamingLLM's cache-relative positions stores keys
 * before RoPE and rotates keys and queries at read time, by positions of its own. The model's RoPE
 * implements it, so a rotation here is bit for bit the model's at the same position.
 */
public interface Rotary {
  /** Dimensions of a head that are rotated (in pairs). */
  int dims();

  /**
   * Fills {@code cos[off..off+dims/2)} and {@code sin[...]} with the angles of {@code position}.
   */
  void angles(int position, float[] cos, float[] sin, int off);

  /**
   * Rotates {@code heads} consecutive head vectors of size {@code headDim} starting at {@code off},
   * with the angles at {@code cos[a..a+dims/2)} and {@code sin[a..]}.
   */
  void rotate(float[] x, int off, int heads, int headDim, float[] cos, float[] sin, int a);

  /**
   * How channels pair: the distance from the first channel of a pair to its second, 1 when pair i
   * is {@code (x[2i], x[2i+1])} (ggml's NORMAL), {@code dims/2} when it is {@code (x[i], x[i +
   * dims/2])} (NEOX); each pair is rotated as {@link #rotate} does, {@code (x0·cos − x1·sin, x0·sin
   * + x1·cos)}. 0 when this rotary does not say (a cache then rotates each key itself).
   */
  default int pairOffset() {
    return 0;
  }
}
