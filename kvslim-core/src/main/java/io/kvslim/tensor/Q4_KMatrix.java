package io.kvslim.tensor;

import static io.kvslim.ggml.Q4_KCodec.BLOCK;
import static io.kvslim.ggml.Q4_KCodec.BYTES;
import static io.kvslim.ggml.Q4_KCodec.DMIN;
import static io.kvslim.ggml.Q4_KCodec.QS;
import static io.kvslim.ggml.Q4_KCodec.SCALES;
import static io.kvslim.ggml.Q4_KCodec.min;
import static io.kvslim.ggml.Q4_KCodec.scale;
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

import io.kvslim.ggml.Q4_KCodec;
import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;

/**
 * Q4_K weights: super-blocks of 256 elements in 144 bytes, eight sub-blocks of 32 with 6-bit scales
 * and mins; element value {@code d·scale[s]·q − dmin·min[s]}. The layout's offsets, the
 * dequantization and the scalar reference come from {@link Q4_KCodec}; this class holds the Vector
 * API kernels.
 */
public final class Q4_KMatrix extends WeightMatrix {
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
      long block = base + (long) sb * BYTES;
      float d = Float.float16ToFloat(data.get(SHORT_LE, block));
      float dmin = Float.float16ToFloat(data.get(SHORT_LE, block + DMIN));
      long packed0to7 = data.get(LONG_LE, block + SCALES);
      int packed8to11 = data.get(INT_LE, block + (SCALES + 8));
      // One loop body over sub-blocks, with the nibble (and fifth-bit) shifts as variables, instead
      // of
      // an unrolled body per sub-block: C2 inlines every vector operation of a method only while
      // the
      // method stays under its inlining node budget, and a vector from a method left out is boxed.
      if (LUT) {
        // chunk c: its 32 bytes hold sub-block 2c in the low nibbles, 2c+1 in the high ones
        for (int c = 0; c < 4; c++) {
          long qs = block + QS + 32 * c;
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
          long qs = block + QS + 32 * (s >> 1);
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
}
