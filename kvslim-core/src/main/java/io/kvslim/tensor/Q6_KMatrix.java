package io.kvslim.tensor;

import static io.kvslim.ggml.Q6_KCodec.BLOCK;
import static io.kvslim.ggml.Q6_KCodec.BYTES;
import static io.kvslim.ggml.Q6_KCodec.D;
import static io.kvslim.ggml.Q6_KCodec.QH;
import static io.kvslim.ggml.Q6_KCodec.QL;
import static io.kvslim.ggml.Q6_KCodec.SCALES;
import static io.kvslim.tensor.Simd.B;
import static io.kvslim.tensor.Simd.BL;
import static io.kvslim.tensor.Simd.F;
import static io.kvslim.tensor.Simd.FL;
import static io.kvslim.tensor.Simd.LE;
import static io.kvslim.tensor.Simd.PARTS;
import static io.kvslim.tensor.Simd.SHORT_LE;

import io.kvslim.ggml.Q6_KCodec;
import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;

/**
 * Q6_K weights: super-blocks of 256 elements in 210 bytes, 6-bit codes with a signed 8-bit scale
 * per 16 elements; element value {@code d·scale·(q − 32)}. The layout's offsets, the dequantization
 * and the scalar reference come from {@link Q6_KCodec}; this class holds the Vector API kernels.
 */
public final class Q6_KMatrix extends WeightMatrix {
  public Q6_KMatrix(MemorySegment data, int rows, int cols) {
    super(data, rows, cols, GgmlType.Q6_K);
  }

  @Override
  public GgmlType type() {
    return GgmlType.Q6_K;
  }

  @Override
  public float dot(int row, float[] x, int xOffset) {
    long base = row * rowBytes;
    FloatVector total = FloatVector.zero(F);
    for (int sb = 0; sb < cols / BLOCK; sb++) {
      long block = base + (long) sb * BYTES;
      FloatVector sum = FloatVector.zero(F);
      for (int n = 0; n < 2; n++) {
        long qh = block + QH + 32 * n;
        long sc = block + SCALES + 8 * n;
        // Group g of 32 elements: low nibbles of ql[l] (g = 0) and ql[l + 32] (g = 1), then high
        // nibbles of the same (g = 2, 3), with bits 2g, 2g+1 of qh[l] on top. One loop body with
        // the shifts as variables keeps the method under C2's inlining node budget (a vector from a
        // method left out is boxed).
        for (int g = 0; g < 4; g++) {
          long ql = block + QL + 64 * n + 32 * (g & 1);
          int nibbleShift = 4 * (g >> 1);
          int xo = xOffset + sb * BLOCK + 128 * n + 32 * g;
          for (int l = 0; l < 32; l += BL) {
            ByteVector low =
                ByteVector.fromMemorySegment(B, data, ql + l, LE)
                    .reinterpretAsShorts()
                    .lanewise(VectorOperators.LSHR, nibbleShift)
                    .reinterpretAsBytes()
                    .and((byte) 0x0F);
            ByteVector high =
                ByteVector.fromMemorySegment(B, data, qh + l, LE)
                    .reinterpretAsShorts()
                    .lanewise(VectorOperators.LSHR, 2 * g)
                    .reinterpretAsBytes()
                    .and((byte) 3);
            // Values 0..3 shift left without spilling into the neighbouring byte.
            ByteVector q =
                low.or(
                        high.reinterpretAsShorts()
                            .lanewise(VectorOperators.LSHL, 4)
                            .reinterpretAsBytes())
                    .sub((byte) 32);
            FloatVector prod =
                ((FloatVector) q.castShape(F, 0)).mul(FloatVector.fromArray(F, x, xo + l));
            for (int p = 1; p < PARTS; p++) {
              prod =
                  ((FloatVector) q.castShape(F, p))
                      .fma(FloatVector.fromArray(F, x, xo + l + p * FL), prod);
            }
            // A byte load never crosses a 16-element scale group (BL divides 16).
            sum =
                prod.fma(
                    FloatVector.broadcast(F, data.get(ValueLayout.JAVA_BYTE, sc + l / 16 + 2 * g)),
                    sum);
          }
        }
      }
      total =
          sum.fma(
              FloatVector.broadcast(F, Float.float16ToFloat(data.get(SHORT_LE, block + D))), total);
    }
    return Simd.sumLanes(total);
  }
}
