package io.kvslim.tensor;

import static io.kvslim.ggml.Q5_KCodec.BLOCK;
import static io.kvslim.ggml.Q5_KCodec.BYTES;
import static io.kvslim.ggml.Q5_KCodec.DMIN;
import static io.kvslim.ggml.Q5_KCodec.QH;
import static io.kvslim.ggml.Q5_KCodec.QS;
import static io.kvslim.ggml.Q5_KCodec.SCALES;
import static io.kvslim.tensor.Simd.B;
import static io.kvslim.tensor.Simd.BL;
import static io.kvslim.tensor.Simd.F;
import static io.kvslim.tensor.Simd.FL;
import static io.kvslim.tensor.Simd.INT_LE;
import static io.kvslim.tensor.Simd.LE;
import static io.kvslim.tensor.Simd.LONG_LE;
import static io.kvslim.tensor.Simd.PARTS;
import static io.kvslim.tensor.Simd.SHORT_LE;

import io.kvslim.ggml.Q4_KCodec;
import io.kvslim.ggml.Q5_KCodec;
import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;

/**
 * Q5_K weights: super-blocks of 256 elements in 176 bytes, as Q4_K with a fifth bit per element;
 * element value {@code d·scale[s]·q − dmin·min[s]}. The layout's offsets, the dequantization and
 * the scalar reference come from {@link Q5_KCodec}; this class holds the Vector API kernels.
 */
public final class Q5_KMatrix extends WeightMatrix {
  public Q5_KMatrix(MemorySegment data, int rows, int cols) {
    super(data, rows, cols, GgmlType.Q5_K);
  }

  @Override
  public GgmlType type() {
    return GgmlType.Q5_K;
  }

  @Override
  public float dot(int row, float[] x, int xOffset) {
    long base = row * rowBytes;
    FloatVector total = FloatVector.zero(F);
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
      for (int s = 0; s < 8; s++) {
        long qs = block + QS + 32 * (s >> 1);
        int shift = 4 * (s & 1);
        int xo = xOffset + sb * BLOCK + 32 * s;
        FloatVector acc = FloatVector.zero(F);
        FloatVector xSum = FloatVector.zero(F);
        for (int j = 0; j < 32; j += BL) {
          ByteVector fifth =
              ByteVector.fromMemorySegment(B, data, block + QH + j, LE)
                  .reinterpretAsShorts()
                  .lanewise(VectorOperators.LSHR, s)
                  .reinterpretAsBytes()
                  .and((byte) 1);
          ByteVector q =
              ByteVector.fromMemorySegment(B, data, qs + j, LE)
                  .reinterpretAsShorts()
                  .lanewise(VectorOperators.LSHR, shift)
                  .reinterpretAsBytes()
                  .and((byte) 0x0F)
                  .or(
                      fifth
                          .reinterpretAsShorts()
                          .lanewise(VectorOperators.LSHL, 4)
                          .reinterpretAsBytes());
          for (int p = 0; p < PARTS; p++) {
            FloatVector xv = FloatVector.fromArray(F, x, xo + j + p * FL);
            acc = ((FloatVector) q.castShape(F, p)).fma(xv, acc);
            xSum = xSum.add(xv);
          }
        }
        total =
            acc.fma(
                FloatVector.broadcast(F, d * Q4_KCodec.scale(packed0to7, packed8to11, s)), total);
        total =
            xSum.fma(
                FloatVector.broadcast(F, -dmin * Q4_KCodec.min(packed0to7, packed8to11, s)), total);
      }
    }
    return Simd.sumLanes(total);
  }
}
