package io.kvslim.tensor;

import static io.kvslim.tensor.Simd.B;
import static io.kvslim.tensor.Simd.BL;
import static io.kvslim.tensor.Simd.F;
import static io.kvslim.tensor.Simd.FL;
import static io.kvslim.tensor.Simd.LE;
import static io.kvslim.tensor.Simd.PARTS;
import static io.kvslim.tensor.Simd.SHORT_LE;
import static io.kvslim.tensor.Simd.half;
import static io.kvslim.tensor.Simd.s8;

import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;

/**
 * Q8_0 weights (llama.cpp {@code block_q8_0}): blocks of 32 elements in 34 bytes, an fp16 scale
 * {@code d} then 32 signed bytes {@code qs}; element {@code j} is {@code d * qs[j]}.
 */
public final class Q8_0Matrix extends WeightMatrix {
  static final int BLOCK = 32;
  static final int BLOCK_BYTES = 34;

  public Q8_0Matrix(MemorySegment data, int rows, int cols) {
    super(data, rows, cols, GgmlType.Q8_0);
  }

  @Override
  public GgmlType type() {
    return GgmlType.Q8_0;
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
      for (int j = 0; j < BLOCK; j += BL) {
        ByteVector q = ByteVector.fromMemorySegment(B, data, block + 2 + j, LE);
        for (int p = 0; p < PARTS; p++) {
          acc =
              ((FloatVector) q.castShape(F, p))
                  .fma(FloatVector.fromArray(F, x, xo + j + p * FL), acc);
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
      float d = half(data, block);
      float blockSum = 0f;
      for (int j = 0; j < BLOCK; j++) {
        blockSum += s8(data, block + 2 + j) * x[xOffset + b * BLOCK + j];
      }
      sum += d * blockSum;
    }
    return sum;
  }

  @Override
  public void dequantizeRow(int row, float[] out, int outOffset) {
    long base = row * rowBytes;
    for (int b = 0; b < cols / BLOCK; b++) {
      long block = base + (long) b * BLOCK_BYTES;
      float d = half(data, block);
      for (int j = 0; j < BLOCK; j++) {
        out[outOffset + b * BLOCK + j] = d * s8(data, block + 2 + j);
      }
    }
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

  /** Four weight rows per pass over x (decode), each row in exactly {@link #dot}'s order. */
  @Override
  public void dotRows(int row, int count, float[] x, float[] out) {
    int r = row;
    for (int end = row + count - 3; r < end; r += 4) {
      rows4(r, x, out);
    }
    for (; r < row + count; r++) {
      out[r] = dot(r, x, 0);
    }
  }

  private void rows4(int row, float[] x, float[] out) {
    long base0 = row * rowBytes;
    long base1 = base0 + rowBytes;
    long base2 = base1 + rowBytes;
    long base3 = base2 + rowBytes;
    FloatVector total0 = FloatVector.zero(F);
    FloatVector total1 = FloatVector.zero(F);
    FloatVector total2 = FloatVector.zero(F);
    FloatVector total3 = FloatVector.zero(F);
    int blocks = cols / BLOCK;
    for (int b = 0; b < blocks; b++) {
      long off = (long) b * BLOCK_BYTES;
      int xo = b * BLOCK;
      FloatVector acc0 = FloatVector.zero(F);
      FloatVector acc1 = FloatVector.zero(F);
      FloatVector acc2 = FloatVector.zero(F);
      FloatVector acc3 = FloatVector.zero(F);
      for (int j = 0; j < BLOCK; j += BL) {
        ByteVector q0 = ByteVector.fromMemorySegment(B, data, base0 + off + 2 + j, LE);
        ByteVector q1 = ByteVector.fromMemorySegment(B, data, base1 + off + 2 + j, LE);
        ByteVector q2 = ByteVector.fromMemorySegment(B, data, base2 + off + 2 + j, LE);
        ByteVector q3 = ByteVector.fromMemorySegment(B, data, base3 + off + 2 + j, LE);
        for (int p = 0; p < PARTS; p++) {
          FloatVector xv = FloatVector.fromArray(F, x, xo + j + p * FL);
          acc0 = ((FloatVector) q0.castShape(F, p)).fma(xv, acc0);
          acc1 = ((FloatVector) q1.castShape(F, p)).fma(xv, acc1);
          acc2 = ((FloatVector) q2.castShape(F, p)).fma(xv, acc2);
          acc3 = ((FloatVector) q3.castShape(F, p)).fma(xv, acc3);
        }
      }
      total0 =
          acc0.fma(
              FloatVector.broadcast(F, Float.float16ToFloat(data.get(SHORT_LE, base0 + off))),
              total0);
      total1 =
          acc1.fma(
              FloatVector.broadcast(F, Float.float16ToFloat(data.get(SHORT_LE, base1 + off))),
              total1);
      total2 =
          acc2.fma(
              FloatVector.broadcast(F, Float.float16ToFloat(data.get(SHORT_LE, base2 + off))),
              total2);
      total3 =
          acc3.fma(
              FloatVector.broadcast(F, Float.float16ToFloat(data.get(SHORT_LE, base3 + off))),
              total3);
    }
    out[row] = Simd.sumLanes(total0);
    out[row + 1] = Simd.sumLanes(total1);
    out[row + 2] = Simd.sumLanes(total2);
    out[row + 3] = Simd.sumLanes(total3);
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
      for (int j = 0; j < BLOCK; j += BL) {
        ByteVector q = ByteVector.fromMemorySegment(B, data, block + 2 + j, LE);
        for (int p = 0; p < PARTS; p++) {
          FloatVector w = ((FloatVector) q.castShape(F, p));
          int i = xo + j + p * FL;
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
