package io.kvslim.tensor;

import static io.kvslim.ggml.LittleEndian.half;
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

/**
 * F16 weights: IEEE half precision, 2 bytes per element, little-endian. The vector path widens
 * halves with integer operations (the Vector API has no half-to-float conversion): finite values
 * (normal, subnormal, zero) convert exactly; infinities and NaNs, which weights never hold, do not.
 */
public final class F16Matrix extends WeightMatrix {

  public F16Matrix(MemorySegment data, int rows, int cols) {
    super(data, rows, cols, GgmlType.F16);
  }

  @Override
  public GgmlType type() {
    return GgmlType.F16;
  }

  // The kernels below widen FL halves at a time with integer operations (the Vector API has no
  // half-to-float conversion). A normal half moves its exponent and mantissa into float position
  // and rebiases the exponent (15 to 127); a subnormal half (exponent 0) is its mantissa times
  // 2^-24, computed by int-to-float conversion: multiplying by 2^112 instead would make float
  // denormals, which cost a microcode assist per vector (measured over 30x slower). The sequence is
  // written out in each loop rather than in a helper method: a helper returning a vector that C2
  // leaves out of line (when a caller's inlining budget runs out) boxes every vector.

  @Override
  public float dot(int row, float[] x, int xOffset) {
    long base = row * rowBytes;
    FloatVector acc = FloatVector.zero(F);
    int i = 0;
    for (int upper = cols - FL; i <= upper; i += FL) {
      IntVector h =
          (IntVector) ShortVector.fromMemorySegment(S, data, base + i * 2L, LE).castShape(I, 0);
      IntVector magnitude = h.and(0x7FFF);
      IntVector normal = magnitude.lanewise(VectorOperators.LSHL, 13).add(0x38000000);
      IntVector subnormal =
          ((FloatVector) magnitude.convert(VectorOperators.I2F, 0))
              .mul(0x1p-24f)
              .reinterpretAsInts();
      // h is sign-extended, so bit 31 is the half's sign bit.
      FloatVector w =
          normal
              .blend(subnormal, magnitude.compare(VectorOperators.LT, 0x400))
              .or(h.and(0x80000000))
              .reinterpretAsFloats();
      acc = w.fma(FloatVector.fromArray(F, x, xOffset + i), acc);
    }
    float sum = Simd.sumLanes(acc);
    for (; i < cols; i++) {
      sum += half(data, base + i * 2L) * x[xOffset + i];
    }
    return sum;
  }

  @Override
  public float dotScalar(int row, float[] x, int xOffset) {
    long base = row * rowBytes;
    float sum = 0f;
    for (int i = 0; i < cols; i++) {
      sum += half(data, base + i * 2L) * x[xOffset + i];
    }
    return sum;
  }

  @Override
  public void dequantizeRow(int row, float[] out, int outOffset) {
    long base = row * rowBytes;
    for (int i = 0; i < cols; i++) {
      out[outOffset + i] = half(data, base + i * 2L);
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
    int i = 0;
    for (int upper = cols - FL; i <= upper; i += FL) {
      IntVector h =
          (IntVector) ShortVector.fromMemorySegment(S, data, base + i * 2L, LE).castShape(I, 0);
      IntVector magnitude = h.and(0x7FFF);
      IntVector normal = magnitude.lanewise(VectorOperators.LSHL, 13).add(0x38000000);
      IntVector subnormal =
          ((FloatVector) magnitude.convert(VectorOperators.I2F, 0))
              .mul(0x1p-24f)
              .reinterpretAsInts();
      FloatVector w =
          normal
              .blend(subnormal, magnitude.compare(VectorOperators.LT, 0x400))
              .or(h.and(0x80000000))
              .reinterpretAsFloats();
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
      float w = Float.float16ToFloat(data.get(SHORT_LE, base + i * 2L));
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
