package io.kvslim.tensor;

import io.kvslim.ggml.BlockCodec;
import io.kvslim.ggml.LittleEndian;
import io.kvslim.ggml.Q4_KCodec;
import io.kvslim.ggml.Q5_KCodec;
import io.kvslim.ggml.Q6_KCodec;
import io.kvslim.ggml.Q8_0Codec;
import io.kvslim.ggml.Q8_1Codec;
import io.kvslim.ggml.Q8_KCodec;
import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Matrix products the way llama.cpp's CPU backend computes them: the activations are first
 * converted to the weight type's "vec_dot type" — Q8_0 blocks for Q8_0/Q4_0/Q5_0, Q8_1 (Q8_0 plus
 * the block's sum) for Q4_1/Q5_1, Q8_K super-blocks with 16-value sums for the K-quants, F16 for
 * F16 and BF16 for BF16 weights — and each block's dot product is an exact integer sum scaled by
 * both blocks' scales. This trades a little accuracy (8-bit activations) for llama.cpp's exact
 * numerics; kvslim's default path multiplies with F32 activations instead.
 *
 * <p>The activation blocks come from {@link Q8_1Codec#quantizeX86} and {@link Q8_KCodec#quantize},
 * the weights' codes and scales from their codecs. Plain scalar Java, written for fidelity, not
 * speed.
 */
public final class ActivationQuant {
  private ActivationQuant() {}

  /** Whether this class has llama.cpp's path for {@code type}. */
  public static boolean applies(GgmlType type) {
    return switch (type) {
      case F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_1, Q5_1, Q4_K, Q5_K, Q6_K -> true;
      default -> false;
    };
  }

  /** {@code out (n × rows) = x (n × cols) · wᵀ} with llama.cpp's activation conversion. */
  public static void matmul(WeightMatrix w, float[] x, int n, float[] out, Parallel pool) {
    int rows = w.rows();
    int cols = w.cols();
    GgmlType t = w.type();
    Activations a = t == GgmlType.F32 ? null : quantize(t, x, n, cols);
    MemorySegment data = w.data();
    long rowBytes = t.bytesFor(cols);
    if (t == GgmlType.F16 || t == GgmlType.F32) {
      // tinyBLAS takes prompt batches whose shapes fit its tiles; ggml_vec_dot_f16/f32 the rest
      boolean tiles = n >= 2 && cols % 16 == 0 && rows % 4 == 0;
      float[] act = t == GgmlType.F32 ? x : a.f;
      boolean half = t == GgmlType.F16;
      pool.forRange(
          rows,
          16,
          (s, e) -> {
            float[] lanes = new float[64];
            for (int r = s; r < e; r++) {
              long base = r * rowBytes;
              for (int tk = 0; tk < n; tk++) {
                out[tk * rows + r] =
                    tiles
                        ? dotLanes(data, base, half, cols, act, tk * cols, lanes)
                        : dotSteps(data, base, half, cols, act, tk * cols, lanes);
              }
            }
          });
      return;
    }
    pool.forRange(
        rows,
        16,
        (s, e) -> {
          for (int r = s; r < e; r++) {
            long base = r * rowBytes;
            for (int tk = 0; tk < n; tk++) {
              out[tk * rows + r] = dot(t, data, base, cols, a, tk);
            }
          }
        });
  }

  /** Activations converted per row: int8 codes, per-block scales and (Q8_1/Q8_K) sums. */
  static final class Activations {
    final int cols;
    final byte[] q; // n × cols codes (Q8 kinds)
    final float[] d; // per block scale
    final float[] s; // Q8_1: d·Σq per block; unused otherwise
    final short[] bsums; // Q8_K: sums of 16 codes
    final float[] f; // F16/BF16 kinds: the rounded activations
    final int blocksPerRow;

    Activations(int n, int cols, int block, boolean half) {
      this.cols = cols;
      this.blocksPerRow = cols / block;
      this.q = half ? null : new byte[n * cols];
      this.d = half ? null : new float[n * blocksPerRow];
      this.s = half ? null : new float[n * blocksPerRow];
      this.bsums = half ? null : new short[n * cols / 16];
      this.f = half ? new float[n * cols] : null;
    }
  }

  static Activations quantize(GgmlType t, float[] x, int n, int cols) {
    switch (t) {
      case F16, BF16 -> {
        Activations a = new Activations(n, cols, 1, true);
        for (int i = 0; i < n * cols; i++) {
          a.f[i] =
              t == GgmlType.F16
                  ? Float.float16ToFloat(Float.floatToFloat16(x[i]))
                  : bf16Round(x[i]);
        }
        return a;
      }
      case Q8_0, Q4_0, Q5_0, Q4_1, Q5_1 -> {
        Activations a = new Activations(n, cols, Q8_1Codec.BLOCK, false);
        MemorySegment block = MemorySegment.ofArray(new byte[Q8_1Codec.BYTES]);
        for (int i = 0; i < n * a.blocksPerRow; i++) {
          int off = i * Q8_1Codec.BLOCK;
          Q8_1Codec.INSTANCE.quantizeX86(x, off, block, 0);
          a.d[i] = Q8_1Codec.INSTANCE.d(block, 0);
          a.s[i] = Q8_1Codec.INSTANCE.s(block, 0);
          MemorySegment.copy(block, ValueLayout.JAVA_BYTE, Q8_1Codec.QS, a.q, off, Q8_1Codec.BLOCK);
        }
        return a;
      }
      case Q4_K, Q5_K, Q6_K -> {
        Activations a = new Activations(n, cols, Q8_KCodec.BLOCK, false);
        MemorySegment block = MemorySegment.ofArray(new byte[Q8_KCodec.BYTES]);
        for (int i = 0; i < n * a.blocksPerRow; i++) {
          int off = i * Q8_KCodec.BLOCK;
          Q8_KCodec.INSTANCE.quantize(x, off, block, 0);
          a.d[i] = Q8_KCodec.INSTANCE.d(block, 0);
          MemorySegment.copy(block, ValueLayout.JAVA_BYTE, Q8_KCodec.QS, a.q, off, Q8_KCodec.BLOCK);
          MemorySegment.copy(
              block, LittleEndian.SHORT, Q8_KCodec.BSUMS, a.bsums, off / 16, Q8_KCodec.BLOCK / 16);
        }
        return a;
      }
      default -> throw new UnsupportedOperationException("no llama.cpp activation path for " + t);
    }
  }

  private static float bf16Round(float v) {
    int bits = Float.floatToRawIntBits(v);
    if (Float.isNaN(v)) {
      return Float.intBitsToFloat((bits | 0x00400000) & 0xffff0000);
    }
    bits += 0x7fff + ((bits >>> 16) & 1);
    return Float.intBitsToFloat(bits & 0xffff0000);
  }

  static float dot(GgmlType t, MemorySegment w, long base, int cols, Activations a, int row) {
    int xo = row * cols;
    return switch (t) {
      case F16 -> dotSteps(w, base, true, cols, a.f, xo, new float[64]);
      case BF16 -> {
        float sum = 0f;
        for (int i = 0; i < cols; i++) {
          float wv =
              Float.intBitsToFloat((w.get(LittleEndian.SHORT, base + 2L * i) & 0xffff) << 16);
          sum += wv * a.f[xo + i];
        }
        yield sum;
      }
      case Q8_0 -> dotQ8_0(w, base, cols, a, row);
      case Q4_0, Q4_1, Q5_0, Q5_1 -> dot32(t, w, base, cols, a, row);
      case Q4_K -> dotQ4K(w, base, cols, a, row);
      case Q5_K -> dotQ5K(w, base, cols, a, row);
      case Q6_K -> dotQ6K(w, base, cols, a, row);
      default -> throw new UnsupportedOperationException("no llama.cpp activation path for " + t);
    };
  }

  private static float weight(MemorySegment w, long base, boolean half, int k) {
    return half ? LittleEndian.half(w, base + 2L * k) : w.get(LittleEndian.FLOAT, base + 4L * k);
  }

  /**
   * A row of F16 or F32 weights times activations {@code x[xOff..+cols)} as llama.cpp's tinyBLAS
   * (AVX-512) computes a prompt batch: element k added by fused multiply-add to lane {@code k mod
   * 16}, then {@link LlamaCppMath#sum16}.
   */
  private static float dotLanes(
      MemorySegment w, long base, boolean half, int cols, float[] x, int xOff, float[] lanes) {
    java.util.Arrays.fill(lanes, 0, 16, 0f);
    for (int i = 0; i < cols; i += 16) {
      for (int l = 0; l < 16; l++) {
        lanes[l] = Math.fma(weight(w, base, half, i + l), x[xOff + i + l], lanes[l]);
      }
    }
    return LlamaCppMath.sum16(lanes, 0);
  }

  /**
   * As {@link #dotLanes}, in the order of ggml's {@code ggml_vec_dot_f16} / {@code
   * ggml_vec_dot_f32} (AVX-512): {@link LlamaCppMath#dot}'s 64-element steps, then the leftovers'
   * products added one by one to the sum, in double for F16 and in float for F32.
   */
  private static float dotSteps(
      MemorySegment w, long base, boolean half, int cols, float[] x, int xOff, float[] lanes) {
    int steps = cols & ~63;
    java.util.Arrays.fill(lanes, 0, 64, 0f);
    for (int i = 0; i < steps; i += 64) {
      for (int e = 0; e < 64; e++) {
        lanes[e] = Math.fma(weight(w, base, half, i + e), x[xOff + i + e], lanes[e]);
      }
    }
    LlamaCppMath.foldSteps(lanes);
    float reduced = LlamaCppMath.sum16(lanes, 0);
    if (half) {
      double sum = reduced;
      for (int i = steps; i < cols; i++) {
        sum += weight(w, base, true, i) * x[xOff + i];
      }
      return (float) sum;
    }
    float sum = reduced;
    for (int i = steps; i < cols; i++) {
      sum += weight(w, base, false, i) * x[xOff + i];
    }
    return sum;
  }

  /**
   * Q8_0 × Q8_0 in llama.cpp's AVX order: per block the scale product s = d_w·d_x, eight lanes each
   * holding the integer sum of four consecutive products, {@code acc_j = fma(s, lane_j, acc_j)}
   * block after block, then {@code r_i = acc_{i+4} + acc_i} and {@code (r0+r2)+(r1+r3)}.
   */
  private static float dotQ8_0(MemorySegment w, long base, int cols, Activations a, int row) {
    Q8_0Codec codec = Q8_0Codec.INSTANCE;
    float[] acc = new float[8];
    float[] codes = new float[Q8_0Codec.BLOCK];
    int nb = cols / Q8_0Codec.BLOCK;
    for (int b = 0; b < nb; b++) {
      long blk = base + (long) Q8_0Codec.BYTES * b;
      int xo = row * cols + b * Q8_0Codec.BLOCK;
      codec.codes(w, blk, codes, 0);
      float s = codec.d(w, blk) * a.d[row * nb + b];
      for (int lane = 0; lane < 8; lane++) {
        int sumi = 0;
        for (int j = 4 * lane; j < 4 * lane + 4; j++) {
          sumi += (int) codes[j] * a.q[xo + j];
        }
        acc[lane] = Math.fma(s, (float) sumi, acc[lane]);
      }
    }
    return LlamaCppMath.sum8(acc);
  }

  /**
   * Q4_0, Q4_1, Q5_0, Q5_1 × Q8_0/Q8_1: per block the exact integer {@code Σ code·q}, scaled as
   * llama.cpp's kernel for the type does; the minimum of q4_1/q5_1 multiplies the activations'
   * {@code s}.
   */
  private static float dot32(
      GgmlType t, MemorySegment w, long base, int cols, Activations a, int row) {
    BlockCodec codec = BlockCodec.of(t);
    float[] codes = new float[32];
    float sum = 0f;
    int nb = cols / 32;
    for (int b = 0; b < nb; b++) {
      long blk = base + (long) codec.blockBytes() * b;
      int xo = row * cols + b * 32;
      codec.codes(w, blk, codes, 0);
      int sumi = 0;
      for (int j = 0; j < 32; j++) {
        sumi += (int) codes[j] * a.q[xo + j];
      }
      int ab = row * nb + b;
      float scale = codec.d(w, blk) * a.d[ab];
      sum =
          switch (t) {
            // llama.cpp (repacked q4_0 gemm/gemv): acc = fma(float(int dot), d_w·d_x, acc)
            case Q4_0 -> Math.fma((float) sumi, scale, sum);
            case Q5_0 -> sum + sumi * scale;
            default -> sum + (scale * sumi + codec.m(w, blk) * a.s[ab]);
          };
    }
    return sum;
  }

  /**
   * Q4_K × Q8_K in llama.cpp's x86 order: eight int32 lanes, lane m summing, over the sub-blocks,
   * scale × the products of elements 4m..4m+3; {@code acc_m = fma(d, lane_m, acc_m)} per
   * super-block; the mins in four lanes (pairs of sub-blocks) with {@code fma(−dmin, ·, ·)}; each
   * reduced as (a₀+a₄ + a₂+a₆) + (a₁+a₅ + a₃+a₇).
   */
  private static float dotQ4K(MemorySegment w, long base, int cols, Activations a, int row) {
    Q4_KCodec codec = Q4_KCodec.INSTANCE;
    int nb = cols / Q4_KCodec.BLOCK;
    float[] acc = new float[8];
    float[] accMin = new float[4];
    int[] lane = new int[8];
    float[] codes = new float[Q4_KCodec.BLOCK];
    for (int b = 0; b < nb; b++) {
      long blk = base + (long) Q4_KCodec.BYTES * b;
      long sc = blk + Q4_KCodec.SCALES;
      int xo = row * cols + b * Q4_KCodec.BLOCK;
      int bs = xo / 16;
      float yd = a.d[row * nb + b];
      float d = yd * codec.d(w, blk);
      float dmin = -yd * codec.dmin(w, blk);
      for (int k = 0; k < 4; k++) {
        int s0 = a.bsums[bs + 4 * k] + a.bsums[bs + 4 * k + 1];
        int s1 = a.bsums[bs + 4 * k + 2] + a.bsums[bs + 4 * k + 3];
        int prod = Q4_KCodec.min(w, sc, 2 * k) * s0 + Q4_KCodec.min(w, sc, 2 * k + 1) * s1;
        accMin[k] = Math.fma(dmin, (float) prod, accMin[k]);
      }
      codec.codes(w, blk, codes, 0);
      java.util.Arrays.fill(lane, 0);
      for (int j = 0; j < 8; j++) {
        int scale = Q4_KCodec.scale(w, sc, j);
        for (int m = 0; m < 8; m++) {
          int part = 0;
          for (int e = 32 * j + 4 * m; e < 32 * j + 4 * m + 4; e++) {
            part += (int) codes[e] * a.q[xo + e];
          }
          lane[m] += scale * part;
        }
      }
      for (int m = 0; m < 8; m++) {
        acc[m] = Math.fma(d, (float) lane[m], acc[m]);
      }
    }
    float mins = (accMin[0] + accMin[2]) + (accMin[1] + accMin[3]);
    return LlamaCppMath.sum8(acc) + mins;
  }

  /**
   * Q5_K × Q8_K as llama.cpp's scalar kernel: per super-block the integer sums of scale × codes ×
   * activation codes and of min × the activations' 32-value sums, then {@code d·Σ − dmin·Σmins}.
   */
  private static float dotQ5K(MemorySegment w, long base, int cols, Activations a, int row) {
    Q5_KCodec codec = Q5_KCodec.INSTANCE;
    int nb = cols / Q5_KCodec.BLOCK;
    float[] codes = new float[Q5_KCodec.BLOCK];
    float sum = 0f;
    for (int b = 0; b < nb; b++) {
      long blk = base + (long) Q5_KCodec.BYTES * b;
      long sc = blk + Q5_KCodec.SCALES;
      int xo = row * cols + b * Q5_KCodec.BLOCK;
      int bs = xo / 16;
      float d = a.d[row * nb + b] * codec.d(w, blk);
      float dmin = a.d[row * nb + b] * codec.dmin(w, blk);
      codec.codes(w, blk, codes, 0);
      int sumMins = 0;
      int sumScaled = 0;
      for (int j = 0; j < 8; j++) {
        sumMins += Q4_KCodec.min(w, sc, j) * (a.bsums[bs + 2 * j] + a.bsums[bs + 2 * j + 1]);
        int sumi = 0;
        for (int e = 32 * j; e < 32 * j + 32; e++) {
          sumi += (int) codes[e] * a.q[xo + e];
        }
        sumScaled += Q4_KCodec.scale(w, sc, j) * sumi;
      }
      sum += d * sumScaled - dmin * sumMins;
    }
    return sum;
  }

  /**
   * Q6_K × Q8_K in llama.cpp's x86 order: eight int32 lanes, lane m summing scale × the products of
   * elements 4m..4m+3 of every 32-element group, {@code acc_m = fma(d, lane_m, acc_m)} per
   * super-block, then the 8-lane sum.
   */
  private static float dotQ6K(MemorySegment w, long base, int cols, Activations a, int row) {
    Q6_KCodec codec = Q6_KCodec.INSTANCE;
    int nb = cols / Q6_KCodec.BLOCK;
    float[] acc = new float[8];
    int[] lane = new int[8];
    float[] codes = new float[Q6_KCodec.BLOCK];
    for (int b = 0; b < nb; b++) {
      long blk = base + (long) Q6_KCodec.BYTES * b;
      float d = codec.d(w, blk) * a.d[row * nb + b];
      int xo = row * cols + b * Q6_KCodec.BLOCK;
      codec.codes(w, blk, codes, 0);
      java.util.Arrays.fill(lane, 0);
      for (int g = 0; g < 8; g++) {
        for (int m = 0; m < 8; m++) {
          int part = 0;
          for (int e = 32 * g + 4 * m; e < 32 * g + 4 * m + 4; e++) {
            part += (int) codes[e] * a.q[xo + e];
          }
          lane[m] += codec.scale(w, blk, (32 * g + 4 * m) / 16) * part;
        }
      }
      for (int m = 0; m < 8; m++) {
        acc[m] = Math.fma(d, (float) lane[m], acc[m]);
      }
    }
    return LlamaCppMath.sum8(acc);
  }
}
