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

  /**
   * The block's scores from its array: four rows a pass on 8 lanes (four independent multiply-add
   * chains share each query vector, {@link AttentionKernels#sumLanes4} adds each row's lanes in
   * {@link AttentionKernels#sumLanes}' tree), the rest row by row; each row the same operations as
   * {@link #dotRow}, so the same bits.
   */
  @Override
  public void scores(
      MemorySegment block,
      int count,
      int capacity,
      int headDim,
      float[] prepared,
      int pOff,
      float[] scores,
      float[] work) {
    byte[] array = VectorKernels.array(block);
    if (!VECTORIZED || array == null || headDim % FLOATS.length() != 0) {
      super.scores(block, count, capacity, headDim, prepared, pOff, scores, work);
      return;
    }
    int s = FLOATS.length() == 8 ? scoresFours(array, count, headDim, prepared, pOff, scores) : 0;
    for (; s < count; s++) {
      scores[s] = dotRow(block, 2L * headDim * s, headDim, prepared, pOff, work);
    }
  }

  /**
   * Four rows a pass for {@link #scores} (its own method: C2 compiles it apart from its caller, so
   * the node count of an inlining tree does not leave {@code sumLanes4} out of line with boxed
   * vectors). Returns the rows done.
   */
  private static int scoresFours(
      byte[] array, int count, int headDim, float[] q, int qOff, float[] scores) {
    int lanes = FLOATS.length();
    int rowBytes = 2 * headDim;
    int s = 0;
    for (; s + 3 < count; s += 4) {
      int at = s * rowBytes;
      FloatVector sum0 = FloatVector.zero(FLOATS);
      FloatVector sum1 = sum0;
      FloatVector sum2 = sum0;
      FloatVector sum3 = sum0;
      for (int j = 0; j < headDim; j += lanes) {
        FloatVector w = FloatVector.fromArray(FLOATS, q, qOff + j);
        int a0 = at + 2 * j;
        IntVector h0 =
            (IntVector)
                ByteVector.fromArray(SHORT_BYTES, array, a0)
                    .reinterpretAsShorts()
                    .convertShape(VectorOperators.S2I, INTS, 0);
        IntVector h1 =
            (IntVector)
                ByteVector.fromArray(SHORT_BYTES, array, a0 + rowBytes)
                    .reinterpretAsShorts()
                    .convertShape(VectorOperators.S2I, INTS, 0);
        IntVector h2 =
            (IntVector)
                ByteVector.fromArray(SHORT_BYTES, array, a0 + 2 * rowBytes)
                    .reinterpretAsShorts()
                    .convertShape(VectorOperators.S2I, INTS, 0);
        IntVector h3 =
            (IntVector)
                ByteVector.fromArray(SHORT_BYTES, array, a0 + 3 * rowBytes)
                    .reinterpretAsShorts()
                    .convertShape(VectorOperators.S2I, INTS, 0);
        sum0 = w.fma(h0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), sum0);
        sum1 = w.fma(h1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), sum1);
        sum2 = w.fma(h2.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), sum2);
        sum3 = w.fma(h3.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), sum3);
      }
      AttentionKernels.sumLanes4(sum0, sum1, sum2, sum3, scores, s, null, 0);
    }
    return s;
  }

  /**
   * The block's rows added in slot order with the output held in registers, four vectors of
   * channels at a time: each lane computes {@code acc = v·w + acc} slot by slot exactly as {@link
   * #accumulateRow} does (zero weights skipped as {@link RowFormat#accumulateBlock} skips them), so
   * the same bits.
   */
  @Override
  public void accumulateBlock(
      MemorySegment block,
      int count,
      int capacity,
      int headDim,
      float[] weights,
      int wOff,
      float[] acc,
      int accOff,
      float[] work) {
    byte[] array = VectorKernels.array(block);
    int lanes = FLOATS.length();
    if (!VECTORIZED || array == null || headDim % (4 * lanes) != 0) {
      super.accumulateBlock(block, count, capacity, headDim, weights, wOff, acc, accOff, work);
      return;
    }
    addRows(array, count, headDim, weights, wOff, acc, accOff);
  }

  private static void addRows(
      byte[] array, int count, int headDim, float[] weights, int wOff, float[] acc, int accOff) {
    int lanes = FLOATS.length();
    int rowBytes = 2 * headDim;
    for (int c = 0; c < headDim; c += 4 * lanes) {
      int a = accOff + c;
      FloatVector v0 = FloatVector.fromArray(FLOATS, acc, a);
      FloatVector v1 = FloatVector.fromArray(FLOATS, acc, a + lanes);
      FloatVector v2 = FloatVector.fromArray(FLOATS, acc, a + 2 * lanes);
      FloatVector v3 = FloatVector.fromArray(FLOATS, acc, a + 3 * lanes);
      for (int s = 0; s < count; s++) {
        float weight = weights[wOff + s];
        if (weight == 0f) {
          continue;
        }
        FloatVector w = FloatVector.broadcast(FLOATS, weight);
        int at = s * rowBytes + 2 * c;
        IntVector h0 =
            (IntVector)
                ByteVector.fromArray(SHORT_BYTES, array, at)
                    .reinterpretAsShorts()
                    .convertShape(VectorOperators.S2I, INTS, 0);
        IntVector h1 =
            (IntVector)
                ByteVector.fromArray(SHORT_BYTES, array, at + 2 * lanes)
                    .reinterpretAsShorts()
                    .convertShape(VectorOperators.S2I, INTS, 0);
        IntVector h2 =
            (IntVector)
                ByteVector.fromArray(SHORT_BYTES, array, at + 4 * lanes)
                    .reinterpretAsShorts()
                    .convertShape(VectorOperators.S2I, INTS, 0);
        IntVector h3 =
            (IntVector)
                ByteVector.fromArray(SHORT_BYTES, array, at + 6 * lanes)
                    .reinterpretAsShorts()
                    .convertShape(VectorOperators.S2I, INTS, 0);
        v0 = h0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(w, v0);
        v1 = h1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(w, v1);
        v2 = h2.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(w, v2);
        v3 = h3.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(w, v3);
      }
      v0.intoArray(acc, a);
      v1.intoArray(acc, a + lanes);
      v2.intoArray(acc, a + 2 * lanes);
      v3.intoArray(acc, a + 3 * lanes);
    }
  }
}
