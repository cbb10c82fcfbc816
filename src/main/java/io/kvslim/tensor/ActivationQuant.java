package io.kvslim.tensor;

import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * Matrix products the way llama.cpp's CPU backend computes them: the activations are first
 * converted to the weight type's "vec_dot type" — Q8_0 blocks for Q8_0/Q4_0/Q5_0, Q8_1 (Q8_0 plus
 * the block's sum) for Q4_1/Q5_1, Q8_K super-blocks with 16-value sums for the K-quants, F16 for
 * F16 and BF16 for BF16 weights — and each block's dot product is an exact integer sum scaled by
 * both blocks' scales. This trades a little accuracy (8-bit activations) for llama.cpp's exact
 * numerics; kvslim's default path multiplies with F32 activations instead.
 *
 * <p>Plain scalar Java, written for fidelity, not speed.
 */
public final class ActivationQuant {
  private static final ValueLayout.OfShort I16 =
      ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
  private static final ValueLayout.OfFloat F32 =
      ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

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
        Activations a = new Activations(n, cols, 32, false);
        for (int r = 0; r < n; r++) {
          for (int b = 0; b < cols / 32; b++) {
            quantizeQ8Block(x, r * cols + b * 32, a, r * (cols / 32) + b);
          }
        }
        return a;
      }
      case Q4_K, Q5_K, Q6_K -> {
        Activations a = new Activations(n, cols, 256, false);
        for (int r = 0; r < n; r++) {
          for (int b = 0; b < cols / 256; b++) {
            quantizeQ8KBlock(x, r * cols + b * 256, a, r * (cols / 256) + b);
          }
        }
        return a;
      }
      default -> throw new UnsupportedOperationException("no llama.cpp activation path for " + t);
    }
  }

  /**
   * Q8_0/Q8_1 as llama.cpp's x86 SIMD quantizer: d = max|x|/127, codes round(x·127/max) with ties
   * to even; d is stored as F16; the Q8_1 sum is d·Σcodes.
   */
  private static void quantizeQ8Block(float[] x, int off, Activations a, int block) {
    float amax = 0f;
    for (int j = 0; j < 32; j++) {
      amax = Math.max(amax, Math.abs(x[off + j]));
    }
    float d = amax / 127f;
    float id = amax != 0f ? 127f / amax : 0f;
    int sum = 0;
    for (int j = 0; j < 32; j++) {
      int v = (int) Math.rint(x[off + j] * id);
      a.q[off + j] = (byte) v;
      sum += v;
    }
    a.d[block] = Float.float16ToFloat(Float.floatToFloat16(d));
    a.s[block] = Float.float16ToFloat(Float.floatToFloat16(d * sum));
  }

  /** Q8_K as ggml's reference quantizer: scale from the signed extreme, 16-value sums. */
  private static void quantizeQ8KBlock(float[] x, int off, Activations a, int block) {
    float max = 0f;
    float amax = 0f;
    for (int j = 0; j < 256; j++) {
      float ax = Math.abs(x[off + j]);
      if (ax > amax) {
        amax = ax;
        max = x[off + j];
      }
    }
    if (amax == 0f) {
      a.d[block] = 0f;
      for (int j = 0; j < 256; j++) {
        a.q[off + j] = 0;
      }
      for (int j = 0; j < 16; j++) {
        a.bsums[off / 16 + j] = 0;
      }
      return;
    }
    float iscale = -127f / max;
    for (int j = 0; j < 256; j++) {
      int v = nearestInt(iscale * x[off + j]);
      a.q[off + j] = (byte) Math.min(127, v);
    }
    for (int j = 0; j < 16; j++) {
      int sum = 0;
      for (int i = 0; i < 16; i++) {
        sum += a.q[off + j * 16 + i];
      }
      a.bsums[off / 16 + j] = (short) sum;
    }
    a.d[block] = 1f / iscale;
  }

  /** ggml's nearest_int: round half to even through the float magic number. */
  private static int nearestInt(float f) {
    return (int) Math.rint(f);
  }

  private static float bf16Round(float v) {
    int bits = Float.floatToRawIntBits(v);
    if (Float.isNaN(v)) {
      return Float.intBitsToFloat((bits | 0x00400000) & 0xffff0000);
    }
    bits += 0x7fff + ((bits >>> 16) & 1);
    return Float.intBitsToFloat(bits & 0xffff0000);
  }

  private static float half(MemorySegment m, long off) {
    return Float.float16ToFloat(m.get(I16, off));
  }

  private static int u8(MemorySegment m, long off) {
    return m.get(ValueLayout.JAVA_BYTE, off) & 0xff;
  }

  static float dot(GgmlType t, MemorySegment w, long base, int cols, Activations a, int row) {
    int xo = row * cols;
    return switch (t) {
      case F16 -> dotSteps(w, base, true, cols, a.f, xo, new float[64]);
      case BF16 -> {
        float sum = 0f;
        for (int i = 0; i < cols; i++) {
          float wv = Float.intBitsToFloat((w.get(I16, base + 2L * i) & 0xffff) << 16);
          sum += wv * a.f[xo + i];
        }
        yield sum;
      }
      case Q8_0 -> dotQ8_0(w, base, cols, a, row);
      case Q4_0, Q4_1 -> dotQ4(t, w, base, cols, a, row);
      case Q5_0, Q5_1 -> dotQ5(t, w, base, cols, a, row);
      case Q4_K -> dotQ4K(w, base, cols, a, row);
      case Q5_K -> dotQ5K(w, base, cols, a, row);
      case Q6_K -> dotQ6K(w, base, cols, a, row);
      default -> throw new UnsupportedOperationException("no llama.cpp activation path for " + t);
    };
  }

  private static float weight(MemorySegment w, long base, boolean half, int k) {
    return half ? half(w, base + 2L * k) : w.get(F32, base + 4L * k);
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
    float[] acc = new float[8];
    int nb = cols / 32;
    for (int b = 0; b < nb; b++) {
      long blk = base + 34L * b;
      int xo = row * cols + b * 32;
      float s = half(w, blk) * a.d[row * nb + b];
      for (int lane = 0; lane < 8; lane++) {
        int sumi = 0;
        for (int j = 4 * lane; j < 4 * lane + 4; j++) {
          sumi += w.get(ValueLayout.JAVA_BYTE, blk + 2 + j) * a.q[xo + j];
        }
        acc[lane] = Math.fma(s, (float) sumi, acc[lane]);
      }
    }
    float r0 = acc[4] + acc[0];
    float r1 = acc[5] + acc[1];
    float r2 = acc[6] + acc[2];
    float r3 = acc[7] + acc[3];
    return (r0 + r2) + (r1 + r3);
  }

  private static float dotQ4(
      GgmlType t, MemorySegment w, long base, int cols, Activations a, int row) {
    boolean q41 = t == GgmlType.Q4_1;
    int size = q41 ? 20 : 18;
    int qs = q41 ? 4 : 2;
    int offset = q41 ? 0 : 8;
    float sum = 0f;
    int nb = cols / 32;
    for (int b = 0; b < nb; b++) {
      long blk = base + (long) size * b;
      int xo = row * cols + b * 32;
      int sumi = 0;
      for (int j = 0; j < 16; j++) {
        int v = u8(w, blk + qs + j);
        sumi += ((v & 0xF) - offset) * a.q[xo + j] + ((v >> 4) - offset) * a.q[xo + j + 16];
      }
      int ab = row * nb + b;
      if (q41) {
        sum += (half(w, blk) * a.d[ab]) * sumi + half(w, blk + 2) * a.s[ab];
      } else {
        // llama.cpp (repacked q4_0 gemm/gemv): acc = fma(float(int dot), d_w·d_x, acc)
        sum = Math.fma((float) sumi, half(w, blk) * a.d[ab], sum);
      }
    }
    return sum;
  }

  private static float dotQ5(
      GgmlType t, MemorySegment w, long base, int cols, Activations a, int row) {
    boolean q51 = t == GgmlType.Q5_1;
    int size = q51 ? 24 : 22;
    int qhOff = q51 ? 4 : 2;
    int offset = q51 ? 0 : 16;
    float sum = 0f;
    int nb = cols / 32;
    for (int b = 0; b < nb; b++) {
      long blk = base + (long) size * b;
      int qh =
          w.get(ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), blk + qhOff);
      int xo = row * cols + b * 32;
      int sumi = 0;
      for (int j = 0; j < 16; j++) {
        int v = u8(w, blk + qhOff + 4 + j);
        int h0 = ((qh >>> j) << 4) & 0x10;
        int h1 = (qh >>> (j + 12)) & 0x10;
        sumi += (((v & 0xF) | h0) - offset) * a.q[xo + j];
        sumi += (((v >> 4) | h1) - offset) * a.q[xo + j + 16];
      }
      int ab = row * nb + b;
      if (q51) {
        sum += (half(w, blk) * a.d[ab]) * sumi + half(w, blk + 2) * a.s[ab];
      } else {
        sum += sumi * (half(w, blk) * a.d[ab]);
      }
    }
    return sum;
  }

  /** The 6-bit scale and min of sub-block j from K-quant packed scales at {@code sc}. */
  private static int scaleK4(MemorySegment w, long sc, int j) {
    return j < 4 ? u8(w, sc + j) & 63 : (u8(w, sc + j + 4) & 0xF) | ((u8(w, sc + j - 4) >> 6) << 4);
  }

  private static int minK4(MemorySegment w, long sc, int j) {
    return j < 4 ? u8(w, sc + j + 4) & 63 : (u8(w, sc + j + 4) >> 4) | ((u8(w, sc + j) >> 6) << 4);
  }

  /**
   * Q4_K × Q8_K in llama.cpp's x86 order: eight int32 lanes, lane m summing, over the sub-blocks,
   * scale × the products of elements 4m..4m+3; {@code acc_m = fma(d, lane_m, acc_m)} per
   * super-block; the mins in four lanes (pairs of sub-blocks) with {@code fma(−dmin, ·, ·)}; each
   * reduced as (a₀+a₄ + a₂+a₆) + (a₁+a₅ + a₃+a₇).
   */
  private static float dotQ4K(MemorySegment w, long base, int cols, Activations a, int row) {
    int nb = cols / 256;
    float[] acc = new float[8];
    float[] accMin = new float[4];
    int[] lane = new int[8];
    for (int b = 0; b < nb; b++) {
      long blk = base + 144L * b;
      long sc = blk + 4;
      long qs = blk + 16;
      int xo = row * cols + b * 256;
      int bs = xo / 16;
      float yd = a.d[row * nb + b];
      float d = yd * half(w, blk);
      float dmin = -yd * half(w, blk + 2);
      for (int k = 0; k < 4; k++) {
        int s0 = a.bsums[bs + 4 * k] + a.bsums[bs + 4 * k + 1];
        int s1 = a.bsums[bs + 4 * k + 2] + a.bsums[bs + 4 * k + 3];
        int prod = minK4(w, sc, 2 * k) * s0 + minK4(w, sc, 2 * k + 1) * s1;
        accMin[k] = Math.fma(dmin, (float) prod, accMin[k]);
      }
      java.util.Arrays.fill(lane, 0);
      for (int j = 0; j < 8; j++) {
        int scale = scaleK4(w, sc, j);
        long q = qs + 32L * (j / 2);
        boolean high = (j & 1) == 1;
        for (int m = 0; m < 8; m++) {
          int part = 0;
          for (int e = 4 * m; e < 4 * m + 4; e++) {
            int v = u8(w, q + e);
            part += (high ? v >> 4 : v & 0xF) * a.q[xo + 32 * j + e];
          }
          lane[m] += scale * part;
        }
      }
      for (int m = 0; m < 8; m++) {
        acc[m] = Math.fma(d, (float) lane[m], acc[m]);
      }
    }
    float mins = (accMin[0] + accMin[2]) + (accMin[1] + accMin[3]);
    return reduce8(acc) + mins;
  }

  /** x86 horizontal sum of eight lanes: r_i = a_{i+4} + a_i, then (r0 + r2) + (r1 + r3). */
  private static float reduce8(float[] acc) {
    float r0 = acc[4] + acc[0];
    float r1 = acc[5] + acc[1];
    float r2 = acc[6] + acc[2];
    float r3 = acc[7] + acc[3];
    return (r0 + r2) + (r1 + r3);
  }

  private static float dotQ5K(MemorySegment w, long base, int cols, Activations a, int row) {
    return dotK(w, base, cols, a, row, true);
  }

  /** Q4_K (144-byte blocks) and Q5_K (176-byte blocks, with a high bit per value) × Q8_K. */
  private static float dotK(
      MemorySegment w, long base, int cols, Activations a, int row, boolean q5) {
    int size = q5 ? 176 : 144;
    int nb = cols / 256;
    float sum = 0f;
    for (int b = 0; b < nb; b++) {
      long blk = base + (long) size * b;
      long sc = blk + 4;
      long qh = blk + 16;
      long qs = blk + (q5 ? 48 : 16);
      int xo = row * cols + b * 256;
      int bs = xo / 16;
      float d = a.d[row * nb + b] * half(w, blk);
      float dmin = a.d[row * nb + b] * half(w, blk + 2);
      int sumMins = 0;
      int sumScaled = 0;
      for (int j = 0; j < 8; j++) {
        sumMins += minK4(w, sc, j) * (a.bsums[bs + 2 * j] + a.bsums[bs + 2 * j + 1]);
        int chunk = j / 2;
        boolean high = (j & 1) == 1;
        int sumi = 0;
        for (int l = 0; l < 32; l++) {
          int v = u8(w, qs + 32L * chunk + l);
          int q = high ? v >> 4 : v & 0xF;
          if (q5 && (u8(w, qh + l) & (1 << j)) != 0) {
            q += 16;
          }
          sumi += q * a.q[xo + 32 * j + l];
        }
        sumScaled += scaleK4(w, sc, j) * sumi;
      }
      sum += d * sumScaled - dmin * sumMins;
    }
    return sum;
  }

  /**
   * Q6_K (210-byte blocks: ql[128], qh[64], int8 scales[16], fp16 d) × Q8_K in llama.cpp's x86
   * order: eight int32 lanes, lane m summing scale × the products of elements 4m..4m+3 of every
   * 32-element group, {@code acc_m = fma(d, lane_m, acc_m)} per super-block, then the 8-lane sum.
   */
  private static float dotQ6K(MemorySegment w, long base, int cols, Activations a, int row) {
    int nb = cols / 256;
    float[] acc = new float[8];
    int[] lane = new int[8];
    int[] q6 = new int[128];
    for (int b = 0; b < nb; b++) {
      long blk = base + 210L * b;
      float d = half(w, blk + 208) * a.d[row * nb + b];
      int xo = row * cols + b * 256;
      java.util.Arrays.fill(lane, 0);
      for (int h = 0; h < 2; h++) {
        long l0 = blk + 64L * h;
        long h0 = blk + 128 + 32L * h;
        long sc = blk + 192 + 8L * h;
        for (int l = 0; l < 32; l++) {
          int hb = u8(w, h0 + l);
          q6[l] = ((u8(w, l0 + l) & 0xF) | ((hb & 3) << 4)) - 32;
          q6[l + 32] = ((u8(w, l0 + l + 32) & 0xF) | (((hb >> 2) & 3) << 4)) - 32;
          q6[l + 64] = ((u8(w, l0 + l) >> 4) | (((hb >> 4) & 3) << 4)) - 32;
          q6[l + 96] = ((u8(w, l0 + l + 32) >> 4) | (((hb >> 6) & 3) << 4)) - 32;
        }
        int y = xo + 128 * h;
        for (int g = 0; g < 4; g++) {
          for (int m = 0; m < 8; m++) {
            int part = 0;
            for (int e = 4 * m; e < 4 * m + 4; e++) {
              part += q6[32 * g + e] * a.q[y + 32 * g + e];
            }
            int scale = w.get(ValueLayout.JAVA_BYTE, sc + 2L * g + (4 * m) / 16);
            lane[m] += scale * part;
          }
        }
      }
      for (int m = 0; m < 8; m++) {
        acc[m] = Math.fma(d, (float) lane[m], acc[m]);
      }
    }
    return reduce8(acc);
  }
}
