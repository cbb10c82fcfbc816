package io.kvslim.kv.format;

import io.kvslim.kv.attention.VectorKernels;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentHashMap;

/**
 * TurboQuant_prod keys, the paper's and not vLLM's (Zandieh et al., arXiv:2504.19874, Alg. 2;
 * METHODS.md N1 step 7): a {@code bits − 1}-bit TurboQuant MSE stage ({@link TurboQuantKeyFormat}
 * without norm correction), then the 1-bit QJL sketch of its residual, which makes inner products
 * unbiased. In the rotated frame (Π the Hadamard rotation, u = Π·k/(ρ + 1e-8), ĉ = c[idx]): r = u −
 * ĉ, γ = ‖r‖, z = sign(S·r) with S ∈ R^{d×d} iid N(0, 1) drawn from {@code seed} (S applied in the
 * rotated frame is S·Π, again iid Gaussian); k̃ = ρ·Πᵀ(ĉ + √(π/2)/d·γ·Sᵀz), and E_S[q·k̃] = q·k up
 * to the fp16 roundings of ρ and γ. vLLM leaves QJL out ("hurts attention quality by amplifying
 * variance through softmax", {@code turboquant/config.py}).
 *
 * <p>Row layout: {@code ⌈d·(bits−1)/8⌉} bytes of MSE codes, {@code d/8} bytes of signs (bit j set
 * when (S·r)_j ≥ 0), ρ and γ as fp16: {@code ⌈d·(bits−1)/8⌉ + ⌈d/8⌉ + 4} bytes per token.
 *
 * <p>Fused score: {@link #prepareQuery} stores q' = Π·q and S·q' (O(d²) once per query); then
 * {@code q·k̃ = ρ·(q'·ĉ + √(π/2)/d·γ·(S·q')·z)}.
 */
public final class TurboQuantProdKeyFormat extends RawQueryKeyFormat {
  private static final float[] SIGNS = {-1f, 1f};

  private final int bits;
  private final long seed;
  private final ConcurrentHashMap<Integer, float[]> projections = new ConcurrentHashMap<>();

  /**
   * @param bits bits per coordinate in all, 2..4 (the MSE stage takes {@code bits − 1})
   * @param seed seed of the Gaussian projection S
   * @throws IllegalArgumentException unless {@code bits} is 2, 3 or 4
   */
  public TurboQuantProdKeyFormat(int bits, long seed) {
    if (bits < 2 || bits > 4) {
      throw new IllegalArgumentException(
          "turboquant keys with a QJL residual need 2, 3 or 4 bits per coordinate, got " + bits);
    }
    this.bits = bits;
    this.seed = seed;
  }

  public int bits() {
    return bits;
  }

  @Override
  public String name() {
    return "tq_k" + bits + "_qjl";
  }

  private int mseBytes(int headDim) {
    return PackedCodes.bytes(headDim, bits - 1);
  }

  private int signBytes(int headDim) {
    return PackedCodes.bytes(headDim, 1);
  }

  @Override
  public int rowBytes(int headDim) {
    return mseBytes(headDim) + signBytes(headDim) + 4;
  }

  @Override
  protected int rowScaleBytes(int headDim) {
    return 4; // ρ and γ
  }

  @Override
  public void checkHeadDim(int headDim) {
    if (!Hadamard.fits(headDim)) {
      throw new IllegalArgumentException(
          "format "
              + name()
              + " needs a head dimension that is a power of 2 (for the Hadamard rotation), got "
              + headDim);
    }
  }

  /** S, d×d row-major, iid N(0, 1) from the seed. */
  float[] projection(int headDim) {
    return projections.computeIfAbsent(
        headDim,
        d -> {
          SplittableRandom r = new SplittableRandom(seed);
          float[] s = new float[d * d];
          for (int i = 0; i < s.length; i++) {
            s[i] = (float) r.nextGaussian();
          }
          return s;
        });
  }

  private static float qjlScale(int headDim) {
    return (float) (Math.sqrt(Math.PI / 2) / headDim);
  }

  @Override
  protected void encodeRow(float[] src, int srcOff, MemorySegment block, long offset, int headDim) {
    LloydMaxCodebook book = LloydMaxCodebook.of(headDim, bits - 1);
    float[] c = book.centroidsView();
    double sumSquares = 0;
    for (int j = 0; j < headDim; j++) {
      sumSquares += (double) src[srcOff + j] * src[srcOff + j];
    }
    float norm = (float) Math.sqrt(sumSquares);
    float[] u = new float[headDim];
    float divisor = norm + 1e-8f;
    for (int j = 0; j < headDim; j++) {
      u[j] = src[srcOff + j] / divisor;
    }
    Hadamard.rotate(u, 0, headDim);
    int[] codes = new int[headDim];
    double residual = 0;
    for (int j = 0; j < headDim; j++) {
      codes[j] = book.code(u[j]);
      u[j] -= c[codes[j]]; // r, in place
      residual += (double) u[j] * u[j];
    }
    PackedCodes.pack(codes, headDim, bits - 1, block, offset);
    float[] s = projection(headDim);
    for (int i = 0; i < headDim; i++) {
      codes[i] = VectorKernels.dot(s, i * headDim, u, 0, headDim) >= 0 ? 1 : 0;
    }
    PackedCodes.pack(codes, headDim, 1, block, offset + mseBytes(headDim));
    long at = offset + mseBytes(headDim) + signBytes(headDim);
    block.set(F16Format.SHORT_LE, at, HalfFloats.toF16(norm));
    block.set(F16Format.SHORT_LE, at + 2, HalfFloats.toF16((float) Math.sqrt(residual)));
  }

  private float half(MemorySegment block, long at) {
    return HalfFloats.fromF16(AsymmetricCodes.shortAt(block, VectorKernels.array(block), at));
  }

  /** ρ of the row at {@code offset}. */
  private float norm(MemorySegment block, long offset, int headDim) {
    return half(block, offset + mseBytes(headDim) + signBytes(headDim));
  }

  /** ρ (the fp16 norm) of the token in {@code slot} (for bound checks). */
  public float norm(MemorySegment block, int slot, int headDim) {
    return norm(block, (long) slot * rowBytes(headDim), headDim);
  }

  /** γ = ‖r‖ of the row at {@code offset}. */
  private float residualNorm(MemorySegment block, long offset, int headDim) {
    return half(block, offset + mseBytes(headDim) + signBytes(headDim) + 2);
  }

  @Override
  protected void decodeRow(MemorySegment block, long offset, int headDim, float[] dst, int dstOff) {
    float[] c = LloydMaxCodebook.of(headDim, bits - 1).centroidsView();
    PackedCodes.lookup(block, offset, headDim, bits - 1, c, dst, dstOff);
    float[] z = new float[headDim];
    PackedCodes.lookup(block, offset + mseBytes(headDim), headDim, 1, SIGNS, z, 0);
    float[] s = projection(headDim);
    float weight = qjlScale(headDim) * residualNorm(block, offset, headDim);
    for (int j = 0; j < headDim; j++) {
      float sum = 0f; // (Sᵀz)_j
      for (int i = 0; i < headDim; i++) {
        sum += s[i * headDim + j] * z[i];
      }
      dst[dstOff + j] += weight * sum;
    }
    Hadamard.rotate(dst, dstOff, headDim);
    float norm = norm(block, offset, headDim);
    for (int j = 0; j < headDim; j++) {
      dst[dstOff + j] *= norm;
    }
  }

  @Override
  public int preparedQueryLength(int headDim) {
    return 2 * headDim;
  }

  /** q' = Π·q, then S·q'. */
  @Override
  public void prepareQuery(float[] q, int qOff, int headDim, float[] dst, int dstOff) {
    System.arraycopy(q, qOff, dst, dstOff, headDim);
    Hadamard.rotate(dst, dstOff, headDim);
    float[] s = projection(headDim);
    for (int i = 0; i < headDim; i++) {
      dst[dstOff + headDim + i] = VectorKernels.dot(s, i * headDim, dst, dstOff, headDim);
    }
  }

  /** ρ·(q'·ĉ + √(π/2)/d·γ·(S·q')·z), centroids and signs looked up from the codes. */
  @Override
  protected float dotRow(
      MemorySegment block, long offset, int headDim, float[] q, int qOff, float[] work) {
    float[] c = LloydMaxCodebook.of(headDim, bits - 1).centroidsView();
    PackedCodes.lookup(block, offset, headDim, bits - 1, c, work, 0);
    float mse = VectorKernels.dot(q, qOff, work, 0, headDim);
    PackedCodes.lookup(block, offset + mseBytes(headDim), headDim, 1, SIGNS, work, 0);
    float sketch = VectorKernels.dot(q, qOff + headDim, work, 0, headDim);
    float weight = qjlScale(headDim) * residualNorm(block, offset, headDim);
    return norm(block, offset, headDim) * (mse + weight * sketch);
  }

  @Override
  public boolean equals(Object other) {
    return other instanceof TurboQuantProdKeyFormat o && o.bits == bits && o.seed == seed;
  }

  @Override
  public int hashCode() {
    return 31 * bits + Long.hashCode(seed);
  }
}
