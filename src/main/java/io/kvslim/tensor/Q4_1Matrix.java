package io.kvslim.tensor;

import static io.kvslim.tensor.Simd.B;
import static io.kvslim.tensor.Simd.BL;
import static io.kvslim.tensor.Simd.F;
import static io.kvslim.tensor.Simd.FL;
import static io.kvslim.tensor.Simd.LE;
import static io.kvslim.tensor.Simd.PARTS;
import static io.kvslim.tensor.Simd.SHORT_LE;
import static io.kvslim.tensor.Simd.half;
import static io.kvslim.tensor.Simd.u8;

import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;

/**
 * Q4_1 weights (llama.cpp {@code block_q4_1}): blocks of 32 elements in 20 bytes, fp16 scale {@code
 * d}, fp16 minimum {@code m}, then 16 bytes {@code qs}. Element {@code j < 16} is {@code d * (qs[j]
 * & 0xF) + m}, element {@code j + 16} is {@code d * (qs[j] >> 4) + m}.
 */
public final class Q4_1Matrix extends WeightMatrix {
  static final int BLOCK = 32;
  static final int BLOCK_BYTES = 20;

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
      long block = base + (long) b * BLOCK_BYTES;
      int xo = xOffset + b * BLOCK;
      FloatVector acc = FloatVector.zero(F);
      FloatVector xSum = FloatVector.zero(F);
      for (int j = 0; j < BLOCK / 2; j += BL) {
        ByteVector q = ByteVector.fromMemorySegment(B, data, block + 4 + j, LE);
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
              FloatVector.broadcast(F, Float.float16ToFloat(data.get(SHORT_LE, block + 2))), total);
    }
    return Simd.sumLanes(total);
  }

  @Override
  public float dotScalar(int row, float[] x, int xOffset) {
    long base = row * rowBytes;
    float sum = 0f;
    for (int b = 0; b < cols / BLOCK; b++) {
      long block = base + (long) b * BLOCK_BYTES;
      float d = half(data, block);
      float m = half(data, block + 2);
      int xo = xOffset + b * BLOCK;
      for (int j = 0; j < BLOCK / 2; j++) {
        int q = u8(data, block + 4 + j);
        sum += (d * (q & 0xF) + m) * x[xo + j] + (d * (q >> 4) + m) * x[xo + j + BLOCK / 2];
      }
    }
    return sum;
  }

  @Override
  public void dequantizeRow(int row, float[] out, int outOffset) {
    long base = row * rowBytes;
    for (int b = 0; b < cols / BLOCK; b++) {
      long block = base + (long) b * BLOCK_BYTES;
      float d = half(data, block);
      float m = half(data, block + 2);
      int o = outOffset + b * BLOCK;
      for (int j = 0; j < BLOCK / 2; j++) {
        int q = u8(data, block + 4 + j);
        out[o + j] = d * (q & 0xF) + m;
        out[o + j + BLOCK / 2] = d * (q >> 4) + m;
      }
    }
  }
}
