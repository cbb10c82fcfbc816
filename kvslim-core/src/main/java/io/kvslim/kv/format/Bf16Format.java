package io.kvslim.kv.format;

import io.kvslim.kv.attention.AttentionKernels;
import io.kvslim.kv.attention.VectorKernels;
import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * bfloat16: the upper 16 bits of a float, rounded to nearest even as ggml does; 2 bytes per value.
 * The fused kernels widen in registers: a bf16 lane shifted left by 16 is its float.
 */
public final class Bf16Format extends RowFormat {
  private static final VectorSpecies<Float> FLOATS = VectorKernels.FLOATS;
  private static final VectorSpecies<Integer> INTS =
      VectorSpecies.of(int.class, VectorShape.forBitSize(FLOATS.vectorBitSize()));
  private static final boolean VECTORIZED = FLOATS.length() >= 4;
  private static final VectorSpecies<Short> SHORTS =
      VECTORIZED
          ? VectorSpecies.of(short.class, VectorShape.forBitSize(FLOATS.length() * 16))
          : null;
  private static final VectorSpecies<Byte> SHORT_BYTES =
      VECTORIZED
          ? VectorSpecies.of(byte.class, VectorShape.forBitSize(FLOATS.length() * 16))
          : null;

  Bf16Format() {}

  @Override
  public String name() {
    return "bf16";
  }

  @Override
  public int rowBytes(int headDim) {
    return 2 * headDim;
  }

  @Override
  protected int rowScaleBytes(int headDim) {
    return 0;
  }

  @Override
  protected void encodeRow(float[] src, int srcOff, MemorySegment block, long offset, int headDim) {
    for (int j = 0; j < headDim; j++) {
      block.set(F16Format.SHORT_LE, offset + 2L * j, HalfFloats.toBf16(src[srcOff + j]));
    }
  }

  @Override
  protected void decodeRow(MemorySegment block, long offset, int headDim, float[] dst, int dstOff) {
    for (int j = 0; j < headDim; j++) {
      dst[dstOff + j] = HalfFloats.fromBf16(block.get(F16Format.SHORT_LE, offset + 2L * j));
    }
  }

  private static FloatVector widen(MemorySegment block, long offset) {
    byte[] array = VectorKernels.array(block);
    ShortVector raw =
        array != null
            ? ByteVector.fromArray(SHORT_BYTES, array, (int) offset).reinterpretAsShorts()
            : ShortVector.fromMemorySegment(SHORTS, block, offset, VectorKernels.LE);
    IntVector wide = (IntVector) raw.convertShape(VectorOperators.S2I, INTS, 0);
    return wide.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
  }

  @Override
  protected float dotRow(
      MemorySegment block, long offset, int headDim, float[] q, int qOff, float[] work) {
    int j = 0;
    float result = 0f;
    if (VECTORIZED) {
      FloatVector sum = FloatVector.zero(FLOATS);
      for (int upper = FLOATS.loopBound(headDim); j < upper; j += FLOATS.length()) {
        FloatVector k = widen(block, offset + 2L * j);
        sum = FloatVector.fromArray(FLOATS, q, qOff + j).fma(k, sum);
      }
      result = AttentionKernels.sumLanes(sum);
    }
    for (; j < headDim; j++) {
      result += q[qOff + j] * HalfFloats.fromBf16(block.get(F16Format.SHORT_LE, offset + 2L * j));
    }
    return result;
  }

  @Override
  protected void accumulateRow(
      MemorySegment block,
      long offset,
      int headDim,
      float weight,
      float[] acc,
      int accOff,
      float[] work) {
    int j = 0;
    if (VECTORIZED) {
      for (int upper = FLOATS.loopBound(headDim); j < upper; j += FLOATS.length()) {
        FloatVector v = widen(block, offset + 2L * j);
        v.fma(FloatVector.broadcast(FLOATS, weight), FloatVector.fromArray(FLOATS, acc, accOff + j))
            .intoArray(acc, accOff + j);
      }
    }
    for (; j < headDim; j++) {
      float v = HalfFloats.fromBf16(block.get(F16Format.SHORT_LE, offset + 2L * j));
      acc[accOff + j] = Math.fma(v, weight, acc[accOff + j]);
    }
  }
}
