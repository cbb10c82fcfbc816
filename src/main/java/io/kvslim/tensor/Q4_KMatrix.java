package io.kvslim.tensor;

import static io.kvslim.tensor.Simd.B;
import static io.kvslim.tensor.Simd.BL;
import static io.kvslim.tensor.Simd.F;
import static io.kvslim.tensor.Simd.FL;
import static io.kvslim.tensor.Simd.I;
import static io.kvslim.tensor.Simd.INT_LE;
import static io.kvslim.tensor.Simd.LE;
import static io.kvslim.tensor.Simd.LONG_LE;
import static io.kvslim.tensor.Simd.PARTS;
import static io.kvslim.tensor.Simd.SHORT_LE;
import static io.kvslim.tensor.Simd.half;
import static io.kvslim.tensor.Simd.u8;

import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;

/**
 * Q4_K weights (llama.cpp {@code block_q4_K}): super-blocks of 256 elements in 144 bytes: fp16
 * {@code d}, fp16 {@code dmin}, 12 bytes of eight 6-bit scales and eight 6-bit mins (see {@link
 * #scale}), then 128 bytes {@code qs}. The super-block is four chunks of 64: chunk {@code c} reads
 * {@code qs[32c .. 32c+32)}; its low nibbles are sub-block {@code 2c} (elements {@code 64c ..
 * 64c+32)}), its high nibbles sub-block {@code 2c+1}. Element value: {@code d * scale[s] * q - dmin
 * * min[s]}.
 */
public final class Q4_KMatrix extends WeightMatrix {
  static final int BLOCK = 256;
  static final int BLOCK_BYTES = 144;

  /**
   * With at least eight float lanes, a sub-block's sixteen possible weights {@code d·scale·k −
   * dmin·min} (k = 0..15) sit in the two table vectors and each nibble becomes its weight by a
   * two-vector {@code selectFrom}, which wraps the index modulo twice the lane count (so the low
   * nibble needs no mask): one lookup and one fused multiply-add per run of {@code FL} weights.
   */
  private static final boolean LUT = FL >= 8;

  private static final FloatVector TABLE1 = table(0);
  private static final FloatVector TABLE2 = table(FL);

  private static FloatVector table(int first) {
    float[] t = new float[FL];
    for (int i = 0; i < FL; i++) {
      t[i] = (first + i) % 16;
    }
    return FloatVector.fromArray(F, t, 0);
  }

  public Q4_KMatrix(MemorySegment data, int rows, int cols) {
    super(data, rows, cols, GgmlType.Q4_K);
  }

  @Override
  public GgmlType type() {
    return GgmlType.Q4_K;
  }

  /**
   * The 6-bit scale of sub-block {@code s} (0..7) from the 12 packed bytes at {@code scales}:
   * sub-blocks 0..3 keep theirs in the low 6 bits of bytes 0..3; sub-blocks 4..7 in the low nibble
   * of bytes 8..11 plus the top 2 bits of bytes 0..3 (llama.cpp's {@code get_scale_min_k4}).
   */
  static int scale(MemorySegment data, long scales, int s) {
    return scale(data.get(LONG_LE, scales), data.get(INT_LE, scales + 8), s);
  }

  /**
   * The 6-bit min of sub-block {@code s}: sub-blocks 0..3 in the low 6 bits of bytes 4..7; 4..7 in
   * the high nibble of bytes 8..11 plus the top 2 bits of bytes 4..7.
   */
  static int min(MemorySegment data, long scales, int s) {
    return min(data.get(LONG_LE, scales), data.get(INT_LE, scales + 8), s);
  }

  /** {@link #scale} from the packed bytes read as {@code bytes0to7} and {@code bytes8to11}. */
  static int scale(long bytes0to7, int bytes8to11, int s) {
    return s < 4
        ? (int) (bytes0to7 >>> 8 * s) & 63
        : (bytes8to11 >>> 8 * (s - 4)) & 0xF | ((int) (bytes0to7 >>> 8 * (s - 4) + 6) & 3) << 4;
  }

  /** {@link #min} from the packed bytes read as {@code bytes0to7} and {@code bytes8to11}. */
  static int min(long bytes0to7, int bytes8to11, int s) {
    return s < 4
        ? (int) (bytes0to7 >>> 8 * (s + 4)) & 63
        : (bytes8to11 >>> 8 * (s - 4) + 4) & 0xF | ((int) (bytes0to7 >>> 8 * s + 6) & 3) << 4;
  }

  @Override
  public float dot(int row, float[] x, int xOffset) {
    long base = row * rowBytes;
    FloatVector total = FloatVector.zero(F);
    // the table path: four independent accumulation chains (low/high nibbles x even/odd runs)
    FloatVector lo0 = total;
    FloatVector hi0 = total;
    FloatVector lo1 = total;
    FloatVector hi1 = total;
    for (int sb = 0; sb < cols / BLOCK; sb++) {
      long block = base + (long) sb * BLOCK_BYTES;
      float d = Float.float16ToFloat(data.get(SHORT_LE, block));
      float dmin = Float.float16ToFloat(data.get(SHORT_LE, block + 2));
      long packed0to7 = data.get(LONG_LE, block + 4);
      int packed8to11 = data.get(INT_LE, block + 12);
      // One loop body over sub-blocks, with the nibble (and fifth-bit) shifts as variables, instead
      // of
      // an unrolled body per sub-block: C2 inlines every vector operation of a method only while
      // the
      // method stays under its inlining node budget, and a vector from a method left out is boxed.
      if (LUT) {
        // chunk c: its 32 bytes hold sub-block 2c in the low nibbles, 2c+1 in the high ones
        for (int c = 0; c < 4; c++) {
          long qs = block + 16 + 32 * c;
          int xo = xOffset + sb * BLOCK + 64 * c;
          float dsc = d * scale(packed0to7, packed8to11, 2 * c);
          float dm = dmin * min(packed0to7, packed8to11, 2 * c);
          IntVector u = TABLE1.mul(dsc).sub(dm).reinterpretAsInts();
          IntVector v = TABLE2.mul(dsc).sub(dm).reinterpretAsInts();
          float dsc2 = d * scale(packed0to7, packed8to11, 2 * c + 1);
          float dm2 = dmin * min(packed0to7, packed8to11, 2 * c + 1);
          IntVector u2 = TABLE1.mul(dsc2).sub(dm2).reinterpretAsInts();
          IntVector v2 = TABLE2.mul(dsc2).sub(dm2).reinterpretAsInts();
          for (int j = 0; j < 32; j += 2 * BL) {
            IntVector q =
                (IntVector)
                    ByteVector.fromMemorySegment(B, data, qs + j, LE)
                        .convertShape(VectorOperators.ZERO_EXTEND_B2I, I, 0);
            IntVector r =
                (IntVector)
                    ByteVector.fromMemorySegment(B, data, qs + j + BL, LE)
                        .convertShape(VectorOperators.ZERO_EXTEND_B2I, I, 0);
            lo0 =
                q.selectFrom(u, v)
                    .reinterpretAsFloats()
                    .fma(FloatVector.fromArray(F, x, xo + j), lo0);
            hi0 =
                q.lanewise(VectorOperators.LSHR, 4)
                    .selectFrom(u2, v2)
                    .reinterpretAsFloats()
                    .fma(FloatVector.fromArray(F, x, xo + 32 + j), hi0);
            lo1 =
                r.selectFrom(u, v)
                    .reinterpretAsFloats()
                    .fma(FloatVector.fromArray(F, x, xo + j + BL), lo1);
            hi1 =
                r.lanewise(VectorOperators.LSHR, 4)
                    .selectFrom(u2, v2)
                    .reinterpretAsFloats()
                    .fma(FloatVector.fromArray(F, x, xo + 32 + j + BL), hi1);
          }
        }
      } else {
        for (int s = 0; s < 8; s++) {
          long qs = block + 16 + 32 * (s >> 1);
          int shift = 4 * (s & 1);
          int xo = xOffset + sb * BLOCK + 32 * s;
          FloatVector acc = FloatVector.zero(F);
          FloatVector xSum = FloatVector.zero(F);
          for (int j = 0; j < 32; j += BL) {
            ByteVector q =
                ByteVector.fromMemorySegment(B, data, qs + j, LE)
                    .reinterpretAsShorts()
                    .lanewise(VectorOperators.LSHR, shift)
                    .reinterpretAsBytes()
                    .and((byte) 0x0F);
            for (int p = 0; p < PARTS; p++) {
              FloatVector xv = FloatVector.fromArray(F, x, xo + j + p * FL);
              acc = ((FloatVector) q.castShape(F, p)).fma(xv, acc);
              xSum = xSum.add(xv);
            }
          }
          total = acc.fma(FloatVector.broadcast(F, d * scale(packed0to7, packed8to11, s)), total);
          total =
              xSum.fma(FloatVector.broadcast(F, -dmin * min(packed0to7, packed8to11, s)), total);
        }
      }
    }
    if (LUT) {
      total = lo0.add(lo1).add(hi0.add(hi1));
    }
    return Simd.sumLanes(total);
  }

  @Override
  public float dotScalar(int row, float[] x, int xOffset) {
    float sum = 0f;
    float[] w = new float[BLOCK];
    for (int sb = 0; sb < cols / BLOCK; sb++) {
      decodeBlock(row * rowBytes + (long) sb * BLOCK_BYTES, w, 0);
      for (int i = 0; i < BLOCK; i++) {
        sum += w[i] * x[xOffset + sb * BLOCK + i];
      }
    }
    return sum;
  }

  @Override
  public void dequantizeRow(int row, float[] out, int outOffset) {
    for (int sb = 0; sb < cols / BLOCK; sb++) {
      decodeBlock(row * rowBytes + (long) sb * BLOCK_BYTES, out, outOffset + sb * BLOCK);
    }
  }

  private void decodeBlock(long block, float[] out, int o) {
    float d = half(data, block);
    float dmin = half(data, block + 2);
    for (int c = 0; c < 4; c++) {
      for (int h = 0; h < 2; h++) {
        int s = 2 * c + h;
        float scale = d * scale(data, block + 4, s);
        float min = dmin * min(data, block + 4, s);
        for (int l = 0; l < 32; l++) {
          int q = u8(data, block + 16 + 32 * c + l);
          int nibble = h == 0 ? q & 0xF : q >> 4;
          out[o + 64 * c + 32 * h + l] = scale * nibble - min;
        }
      }
    }
  }
}
