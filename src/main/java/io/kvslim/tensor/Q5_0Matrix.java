package io.kvslim.tensor;

import static io.kvslim.tensor.Simd.B;
import static io.kvslim.tensor.Simd.BL;
import static io.kvslim.tensor.Simd.F;
import static io.kvslim.tensor.Simd.FL;
import static io.kvslim.tensor.Simd.INT_LE;
import static io.kvslim.tensor.Simd.LE;
import static io.kvslim.tensor.Simd.PARTS;
import static io.kvslim.tensor.Simd.SHORT_LE;
import static io.kvslim.tensor.Simd.half;
import static io.kvslim.tensor.Simd.u8;

import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;

/**
 * Q5_0 weights (llama.cpp {@code block_q5_0}): blocks of 32 elements in 22 bytes, an fp16 scale
 * {@code d}, a little-endian 32-bit word {@code qh} of fifth bits, then 16 bytes {@code qs} of low
 * nibbles. Element {@code j < 16} is {@code d * (((qs[j] & 0xF) | bit j of qh << 4) - 16)}, element
 * {@code j + 16} is {@code d * (((qs[j] >> 4) | bit (j + 16) of qh << 4) - 16)}.
 */
public final class Q5_0Matrix extends WeightMatrix {
  static final int BLOCK = 32;
  static final int BLOCK_BYTES = 22;

  public Q5_0Matrix(MemorySegment data, int rows, int cols) {
    super(data, rows, cols, GgmlType.Q5_0);
  }

  @Override
  public GgmlType type() {
    return GgmlType.Q5_0;
  }

  /** The 5-bit value of element {@code j} of the block at {@code block}, before the offset. */
  private int quant(long block, int qh, int j) {
    int q = u8(data, block + 6 + (j & 15));
    int nibble = j < 16 ? q & 0xF : q >> 4;
    return nibble | ((qh >>> j) & 1) << 4;
  }

  @Override
  public float dot(int row, float[] x, int xOffset) {
    long base = row * rowBytes;
    FloatVector total = FloatVector.zero(F);
    int blocks = cols / BLOCK;
    for (int b = 0; b < blocks; b++) {
      long block = base + (long) b * BLOCK_BYTES;
      long qh = data.get(INT_LE, block + 2) & 0xFFFFFFFFL;
      int xo = xOffset + b * BLOCK;
      FloatVector acc = FloatVector.zero(F);
      for (int j = 0; j < BLOCK / 2; j += BL) {
        ByteVector q = ByteVector.fromMemorySegment(B, data, block + 6 + j, LE);
        // The fifth bits of these lanes become a lane mask: bit k of (qh >>> j) is lane k's.
        VectorMask<Byte> loHigh = VectorMask.fromLong(B, qh >>> j);
        VectorMask<Byte> hiHigh = VectorMask.fromLong(B, qh >>> (16 + j));
        ByteVector lo =
            q.and((byte) 0x0F).lanewise(VectorOperators.OR, (byte) 16, loHigh).sub((byte) 16);
        ByteVector hi =
            q.reinterpretAsShorts()
                .lanewise(VectorOperators.LSHR, 4)
                .reinterpretAsBytes()
                .and((byte) 0x0F)
                .lanewise(VectorOperators.OR, (byte) 16, hiHigh)
                .sub((byte) 16);
        for (int p = 0; p < PARTS; p++) {
          acc =
              ((FloatVector) lo.castShape(F, p))
                  .fma(FloatVector.fromArray(F, x, xo + j + p * FL), acc);
          acc =
              ((FloatVector) hi.castShape(F, p))
                  .fma(FloatVector.fromArray(F, x, xo + BLOCK / 2 + j + p * FL), acc);
        }
      }
      total =
          acc.fma(FloatVector.broadcast(F, Float.float16ToFloat(data.get(SHORT_LE, block))), total);
    }
    return Simd.sumLanes(total);
  }

  @Override
  public float dotScalar(int row, float[] x, int xOffset) {
    long base = row * rowBytes;
    float sum = 0f;
    for (int b = 0; b < cols / BLOCK; b++) {
      long block = base + (long) b * BLOCK_BYTES;
      int qh = data.get(INT_LE, block + 2);
      float blockSum = 0f;
      for (int j = 0; j < BLOCK; j++) {
        blockSum += (quant(block, qh, j) - 16) * x[xOffset + b * BLOCK + j];
      }
      sum += half(data, block) * blockSum;
    }
    return sum;
  }

  @Override
  public void dequantizeRow(int row, float[] out, int outOffset) {
    long base = row * rowBytes;
    for (int b = 0; b < cols / BLOCK; b++) {
      long block = base + (long) b * BLOCK_BYTES;
      int qh = data.get(INT_LE, block + 2);
      float d = half(data, block);
      for (int j = 0; j < BLOCK; j++) {
        out[outOffset + b * BLOCK + j] = d * (quant(block, qh, j) - 16);
      }
    }
  }
}
