package io.kvslim.tensor;

import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/** F32 weights: 4 bytes per element, little-endian. */
public final class F32Matrix extends WeightMatrix {
  private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
  private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

  public F32Matrix(MemorySegment data, int rows, int cols) {
    super(data, rows, cols, GgmlType.F32);
  }

  @Override
  public GgmlType type() {
    return GgmlType.F32;
  }

  @Override
  public float dot(int row, float[] x, int xOffset) {
    long base = row * rowBytes;
    FloatVector acc0 = FloatVector.zero(S);
    FloatVector acc1 = FloatVector.zero(S);
    int len = S.length();
    int i = 0;
    int upper = cols - 2 * len;
    for (; i <= upper; i += 2 * len) {
      FloatVector w0 =
          FloatVector.fromMemorySegment(S, data, base + i * 4L, ByteOrder.LITTLE_ENDIAN);
      FloatVector w1 =
          FloatVector.fromMemorySegment(S, data, base + (i + len) * 4L, ByteOrder.LITTLE_ENDIAN);
      acc0 = w0.fma(FloatVector.fromArray(S, x, xOffset + i), acc0);
      acc1 = w1.fma(FloatVector.fromArray(S, x, xOffset + i + len), acc1);
    }
    float sum = acc0.add(acc1).reduceLanes(VectorOperators.ADD);
    for (; i < cols; i++) {
      sum += data.get(F, base + i * 4L) * x[xOffset + i];
    }
    return sum;
  }

  @Override
  public float dotScalar(int row, float[] x, int xOffset) {
    long base = row * rowBytes;
    float sum = 0f;
    for (int i = 0; i < cols; i++) {
      sum += data.get(F, base + i * 4L) * x[xOffset + i];
    }
    return sum;
  }

  @Override
  public void dequantizeRow(int row, float[] out, int outOffset) {
    long base = row * rowBytes;
    for (int i = 0; i < cols; i++) {
      out[outOffset + i] = data.get(F, base + i * 4L);
    }
  }
}
