package io.kvslim.tensor;

import static io.kvslim.ggml.Q5_1Codec.BLOCK;
import static io.kvslim.ggml.Q5_1Codec.BYTES;
import static io.kvslim.ggml.Q5_1Codec.M;
import static io.kvslim.ggml.Q5_1Codec.QH;
import static io.kvslim.ggml.Q5_1Codec.QS;
import static io.kvslim.tensor.Simd.B;
import static io.kvslim.tensor.Simd.BL;
import static io.kvslim.tensor.Simd.F;
import static io.kvslim.tensor.Simd.FL;
import static io.kvslim.tensor.Simd.INT_LE;
import static io.kvslim.tensor.Simd.LE;
import static io.kvslim.tensor.Simd.PARTS;
import static io.kvslim.tensor.Simd.SHORT_LE;

import io.kvslim.ggml.Q5_1Codec;
import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;

/**
 * Q5_1 weights: blocks of 32 elements in 24 bytes, fp16 {@code d} and minimum {@code m}, a 32-bit
 * word of fifth bits, then 16 bytes of low nibbles; element {@code j} is {@code d·q_j + m}. The
 * layout's offsets, the dequantization and the scalar reference come from {@link Q5_1Codec}; this
 * class holds the Vector API kernels.
 */
public final class Q5_1Matrix extends WeightMatrix {
  public Q5_1Matrix(MemorySegment data, int rows, int cols) {
    super(data, rows, cols, GgmlType.Q5_1);
  }

  @Override
  public GgmlType type() {
    return GgmlType.Q5_1;
  }

  @Override
  public float dot(int row, float[] x, int xOffset) {
    long base = row * rowBytes;
    FloatVector total = FloatVector.zero(F);
    int blocks = cols / BLOCK;
    for (int b = 0; b < blocks; b++) {
      long block = base + (long) b * BYTES;
      long qh = data.get(INT_LE, block + QH) & 0xFFFFFFFFL;
      int xo = xOffset + b * BLOCK;
      FloatVector acc = FloatVector.zero(F);
      FloatVector xSum = FloatVector.zero(F);
      for (int j = 0; j < BLOCK / 2; j += BL) {
        ByteVector q = ByteVector.fromMemorySegment(B, data, block + QS + j, LE);
        VectorMask<Byte> loHigh = VectorMask.fromLong(B, qh >>> j);
        VectorMask<Byte> hiHigh = VectorMask.fromLong(B, qh >>> (16 + j));
        ByteVector lo = q.and((byte) 0x0F).lanewise(VectorOperators.OR, (byte) 16, loHigh);
        ByteVector hi =
            q.reinterpretAsShorts()
                .lanewise(VectorOperators.LSHR, 4)
                .reinterpretAsBytes()
                .and((byte) 0x0F)
                .lanewise(VectorOperators.OR, (byte) 16, hiHigh);
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
