package io.kvslim.tensor;

import static io.kvslim.tensor.Simd.F;
import static io.kvslim.tensor.Simd.FL;
import static io.kvslim.tensor.Simd.I;
import static io.kvslim.tensor.Simd.LE;
import static io.kvslim.tensor.Simd.S;
import static io.kvslim.tensor.Simd.SHORT_LE;

import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;

/** BF16 weights: the upper 16 bits of an IEEE float, 2 bytes per element, little-endian. */
public final class BF16Matrix extends WeightMatrix {

  public BF16Matrix(MemorySegment data, int rows, int cols) {
    super(data, rows, cols, GgmlType.BF16);
  }

  @Override
  public GgmlType type() {
    return GgmlType.BF16;
  }

  private float weight(long offset) {
    return Float.intBitsToFloat(data.get(SHORT_LE, offset) << 16);
  }

  @Override
  public float dot(int row, float[] x, int xOffset) {
    long base = row * rowBytes;
    FloatVector acc0 = FloatVector.zero(F);
    FloatVector acc1 = FloatVector.zero(F);
    int i = 0;
    for (int upper = cols - 2 * FL; i <= upper; i += 2 * FL) {
      acc0 =
          ((IntVector) ShortVector.fromMemorySegment(S, data, base + i * 2L, LE).castShape(I, 0))
              .lanewise(VectorOperators.LSHL, 16)
              .reinterpretAsFloats()
              .fma(FloatVector.fromArray(F, x, xOffset + i), acc0);
      acc1 =
          ((IntVector)
                  ShortVector.fromMemorySegment(S, data, base + (i + FL) * 2L, LE).castShape(I, 0))
              .lanewise(VectorOperators.LSHL, 16)
              .reinterpretAsFloats()
              .fma(FloatVector.fromArray(F, x, xOffset + i + FL), acc1);
    }
    float sum = Simd.sumLanes(acc0.add(acc1));
    for (; i < cols; i++) {
      sum += weight(base + i * 2L) * x[xOffset + i];
    }
    return sum;
  }

  /**
   * Four rows {@code count / 4} apart per pass over {@code x} (eight independent accumulator chains
   * instead of {@link #dot}'s two), each row in exactly {@link #dot}'s order; rows read through
   * slices with int offsets, so C2 hoists the bounds checks out of the loop.
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
    FloatVector c0 = a0;
    FloatVector c1 = a0;
    FloatVector c2 = a0;
    FloatVector c3 = a0;
    int i = 0;
    for (int upper = cols - 2 * FL; i <= upper; i += 2 * FL) {
      FloatVector xv = FloatVector.fromArray(F, x, i);
      FloatVector yv = FloatVector.fromArray(F, x, i + FL);
      a0 =
          ((IntVector) ShortVector.fromMemorySegment(S, r0, i * 2, LE).castShape(I, 0))
              .lanewise(VectorOperators.LSHL, 16)
              .reinterpretAsFloats()
              .fma(xv, a0);
      c0 =
          ((IntVector) ShortVector.fromMemorySegment(S, r0, (i + FL) * 2, LE).castShape(I, 0))
              .lanewise(VectorOperators.LSHL, 16)
              .reinterpretAsFloats()
              .fma(yv, c0);
      a1 =
          ((IntVector) ShortVector.fromMemorySegment(S, r1, i * 2, LE).castShape(I, 0))
              .lanewise(VectorOperators.LSHL, 16)
              .reinterpretAsFloats()
              .fma(xv, a1);
      c1 =
          ((IntVector) ShortVector.fromMemorySegment(S, r1, (i + FL) * 2, LE).castShape(I, 0))
              .lanewise(VectorOperators.LSHL, 16)
              .reinterpretAsFloats()
              .fma(yv, c1);
      a2 =
          ((IntVector) ShortVector.fromMemorySegment(S, r2, i * 2, LE).castShape(I, 0))
              .lanewise(VectorOperators.LSHL, 16)
              .reinterpretAsFloats()
              .fma(xv, a2);
      c2 =
          ((IntVector) ShortVector.fromMemorySegment(S, r2, (i + FL) * 2, LE).castShape(I, 0))
              .lanewise(VectorOperators.LSHL, 16)
              .reinterpretAsFloats()
              .fma(yv, c2);
      a3 =
          ((IntVector) ShortVector.fromMemorySegment(S, r3, i * 2, LE).castShape(I, 0))
              .lanewise(VectorOperators.LSHL, 16)
              .reinterpretAsFloats()
              .fma(xv, a3);
      c3 =
          ((IntVector) ShortVector.fromMemorySegment(S, r3, (i + FL) * 2, LE).castShape(I, 0))
              .lanewise(VectorOperators.LSHL, 16)
              .reinterpretAsFloats()
              .fma(yv, c3);
    }
    float s0 = Simd.sumLanes(a0.add(c0));
    float s1 = Simd.sumLanes(a1.add(c1));
    float s2 = Simd.sumLanes(a2.add(c2));
    float s3 = Simd.sumLanes(a3.add(c3));
    for (; i < cols; i++) {
      s0 += Float.intBitsToFloat(r0.get(SHORT_LE, i * 2L) << 16) * x[i];
      s1 += Float.intBitsToFloat(r1.get(SHORT_LE, i * 2L) << 16) * x[i];
      s2 += Float.intBitsToFloat(r2.get(SHORT_LE, i * 2L) << 16) * x[i];
      s3 += Float.intBitsToFloat(r3.get(SHORT_LE, i * 2L) << 16) * x[i];
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
      sum += weight(base + i * 2L) * x[xOffset + i];
    }
    return sum;
  }

  @Override
  public void dequantizeRow(int row, float[] out, int outOffset) {
    long base = row * rowBytes;
    for (int i = 0; i < cols; i++) {
      out[outOffset + i] = weight(base + i * 2L);
    }
  }
}
