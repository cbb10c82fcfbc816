package io.kvslim.tensor;

import static io.kvslim.tensor.Simd.F;
import static io.kvslim.tensor.Simd.FLOAT_LE;
import static io.kvslim.tensor.Simd.LE;

import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.FloatVector;

/** F32 weights: 4 bytes per element, little-endian. */
public final class F32Matrix extends WeightMatrix {

  public F32Matrix(MemorySegment data, int rows, int cols) {
    super(data, rows, cols, GgmlType.F32);
  }

  @Override
  public GgmlType type() {
    return GgmlType.F32;
  }

  @Override
  public float dot(int row, float[] x, int xOffset) {
    // One accumulator, as in dot4: a row's result must not depend on whether it is computed alone
    // or in a tile of a batch (batched decode must give the same logits as single decode).
    long base = row * rowBytes;
    FloatVector acc = FloatVector.zero(F);
    int len = F.length();
    int i = 0;
    for (int upper = cols - len; i <= upper; i += len) {
      acc =
          FloatVector.fromMemorySegment(F, data, base + i * 4L, LE)
              .fma(FloatVector.fromArray(F, x, xOffset + i), acc);
    }
    float sum = Simd.sumLanes(acc);
    for (; i < cols; i++) {
      sum += data.get(FLOAT_LE, base + i * 4L) * x[xOffset + i];
    }
    return sum;
  }

  /**
   * Four rows {@code count / 4} apart per pass over {@code x} (four independent accumulator chains
   * instead of one: {@link #dot} alone waits on each fused multiply-add's latency), each row in
   * exactly {@link #dot}'s order; rows read through slices with int offsets, so C2 hoists the
   * bounds checks out of the loop.
   */
  @Override
  public void dotRows(int row, int count, float[] x, float[] out) {
    dotRowsBy4(row, count, x, out);
  }

  @Override
  protected void rows4(int row, int q, float[] x, float[] out) {
    MemorySegment r0 = rowSlice(row);
    MemorySegment r1 = rowSlice(row + q);
    MemorySegment r2 = rowSlice(row + 2L * q);
    MemorySegment r3 = rowSlice(row + 3L * q);
    FloatVector a0 = FloatVector.zero(F);
    FloatVector a1 = a0;
    FloatVector a2 = a0;
    FloatVector a3 = a0;
    int len = F.length();
    int i = 0;
    for (int upper = cols - len; i <= upper; i += len) {
      FloatVector xv = FloatVector.fromArray(F, x, i);
      a0 = FloatVector.fromMemorySegment(F, r0, i * 4, LE).fma(xv, a0);
      a1 = FloatVector.fromMemorySegment(F, r1, i * 4, LE).fma(xv, a1);
      a2 = FloatVector.fromMemorySegment(F, r2, i * 4, LE).fma(xv, a2);
      a3 = FloatVector.fromMemorySegment(F, r3, i * 4, LE).fma(xv, a3);
    }
    float s0 = Simd.sumLanes(a0);
    float s1 = Simd.sumLanes(a1);
    float s2 = Simd.sumLanes(a2);
    float s3 = Simd.sumLanes(a3);
    for (; i < cols; i++) {
      s0 += r0.get(FLOAT_LE, i * 4L) * x[i];
      s1 += r1.get(FLOAT_LE, i * 4L) * x[i];
      s2 += r2.get(FLOAT_LE, i * 4L) * x[i];
      s3 += r3.get(FLOAT_LE, i * 4L) * x[i];
    }
    out[row] = s0;
    out[row + q] = s1;
    out[row + 2 * q] = s2;
    out[row + 3 * q] = s3;
  }

  @Override
  public float dotScalar(int row, float[] x, int xOffset) {
    long base = row * rowBytes;
    float sum = 0f;
    for (int i = 0; i < cols; i++) {
      sum += data.get(FLOAT_LE, base + i * 4L) * x[xOffset + i];
    }
    return sum;
  }

  @Override
  public void dequantizeRow(int row, float[] out, int outOffset) {
    long base = row * rowBytes;
    for (int i = 0; i < cols; i++) {
      out[outOffset + i] = data.get(FLOAT_LE, base + i * 4L);
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
    FloatVector acc0 = FloatVector.zero(F);
    FloatVector acc1 = FloatVector.zero(F);
    FloatVector acc2 = FloatVector.zero(F);
    FloatVector acc3 = FloatVector.zero(F);
    int len = F.length();
    int i = 0;
    for (int upper = cols - len; i <= upper; i += len) {
      FloatVector w = FloatVector.fromMemorySegment(F, data, base + i * 4L, LE);
      acc0 = w.fma(FloatVector.fromArray(F, x, x0 + i), acc0);
      acc1 = w.fma(FloatVector.fromArray(F, x, x1 + i), acc1);
      acc2 = w.fma(FloatVector.fromArray(F, x, x2 + i), acc2);
      acc3 = w.fma(FloatVector.fromArray(F, x, x3 + i), acc3);
    }
    float s0 = Simd.sumLanes(acc0);
    float s1 = Simd.sumLanes(acc1);
    float s2 = Simd.sumLanes(acc2);
    float s3 = Simd.sumLanes(acc3);
    for (; i < cols; i++) {
      float w = data.get(FLOAT_LE, base + i * 4L);
      s0 += w * x[x0 + i];
      s1 += w * x[x1 + i];
      s2 += w * x[x2 + i];
      s3 += w * x[x3 + i];
    }
    out[o0] = s0;
    out[o1] = s1;
    out[o2] = s2;
    out[o3] = s3;
  }
}
