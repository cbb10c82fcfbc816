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

  /** Whether this path changes anything for {@code type} (F32 weights use F32 activations). */
  public static boolean applies(GgmlType type) {
    return type != GgmlType.F32;
  }

  /** {@code out (n × rows) = x (n × cols) · wᵀ} with llama.cpp's activation conversion. */
  public static void matmul(WeightMatrix w, float[] x, int n, float[] out, Parallel pool) {
    int rows = w.rows();
    int cols = w.cols();
    GgmlType t = w.type();
    Activations a = quantize(t, x, n, cols);
    MemorySegment data = w.data();
    long rowBytes = t.bytesFor(cols);
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
      case F16 -> {
        float sum = 0f;
        for (int i = 0; i < cols; i++) {
          sum += half(w, base + 2L * i) * a.f[xo + i];
        }
        yield sum;
      }
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

  private static float dotQ8_0(MemorySegment w, long base, int cols, Activations a, int row) {
    float sum = 0f;
    int nb = cols / 32;
    for (int b = 0; b < nb; b++) {
      long blk = base + 34L * b;
      int xo = row * cols + b * 32;
      int sumi = 0;
      for (int j = 0; j < 32; j++) {
        sumi += w.get(ValueLayout.JAVA_BYTE, blk + 2 + j) * a.q[xo + j];
      }
      sum += sumi * (half(w, blk) * a.d[row * nb + b]);
    }
    return sum;
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
        sum += sumi * (half(w, blk) * a.d[ab]);
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

  private static float dotQ4K(MemorySegment w, long base, int cols, Activations a, int row) {
    return dotK(w, base, cols, a, row, false);
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

  /** Q6_K (210-byte blocks: ql[128], qh[64], int8 scales[16], fp16 d) × Q8_K. */
  private static float dotQ6K(MemorySegment w, long base, int cols, Activations a, int row) {
    int nb = cols / 256;
    float sum = 0f;
    for (int b = 0; b < nb; b++) {
      long blk = base + 210L * b;
      long ql = blk;
      long qh = blk + 128;
      long sc = blk + 192;
      float d = half(w, blk + 208) * a.d[row * nb + b];
      int xo = row * cols + b * 256;
      int total = 0;
      for (int h = 0; h < 2; h++) {
        long l0 = ql + 64L * h;
        long h0 = qh + 32L * h;
        int y = xo + 128 * h;
        int[] part = new int[8];
        for (int l = 0; l < 32; l++) {
          int hb = u8(w, h0 + l);
          int q1 = ((u8(w, l0 + l) & 0xF) | ((hb & 3) << 4)) - 32;
          int q2 = ((u8(w, l0 + l + 32) & 0xF) | (((hb >> 2) & 3) << 4)) - 32;
          int q3 = ((u8(w, l0 + l) >> 4) | (((hb >> 4) & 3) << 4)) - 32;
          int q4 = ((u8(w, l0 + l + 32) >> 4) | (((hb >> 6) & 3) << 4)) - 32;
          int is = l / 16;
          part[is] += q1 * a.q[y + l];
          part[is + 2] += q2 * a.q[y + l + 32];
          part[is + 4] += q3 * a.q[y + l + 64];
          part[is + 6] += q4 * a.q[y + l + 96];
        }
        for (int k = 0; k < 8; k++) {
          total += w.get(ValueLayout.JAVA_BYTE, sc + 8L * h + k) * part[k];
        }
      }
      sum += d * total;
    }
    return sum;
  }
}
