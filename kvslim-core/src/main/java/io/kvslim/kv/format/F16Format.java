package io.kvslim.kv.format;

import static jdk.incubator.vector.VectorOperators.LSHL;
import static jdk.incubator.vector.VectorOperators.S2I;

import io.kvslim.kv.attention.AttentionKernels;
import io.kvslim.kv.attention.VectorKernels;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * IEEE half precision, 2 bytes per value, round to nearest even: llama.cpp's default KV type and
 * the baseline of every compression ratio (DESIGN.md §3.2). The fused kernels widen a vector of
 * halves at a time ({@link VectorKernels#half}) straight into their multiply-adds; a block's
 * weighted value sum keeps the output in registers across the block's rows.
 */
public final class F16Format extends RowFormat {
  public static final ValueLayout.OfShort SHORT_LE =
      ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

  /** Whether the fused kernels check a block for infinities and NaNs (all but the view). */
  private final boolean checks;

  private static final F16Format ASSUMING_FINITE = new F16Format(false);

  F16Format() {
    this(true);
  }

  private F16Format(boolean checks) {
    this.checks = checks;
  }

  /**
   * The same format whose block kernels skip the check for infinities and NaNs (about a quarter of
   * a key or value pass on AVX2): for blocks {@link #finiteRows} cleared.
   */
  @Override
  public KvFormat assumingFinite() {
    return ASSUMING_FINITE;
  }

  @Override
  public boolean finiteRows(MemorySegment block, int from, int to, int capacity, int headDim) {
    byte[] array = VectorKernels.array(block);
    int rowBytes = rowBytes(headDim);
    return array != null
        && !VectorKernels.anyInfinityOrNaN(array, from * rowBytes, (to - from) * rowBytes);
  }

  @Override
  public String name() {
    return "f16";
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
      block.set(SHORT_LE, offset + 2L * j, HalfFloats.toF16(src[srcOff + j]));
    }
  }

  @Override
  protected void decodeRow(MemorySegment block, long offset, int headDim, float[] dst, int dstOff) {
    VectorKernels.halves(block, offset, headDim, dst, dstOff);
  }

  @Override
  protected boolean dotDecodesRow() {
    return true;
  }

  @Override
  protected float dotRow(
      MemorySegment block, long offset, int headDim, float[] q, int qOff, float[] work) {
    return VectorKernels.dotHalves(q, qOff, block, offset, headDim, work);
  }

  /**
   * Row by row as {@link #dotRow}, with the widening written out (see {@link #accumulateBlock})
   * after one check of the block for infinities and NaNs: the same bits.
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
    VectorSpecies<Float> species = VectorKernels.FLOATS;
    int lanes = species.length();
    int rowBytes = rowBytes(headDim);
    if (array == null
        || headDim % lanes != 0
        || (checks && VectorKernels.anyInfinityOrNaN(array, 0, count * rowBytes))) {
      super.scores(block, count, capacity, headDim, prepared, pOff, scores, work);
      return;
    }
    // The widened half is bits·2^112 with bits = (h << 13) & 0x8fffe000 read as a float; instead
    // of multiplying every key vector by 2^112 the query is, once per block: q·2^112 is exact (a
    // prepared query is an f16 value, |q| <= 65504 < 2^16, or infinite) and bits is exact too
    // (f16 subnormals become float subnormals, multiples of 2^-136), so each product, and each
    // fused multiply-add, is the same as with the widened key: the same bits.
    if (work.length < headDim + lanes) {
      super.scores(block, count, capacity, headDim, prepared, pOff, scores, work);
      return;
    }
    for (int j = 0; j < headDim; j += lanes) {
      FloatVector.fromArray(species, prepared, pOff + j).mul(0x1p112f).intoArray(work, j);
    }
    int s = 0;
    if (lanes == 8) {
      s = scoresFours(array, rowBytes, count, headDim, work, scores);
    }
    for (; s < count; s++) {
      int at = s * rowBytes;
      FloatVector sum = FloatVector.zero(species);
      for (int j = 0; j < headDim; j += lanes) {
        IntVector h =
            (IntVector)
                ByteVector.fromArray(VectorKernels.HALF_BYTES, array, at + 2 * j)
                    .reinterpretAsShorts()
                    .convertShape(S2I, VectorKernels.INTS, 0);
        sum =
            FloatVector.fromArray(species, work, j)
                .fma(h.lanewise(LSHL, 13).and(0x8fffe000).reinterpretAsFloats(), sum);
      }
      if (lanes == 16) {
        // AttentionKernels.sumLanes' tree written out (C2 did not inline the call here, and a
        // vector passed to a call that is not inlined is boxed): the same additions
        sum = sum.add(sum.rearrange(AttentionKernels.ROTATE8));
        sum = sum.add(sum.rearrange(AttentionKernels.ROTATE4));
        sum = sum.add(sum.rearrange(AttentionKernels.ROTATE2));
        sum = sum.add(sum.rearrange(AttentionKernels.ROTATE1));
        scores[s] = sum.lane(0);
      } else {
        scores[s] = AttentionKernels.sumLanes(sum);
      }
    }
  }

  /**
   * F16 key scores four rows a pass on 8 lanes: four independent multiply-add chains share each
   * loaded query vector ({@code work[0..headDim)}: the query times 2^112), and {@link
   * AttentionKernels#sumLanes4} adds each row's lanes in {@link AttentionKernels#sumLanes}' tree:
   * the same bits as one row a pass. Its own method, so that C2 compiles it apart from {@link
   * #scores} (inlined there, the node count stopped it inlining {@code sumLanes4}, and the four
   * vectors were boxed). Returns the rows done (a multiple of four).
   */
  private static int scoresFours(
      byte[] array, int rowBytes, int count, int headDim, float[] work, float[] scores) {
    VectorSpecies<Float> species = VectorKernels.FLOATS;
    int lanes = species.length();
    int s = 0;
    for (; s + 3 < count; s += 4) {
      int at = s * rowBytes;
      FloatVector sum0 = FloatVector.zero(species);
      FloatVector sum1 = sum0;
      FloatVector sum2 = sum0;
      FloatVector sum3 = sum0;
      for (int j = 0; j < headDim; j += lanes) {
        FloatVector q = FloatVector.fromArray(species, work, j);
        int a0 = at + 2 * j;
        IntVector h0 =
            (IntVector)
                ByteVector.fromArray(VectorKernels.HALF_BYTES, array, a0)
                    .reinterpretAsShorts()
                    .convertShape(S2I, VectorKernels.INTS, 0);
        IntVector h1 =
            (IntVector)
                ByteVector.fromArray(VectorKernels.HALF_BYTES, array, a0 + rowBytes)
                    .reinterpretAsShorts()
                    .convertShape(S2I, VectorKernels.INTS, 0);
        IntVector h2 =
            (IntVector)
                ByteVector.fromArray(VectorKernels.HALF_BYTES, array, a0 + 2 * rowBytes)
                    .reinterpretAsShorts()
                    .convertShape(S2I, VectorKernels.INTS, 0);
        IntVector h3 =
            (IntVector)
                ByteVector.fromArray(VectorKernels.HALF_BYTES, array, a0 + 3 * rowBytes)
                    .reinterpretAsShorts()
                    .convertShape(S2I, VectorKernels.INTS, 0);
        sum0 = q.fma(h0.lanewise(LSHL, 13).and(0x8fffe000).reinterpretAsFloats(), sum0);
        sum1 = q.fma(h1.lanewise(LSHL, 13).and(0x8fffe000).reinterpretAsFloats(), sum1);
        sum2 = q.fma(h2.lanewise(LSHL, 13).and(0x8fffe000).reinterpretAsFloats(), sum2);
        sum3 = q.fma(h3.lanewise(LSHL, 13).and(0x8fffe000).reinterpretAsFloats(), sum3);
      }
      AttentionKernels.sumLanes4(sum0, sum1, sum2, sum3, scores, s, work, headDim);
    }
    return s;
  }

  /**
   * The block's rows added in slot order with the output held in registers, four vectors of
   * channels at a time: each lane computes {@code acc = half·w + acc} slot by slot exactly as
   * {@link #accumulateRow} does (same rounded weights, same zero-weight skips), so the bits are the
   * same. Blocks holding an infinity or NaN take the row-by-row path.
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
    VectorSpecies<Float> species = VectorKernels.FLOATS;
    int lanes = species.length();
    int rowBytes = rowBytes(headDim);
    if (array == null
        || headDim % (4 * lanes) != 0
        || (checks && VectorKernels.anyInfinityOrNaN(array, 0, count * rowBytes))) {
      super.accumulateBlock(block, count, capacity, headDim, weights, wOff, acc, accOff, work);
      return;
    }
    // each weight rounded to f16 and times 2^112 once for the block, not once per pass
    boolean rounded = count <= work.length;
    if (rounded) {
      for (int s = 0; s < count; s++) {
        work[s] = roundToF16(weights[wOff + s]) * 0x1p112f;
      }
    }
    for (int c = 0; c < headDim; c += 4 * lanes) {
      int a = accOff + c;
      FloatVector v0 = FloatVector.fromArray(species, acc, a);
      FloatVector v1 = FloatVector.fromArray(species, acc, a + lanes);
      FloatVector v2 = FloatVector.fromArray(species, acc, a + 2 * lanes);
      FloatVector v3 = FloatVector.fromArray(species, acc, a + 3 * lanes);
      for (int s = 0; s < count; s++) {
        float weight = weights[wOff + s];
        if (weight == 0f) {
          continue;
        }
        // the weight times 2^112 instead of each widened value (see scores: exact, same bits)
        FloatVector w =
            FloatVector.broadcast(species, rounded ? work[s] : roundToF16(weight) * 0x1p112f);
        int at = s * rowBytes + 2 * c;
        // VectorKernels.widenFinite's steps written out: no vector crosses a call C2 might not
        // inline
        // (where it would be boxed), whatever the JIT compiled first
        IntVector h0 =
            (IntVector)
                ByteVector.fromArray(VectorKernels.HALF_BYTES, array, at)
                    .reinterpretAsShorts()
                    .convertShape(S2I, VectorKernels.INTS, 0);
        IntVector h1 =
            (IntVector)
                ByteVector.fromArray(VectorKernels.HALF_BYTES, array, at + 2 * lanes)
                    .reinterpretAsShorts()
                    .convertShape(S2I, VectorKernels.INTS, 0);
        IntVector h2 =
            (IntVector)
                ByteVector.fromArray(VectorKernels.HALF_BYTES, array, at + 4 * lanes)
                    .reinterpretAsShorts()
                    .convertShape(S2I, VectorKernels.INTS, 0);
        IntVector h3 =
            (IntVector)
                ByteVector.fromArray(VectorKernels.HALF_BYTES, array, at + 6 * lanes)
                    .reinterpretAsShorts()
                    .convertShape(S2I, VectorKernels.INTS, 0);
        v0 = h0.lanewise(LSHL, 13).and(0x8fffe000).reinterpretAsFloats().fma(w, v0);
        v1 = h1.lanewise(LSHL, 13).and(0x8fffe000).reinterpretAsFloats().fma(w, v1);
        v2 = h2.lanewise(LSHL, 13).and(0x8fffe000).reinterpretAsFloats().fma(w, v2);
        v3 = h3.lanewise(LSHL, 13).and(0x8fffe000).reinterpretAsFloats().fma(w, v3);
      }
      v0.intoArray(acc, a);
      v1.intoArray(acc, a + lanes);
      v2.intoArray(acc, a + 2 * lanes);
      v3.intoArray(acc, a + 3 * lanes);
    }
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
    VectorKernels.addWeightedHalves(roundToF16(weight), block, offset, acc, accOff, headDim, work);
  }

  // No accumulateBlockRows override: the rows of a GQA group each run accumulateBlock (output in
  // registers, the block read again from L1), which measured faster than decoding each slot once
  // and adding it to every row's output through memory (GQA 12/4 at depth 8000: 33.7 tok/s with
  // the shared decode against 59.1 for F32).

  @Override
  public boolean accumulatesProbabilities() {
    return true;
  }

  /** Rounds the weight to f16 as {@link #accumulate} does. */
  @Override
  public void accumulateReference(
      MemorySegment block, int slot, int capacity, int headDim, float weight, float[] acc) {
    super.accumulateReference(block, slot, capacity, headDim, roundToF16(weight), acc);
  }

  /**
   * The weight (a softmax probability) rounded to f16: llama.cpp's {@code KQV} product with f16
   * values converts the probabilities to f16 first ({@code vec_dot_type} of f16).
   */
  private static float roundToF16(float weight) {
    return Float.float16ToFloat(Float.floatToFloat16(weight));
  }

  /** llama.cpp converts the query to f16 before its f16 dot product ({@code vec_dot_type}). */
  @Override
  public void prepareQuery(float[] q, int qOff, int headDim, float[] dst, int dstOff) {
    for (int j = 0; j < headDim; j++) {
      dst[dstOff + j] = Float.float16ToFloat(Float.floatToFloat16(q[qOff + j]));
    }
  }
}
