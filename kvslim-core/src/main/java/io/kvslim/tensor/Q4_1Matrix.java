package io.kvslim.tensor;

import static io.kvslim.ggml.Q4_1Codec.BLOCK;
import static io.kvslim.ggml.Q4_1Codec.BYTES;
import static io.kvslim.ggml.Q4_1Codec.M;
import static io.kvslim.ggml.Q4_1Codec.QS;
import static io.kvslim.tensor.Simd.B;
import static io.kvslim.tensor.Simd.BL;
import static io.kvslim.tensor.Simd.F;
import static io.kvslim.tensor.Simd.FL;
import static io.kvslim.tensor.Simd.LE;
import static io.kvslim.tensor.Simd.PARTS;
import static io.kvslim.tensor.Simd.SHORT_LE;

import io.kvslim.ggml.Q4_1Codec;
import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;

/**
 * Q4_1 weights: blocks of 32 elements in 20 bytes, fp16 {@code d} and minimum {@code m}, then 16
 * bytes of nibbles; element {@code j} is {@code d·q_j + m}. The layout's offsets, the
 * dequantization and the scalar reference come from {@link Q4_1Codec}; this class holds the Vector
 * API kernels.
 */
public final class Q4_1Matrix extends WeightMatrix {
  public Q4_1Matrix(MemorySegment data, int rows, int cols) {
    super(data, rows, cols, GgmlType.Q4_1);
  }

  @Override
  public GgmlType type() {
    return GgmlType.Q4_1;
  }

  /** Sum over the block of {@code d * q * x + m * x}: the minimum multiplies the sum of x. */
  @Override
  public float dot(int row, float[] x, int xOffset) {
    long base = row * rowBytes;
    FloatVector total = FloatVector.zero(F);
    int blocks = cols / BLOCK;
    for (int b = 0; b < blocks; b++) {
      long block = base + (long) b * BYTES;
      int xo = xOffset + b * BLOCK;
      FloatVector acc = FloatVector.zero(F);
      FloatVector xSum = FloatVector.zero(F);
      for (int j = 0; j < BLOCK / 2; j += BL) {
        ByteVector q = ByteVector.fromMemorySegment(B, data, block + QS + j, LE);
        ByteVector lo = q.and((byte) 0x0F);
        ByteVector hi =
            q.reinterpretAsShorts()
                .lanewise(VectorOperators.LSHR, 4)
                .reinterpretAsBytes()
                .and((byte) 0x0F);
        for (int p = 0; p < PARTS; p++) {
          FloatVector xl = FloatVector.fromArray(F, x, xo + j + p * FL);
          FloatVector xh = FloatVector.fromArray(F, x, xo + BLOCK / 2 + j + p * FL);
          acc = ((FloatVector) lo.castShape(F, p)).fma(xl, acc);
          acc = ((FloatVector) hi.castShape(F, p)).fma(xh, acc);
          xSum = xSum.add(xl).add(xh);
        }
      }
      total =
          acc.fma(FloatVector.broadcast(F, Float.float16ToFloat(data.get(SHORT_LE, block))), total);
      total =
          xSum.fma(
              FloatVector.broadcast(F, Float.float16ToFloat(data.get(SHORT_LE, block + M))), total);
    }
    return Simd.sumLanes(total);
  }
}
