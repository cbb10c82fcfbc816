package io.kvslim.kv.format;

import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;

/**
 * The error compensation of GEAR (Kang et al. 2024, "GEAR: An Efficient KV Cache Compression Recipe
 * for Near-Lossless Generative Inference of LLM", arXiv:2403.05527; METHODS.md H3), shared by
 * {@link GearKeyFormat} and {@link GearValueFormat}: the sparse outliers S and the low-rank factors
 * A·Bᵀ of the quantization residual.
 *
 * <p>Outliers follow {@code gears_channelQ}/{@code gears_tokenQ} in the authors' {@code
 * GenerationBench/GenerationTest/GEARLM/Simulated/compress_function.py} (opengear-project/GEAR,
 * lines 261–333): per vector, the {@code k} smallest and {@code k} largest entries are taken out
 * and replaced by the vector's mean before quantizing, and restored exactly afterwards (so the
 * residual is zero there); the low-rank approximation of the residual is then added to every entry,
 * outliers included, as the authors' {@code output + error_lr} (lines 204–220). The low rank
 * follows {@code fake_poweriteration_group} (lines 69–98): P (d×r) starts uniform in [0, 1) (seeded
 * here, so encoding is deterministic); for each of {@code loop} iterations, on the last one P ←
 * qr(P); Q ← R·P; on the last one Q ← qr(Q); P ← Rᵀ·Q; the approximation is Q·Pᵀ = Q·Qᵀ·R, an
 * orthogonal projection of R, so it never increases the Frobenius error. Here A = Q (tokens × r)
 * and B = P (d × r), both stored as fp16 like the authors' half-precision cache. QR is modified
 * Gram–Schmidt (the projection Q·Qᵀ does not depend on the sign convention of the authors'
 * Householder QR).
 */
public final class GearCodec {
  private GearCodec() {}

  /** Bytes of one outlier: a 2-byte index within its vector and the exact f32 value. */
  public static final int OUTLIER_BYTES = 6;

  /** Seed of the power iteration's start (the authors draw {@code torch.rand} unseeded). */
  public static final long SEED = 42;

  /**
   * Outliers per side of a vector of {@code length} entries: {@code round(length · fraction / 2)},
   * at most {@code length / 2}. The authors truncate {@code numel·s/(seq·2)}, a count over the
   * whole model width (every head at once); per head of 64 entries truncation would keep none at s
   * = 0.02, so this rounds.
   */
  public static int perSide(int length, double fraction) {
    return Math.min(length / 2, (int) Math.round(length * fraction / 2));
  }

  /**
   * Finds the outliers of the vector {@code x[off + i·step]}, {@code i < length}: the {@code k}
   * smallest and {@code k} largest (ties by index), writes their indices to {@code idx[o..o+2k)}
   * and values to {@code val[o..)}, and replaces them in {@code x} by the vector's mean (computed
   * over all entries first, as the authors do).
   */
  static void takeOutliers(
      float[] x, int off, int step, int length, int k, short[] idx, float[] val, int o) {
    if (k == 0 || length == 0) {
      return;
    }
    Integer[] order = new Integer[length];
    double sum = 0;
    for (int i = 0; i < length; i++) {
      order[i] = i;
      sum += x[off + i * step];
    }
    float mean = (float) (sum / length);
    java.util.Arrays.sort(
        order,
        (a, b) -> {
          int c = Float.compare(x[off + a * step], x[off + b * step]);
          return c != 0 ? c : Integer.compare(a, b);
        });
    for (int j = 0; j < k; j++) {
      int lo = order[j];
      int hi = order[length - 1 - j];
      idx[o + j] = (short) lo;
      val[o + j] = x[off + lo * step];
      idx[o + k + j] = (short) hi;
      val[o + k + j] = x[off + hi * step];
    }
    for (int j = 0; j < 2 * k; j++) {
      x[off + idx[o + j] * step] = mean;
    }
  }

  /**
   * Rank-{@code rank} approximation of the {@code n × d} row-major residual {@code r} by {@code
   * loop} power iterations; writes A ({@code n × rank}) and B ({@code d × rank}), row-major.
   */
  public static void powerIteration(
      double[] r, int n, int d, int rank, int loop, double[] a, double[] b) {
    SplittableRandom random = new SplittableRandom(SEED);
    for (int i = 0; i < d * rank; i++) {
      b[i] = random.nextDouble();
    }
    for (int it = 0; it < loop; it++) {
      boolean last = it == loop - 1;
      if (last) {
        orthonormalize(b, d, rank);
      }
      for (int t = 0; t < n; t++) {
        for (int j = 0; j < rank; j++) {
          double s = 0;
          for (int c = 0; c < d; c++) {
            s += r[t * d + c] * b[c * rank + j];
          }
          a[t * rank + j] = s;
        }
      }
      if (last) {
        orthonormalize(a, n, rank);
      }
      for (int c = 0; c < d; c++) {
        for (int j = 0; j < rank; j++) {
          double s = 0;
          for (int t = 0; t < n; t++) {
            s += r[t * d + c] * a[t * rank + j];
          }
          b[c * rank + j] = s;
        }
      }
    }
  }

  /**
   * Modified Gram–Schmidt on the {@code cols} columns of the row-major {@code rows × cols} matrix
   * {@code m}; a column left without norm (dependent, or {@code rows < cols}) becomes zero.
   */
  static void orthonormalize(double[] m, int rows, int cols) {
    for (int j = 0; j < cols; j++) {
      double before = 0;
      for (int i = 0; i < rows; i++) {
        before += m[i * cols + j] * m[i * cols + j];
      }
      for (int p = 0; p < j; p++) {
        double dot = 0;
        for (int i = 0; i < rows; i++) {
          dot += m[i * cols + j] * m[i * cols + p];
        }
        for (int i = 0; i < rows; i++) {
          m[i * cols + j] -= dot * m[i * cols + p];
        }
      }
      double norm = 0;
      for (int i = 0; i < rows; i++) {
        norm += m[i * cols + j] * m[i * cols + j];
      }
      norm = Math.sqrt(norm);
      double inv = norm > 1e-12 * Math.sqrt(before) && norm > 0 ? 1 / norm : 0;
      for (int i = 0; i < rows; i++) {
        m[i * cols + j] *= inv;
      }
    }
  }

  /** Writes {@code n} doubles as fp16 at {@code offset}. */
  static void putHalves(MemorySegment block, long offset, double[] src, int n) {
    for (int i = 0; i < n; i++) {
      block.set(F16Format.SHORT_LE, offset + 2L * i, HalfFloats.toF16((float) src[i]));
    }
  }

  /** Reads an fp16 at {@code offset + 2·i}. */
  static float half(MemorySegment block, long offset, int i) {
    return HalfFloats.fromF16(block.get(F16Format.SHORT_LE, offset + 2L * i));
  }

  /** Writes the outlier table: {@code n} indices (short), then {@code n} values (f32). */
  static void putOutliers(MemorySegment block, long offset, short[] idx, float[] val, int n) {
    for (int i = 0; i < n; i++) {
      block.set(F16Format.SHORT_LE, offset + 2L * i, idx[i]);
      block.set(
          java.lang.foreign.ValueLayout.JAVA_FLOAT_UNALIGNED, offset + 2L * n + 4L * i, val[i]);
    }
  }

  /** Index of outlier {@code i} of a table of {@code n} at {@code offset} (−1: unused). */
  static int outlierIndex(MemorySegment block, long offset, int i) {
    return block.get(F16Format.SHORT_LE, offset + 2L * i);
  }

  /** Value of outlier {@code i} of a table of {@code n} at {@code offset}. */
  static float outlierValue(MemorySegment block, long offset, int n, int i) {
    return block.get(java.lang.foreign.ValueLayout.JAVA_FLOAT_UNALIGNED, offset + 2L * n + 4L * i);
  }

  private static final java.lang.invoke.VarHandle SHORTS_LE =
      java.lang.invoke.MethodHandles.byteArrayViewVarHandle(
          short[].class, java.nio.ByteOrder.LITTLE_ENDIAN);
  private static final java.lang.invoke.VarHandle FLOATS_LE =
      java.lang.invoke.MethodHandles.byteArrayViewVarHandle(
          float[].class, java.nio.ByteOrder.LITTLE_ENDIAN);

  /** {@link #outlierIndex(MemorySegment, long, int)} from the block's array when it has one. */
  static int outlierIndex(MemorySegment block, byte[] array, long offset, int i) {
    return array != null
        ? (short) SHORTS_LE.get(array, (int) (offset + 2L * i))
        : outlierIndex(block, offset, i);
  }

  /** {@link #outlierValue(MemorySegment, long, int, int)} from the block's array if it has one. */
  static float outlierValue(MemorySegment block, byte[] array, long offset, int n, int i) {
    return array != null
        ? (float) FLOATS_LE.get(array, (int) (offset + 2L * n + 4L * i))
        : outlierValue(block, offset, n, i);
  }

  /** The fp16 at byte {@code at} of a block's array, as a float. */
  static float half(byte[] array, int at) {
    return Float.float16ToFloat((short) SHORTS_LE.get(array, at));
  }

  /** Index of outlier {@code i} of the table whose indices start at byte {@code at} of an array. */
  static int outlierIndex(byte[] array, int at, int i) {
    return (short) SHORTS_LE.get(array, at + 2 * i);
  }

  /** Value of outlier {@code i} of the table whose values start at byte {@code at} of an array. */
  static float outlierValue(byte[] array, int at, int i) {
    return (float) FLOATS_LE.get(array, at + 4 * i);
  }

  /** Checks the knobs shared by keys and values. */
  static void checkKnobs(int bits, int rank, int loop, double outliers) {
    if (bits != 2 && bits != 4) {
      throw new IllegalArgumentException("gear needs 2 or 4 bits, got " + bits);
    }
    if (rank < 0 || rank > 64 || (rank > 0 && loop < 1)) {
      throw new IllegalArgumentException(
          "gear needs a rank of 0..64 and at least one power iteration, got rank "
              + rank
              + ", loop "
              + loop);
    }
    if (!(outliers >= 0 && outliers < 1)) {
      throw new IllegalArgumentException(
          "gear outliers must be a fraction in [0, 1), got " + outliers);
    }
  }
}
