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
 * Q4_0 weights (llama.cpp {@code block_q4_0}): blocks of 32 elements in 18 bytes, an fp16 scale
 * {@code d} then 16 bytes {@code qs}. Element {@code j < 16} is {@code d * ((qs[j] & 0xF) - 8)},
 * element {@code j + 16} is {@code d * ((qs[j] >> 4) - 8)}.
 */
public final class Q4_0Matrix extends WeightMatrix {
  static final int BLOCK = 32;
  static final int BLOCK_BYTES = 18;

  public Q4_0Matrix(MemorySegment data, int rows, int cols) {
    super(data, rows, cols, GgmlType.Q4_0);
  }

  @Override
  public GgmlType type() {
    return GgmlType.Q4_0;
  }

  @Override
  public float dot(int row, float[] x, int xOffset) {
    long base = row * rowBytes;
    FloatVector total = FloatVector.zero(F);
    int blocks = cols / BLOCK;
    for (int b = 0; b < blocks; b++) {
      long block = base + (long) b * BLOCK_BYTES;
      int xo = xOffset + b * BLOCK;
      FloatVector acc = FloatVector.zero(F);
      for (int j = 0; j < BLOCK / 2; j += BL) {
        ByteVector q = ByteVector.fromMemorySegment(B, data, block + 2 + j, LE);
        ByteVector lo = q.and((byte) 0x0F).sub((byte) 8);
        ByteVector hi =
            q.reinterpretAsShorts()
                .lanewise(VectorOperators.LSHR, 4)
                .reinterpretAsBytes()
                .and((byte) 0x0F)
                .sub((byte) 8);
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
      int xo = xOffset + b * BLOCK;
      float blockSum = 0f;
      for (int j = 0; j < BLOCK / 2; j++) {
        int q = u8(data, block + 2 + j);
        blockSum += ((q & 0xF) - 8) * x[xo + j] + ((q >> 4) - 8) * x[xo + j + BLOCK / 2];
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
      float d = half(data, block);
      int o = outOffset + b * BLOCK;
      for (int j = 0; j < BLOCK / 2; j++) {
        int q = u8(data, block + 2 + j);
        out[o + j] = d * ((q & 0xF) - 8);
        out[o + j + BLOCK / 2] = d * ((q >> 4) - 8);
      }
    }
  }

  /**
   * Decode: four weight rows {@code count / 4} apart per pass over x (four memory streams for the
   * hardware prefetcher, see {@link Q8_0Matrix#dotRows}), each row in exactly {@link #dot}'s order.
   */
  @Override
  public void dotRows(int row, int count, float[] x, float[] out) {
    int q = count / 4;
    for (int r = row; r < row + q; r++) {
      rows4(r, q, x, out);
    }
    for (int r = row + 4 * q; r < row + count; r++) {
      out[r] = dot(r, x, 0);
    }
  }

  private void rows4(int row, int q, float[] x, float[] out) {
    long b0 = row * rowBytes;
    long st = q * rowBytes;
    FloatVector t0 = FloatVector.zero(F);
    FloatVector t1 = t0;
    FloatVector t2 = t0;
    FloatVector t3 = t0;
    int blocks = cols / BLOCK;
    for (int b = 0; b < blocks; b++) {
      long o0 = b0 + (long) b * BLOCK_BYTES;
      long o1 = o0 + st;
      long o2 = o1 + st;
      long o3 = o2 + st;
      int xo = b * BLOCK;
      FloatVector a0 = FloatVector.zero(F);
      FloatVector a1 = a0;
      FloatVector a2 = a0;
      FloatVector a3 = a0;
      for (int j = 0; j < BLOCK / 2; j += BL) {
        ByteVector q0 = ByteVector.fromMemorySegment(B, data, o0 + 2 + j, LE);
        ByteVector l0 = q0.and((byte) 0x0F).sub((byte) 8);
        ByteVector h0 =
            q0.reinterpretAsShorts()
                .lanewise(VectorOperators.LSHR, 4)
                .reinterpretAsBytes()
                .and((byte) 0x0F)
                .sub((byte) 8);
        ByteVector q1 = ByteVector.fromMemorySegment(B, data, o1 + 2 + j, LE);
        ByteVector l1 = q1.and((byte) 0x0F).sub((byte) 8);
        ByteVector h1 =
            q1.reinterpretAsShorts()
                .lanewise(VectorOperators.LSHR, 4)
                .reinterpretAsBytes()
                .and((byte) 0x0F)
                .sub((byte) 8);
        ByteVector q2 = ByteVector.fromMemorySegment(B, data, o2 + 2 + j, LE);
        ByteVector l2 = q2.and((byte) 0x0F).sub((byte) 8);
        ByteVector h2 =
            q2.reinterpretAsShorts()
                .lanewise(VectorOperators.LSHR, 4)
                .reinterpretAsBytes()
                .and((byte) 0x0F)
                .sub((byte) 8);
        ByteVector q3 = ByteVector.fromMemorySegment(B, data, o3 + 2 + j, LE);
        ByteVector l3 = q3.and((byte) 0x0F).sub((byte) 8);
        ByteVector h3 =
            q3.reinterpretAsShorts()
                .lanewise(VectorOperators.LSHR, 4)
                .reinterpretAsBytes()
                .and((byte) 0x0F)
                .sub((byte) 8);
        for (int p = 0; p < PARTS; p++) {
          FloatVector xl = FloatVector.fromArray(F, x, xo + j + p * FL);
          FloatVector xh = FloatVector.fromArray(F, x, xo + BLOCK / 2 + j + p * FL);
          a0 = ((FloatVector) l0.castShape(F, p)).fma(xl, a0);
          a0 = ((FloatVector) h0.castShape(F, p)).fma(xh, a0);
          a1 = ((FloatVector) l1.castShape(F, p)).fma(xl, a1);
          a1 = ((FloatVector) h1.castShape(F, p)).fma(xh, a1);
          a2 = ((FloatVector) l2.castShape(F, p)).fma(xl, a2);
          a2 = ((FloatVector) h2.castShape(F, p)).fma(xh, a2);
          a3 = ((FloatVector) l3.castShape(F, p)).fma(xl, a3);
          a3 = ((FloatVector) h3.castShape(F, p)).fma(xh, a3);
        }
      }
      t0 = a0.fma(FloatVector.broadcast(F, Float.float16ToFloat(data.get(SHORT_LE, o0))), t0);
      t1 = a1.fma(FloatVector.broadcast(F, Float.float16ToFloat(data.get(SHORT_LE, o1))), t1);
      t2 = a2.fma(FloatVector.broadcast(F, Float.float16ToFloat(data.get(SHORT_LE, o2))), t2);
      t3 = a3.fma(FloatVector.broadcast(F, Float.float16ToFloat(data.get(SHORT_LE, o3))), t3);
    }
    out[row] = Simd.sumLanes(t0);
    out[row + 1 * q] = Simd.sumLanes(t1);
    out[row + 2 * q] = Simd.sumLanes(t2);
    out[row + 3 * q] = Simd.sumLanes(t3);
  }

  @Override
  public void dotTile(
      int row,
      float[] x,
      int xOffset,
      int xStride,
      int n,
      float[] out,
      int outOffset,
      int outStride) {
    dotTileBy4(row, x, xOffset, xStride, n, out, outOffset, outStride);
  }

  @Override
  protected void dot4(
      int row,
      float[] x,
      int x0,
      int x1,
      int x2,
      int x3,
      float[] out,
      int o0,
      int o1,
      int o2,
      int o3) {
    long base = row * rowBytes;
    FloatVector total0 = FloatVector.zero(F);
    FloatVector total1 = FloatVector.zero(F);
    FloatVector total2 = FloatVector.zero(F);
    FloatVector total3 = FloatVector.zero(F);
    int blocks = cols / BLOCK;
    for (int b = 0; b < blocks; b++) {
      long block = base + (long) b * BLOCK_BYTES;
      int xo = b * BLOCK;
      FloatVector acc0 = FloatVector.zero(F);
      FloatVector acc1 = FloatVector.zero(F);
      FloatVector acc2 = FloatVector.zero(F);
      FloatVector acc3 = FloatVector.zero(F);
      for (int j = 0; j < BLOCK / 2; j += BL) {
        ByteVector q = ByteVector.fromMemorySegment(B, data, block + 2 + j, LE);
        ByteVector lo = q.and((byte) 0x0F).sub((byte) 8);
        ByteVector hi =
            q.reinterpretAsShorts()
                .lanewise(VectorOperators.LSHR, 4)
                .reinterpretAsBytes()
                .and((byte) 0x0F)
                .sub((byte) 8);
        for (int p = 0; p < PARTS; p++) {
          FloatVector w = ((FloatVector) lo.castShape(F, p));
          int i = xo + j + p * FL;
          acc0 = w.fma(FloatVector.fromArray(F, x, x0 + i), acc0);
          acc1 = w.fma(FloatVector.fromArray(F, x, x1 + i), acc1);
          acc2 = w.fma(FloatVector.fromArray(F, x, x2 + i), acc2);
          acc3 = w.fma(FloatVector.fromArray(F, x, x3 + i), acc3);
          w = ((FloatVector) hi.castShape(F, p));
          i += BLOCK / 2;
          acc0 = w.fma(FloatVector.fromArray(F, x, x0 + i), acc0);
          acc1 = w.fma(FloatVector.fromArray(F, x, x1 + i), acc1);
          acc2 = w.fma(FloatVector.fromArray(F, x, x2 + i), acc2);
          acc3 = w.fma(FloatVector.fromArray(F, x, x3 + i), acc3);
        }
      }
      FloatVector d = FloatVector.broadcast(F, Float.float16ToFloat(data.get(SHORT_LE, block)));
      total0 = acc0.fma(d, total0);
      total1 = acc1.fma(d, total1);
      total2 = acc2.fma(d, total2);
      total3 = acc3.fma(d, total3);
    }
    out[o0] = Simd.sumLanes(total0);
    out[o1] = Simd.sumLanes(total1);
    out[o2] = Simd.sumLanes(total2);
    out[o3] = Simd.sumLanes(total3);
  }
}
