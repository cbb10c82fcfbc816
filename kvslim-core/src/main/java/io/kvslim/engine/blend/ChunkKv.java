package io.kvslim.engine.blend;

/**
 * One chunk's keys and values as a prefill of it alone computed them, at positions {@code 0..rows)}
 * (keys after RoPE at those positions), every layer: {@code keys[l]} and {@code values[l]} are
 * {@code rows × kvDim} floats, token-major, as {@link io.kvslim.kv.LayerKv#append} receives them.
 *
 * @param tokens the token ids that were computed (what the store's key hashes)
 */
public record ChunkKv(int[] tokens, float[][] keys, float[][] values) {
  public int rows() {
    return tokens.length;
  }

  /** Bytes of the stored floats and token ids. */
  public long bytes() {
    long b = 4L * tokens.length;
    for (int l = 0; l < keys.length; l++) {
      b += 4L * keys[l].length + 4L * values[l].length;
    }
    return b;
  }
}
