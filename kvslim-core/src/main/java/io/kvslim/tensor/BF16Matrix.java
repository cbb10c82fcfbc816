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
