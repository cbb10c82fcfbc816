package io.kvslim.kv.store;

/**
 * One head's compensation entry (RazorAttention's compensation token, Tang et al. 2024,
 * arXiv:2407.15891 eq. 4; METHODS.md M7): the mean key {@code k̂} and mean value {@code v̂} of the
 * |D| tokens folded into it, which attention counts as |D| copies of one token (eq. 5, METHODS.md
 * M2: its logit gets {@code + ln |D|} inside the softmax), and the largest position folded in
 * (queries before it do not see it). It costs {@link #bytes} in the pool: key and value in F32, the
 * weight and the position as 4-byte integers. Immutable; a fold makes a new one ({@link Sum}).
 *
 * @param key k̂ (do not modify)
 * @param value v̂ (do not modify)
 * @param weight |D|
 * @param position the largest position folded in
 */
public record CompensationEntry(float[] key, float[] value, int weight, int position) {

  /** Bytes of an entry of head dimension {@code headDim}. */
  public static long bytes(int headDim) {
    return 2L * headDim * Float.BYTES + 2L * Integer.BYTES;
  }

  /**
   * A fold in progress: with D the tokens of the prior entry and M the new ones, {@code k̂ ←
   * (|D|·k̂ + Σ_M k)/(|D| + |M|)}, the same for {@code v̂}, summed in double and rounded to F32
   * once; so a first fold stores exactly {@code (float) (Σ k / |M|)}, the fp mean.
   */
  static final class Sum {
    private final double[] keys;
    private final double[] values;
    private int weight;
    private int position;

    Sum(CompensationEntry prior, int headDim) {
      keys = new double[headDim];
      values = new double[headDim];
      if (prior != null) {
        weight = prior.weight;
        position = prior.position;
        for (int i = 0; i < headDim; i++) {
          keys[i] = (double) prior.key[i] * prior.weight;
          values[i] = (double) prior.value[i] * prior.weight;
        }
      }
    }

    void add(float[] key, float[] value, int pos) {
      for (int i = 0; i < keys.length; i++) {
        keys[i] += key[i];
        values[i] += value[i];
      }
      weight++;
      position = Math.max(position, pos);
    }

    CompensationEntry entry() {
      float[] k = new float[keys.length];
      float[] v = new float[values.length];
      for (int i = 0; i < k.length; i++) {
        k[i] = (float) (keys[i] / weight);
        v[i] = (float) (values[i] / weight);
      }
      return new CompensationEntry(k, v, weight, position);
    }
  }
}
