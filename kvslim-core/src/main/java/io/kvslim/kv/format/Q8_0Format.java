package io.kvslim.kv.format;

import static io.kvslim.ggml.Q8_0Codec.QS;

import io.kvslim.ggml.Q8_0Codec;
import io.kvslim.kv.attention.AttentionKernels;
import io.kvslim.kv.attention.VectorKernels;
import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * llama.cpp {@code q8_0} (METHODS.md Q1): 34-byte blocks of 32 values read and written by {@link
 * Q8_0Codec} (written with llama.cpp's x86 {@code quantize_row_q8_0}, {@link
 * Q8_0Codec#quantizeX86}; error per value at most {@code d/2 + 127·|d − fp16(d)|}). This class adds
 * the vector kernels: the integer dot with the prepared query and the weighted sum of values decode
 * the signed bytes in registers.
 */
public final class Q8_0Format extends GgmlBlockFormat {
  private static final VectorSpecies<Float> FLOATS = VectorKernels.FLOATS;
  private static final VectorSpecies<Byte> BYTES16 = ByteVector.SPECIES_128;
  private static final int PARTS = 16 / Math.min(16, FLOATS.length());

  Q8_0Format() {
    super("q8_0", Q8_0Codec.INSTANCE);
  }

  @Override
  protected float integerDot(
      MemorySegment block, long offset, float[] qCodes, int qOff, float[] work) {
    if (FLOATS.length() < 4 || FLOATS.length() > 16) {
      return super.integerDot(block, offset, qCodes, qOff, work);
    }
    FloatVector sum = FloatVector.zero(FLOATS);
    for (int half = 0; half < 2; half++) {
      ByteVector codes = VectorKernels.bytes16(block, offset + QS + 16 * half);
      for (int part = 0; part < PARTS; part++) {
        FloatVector k = (FloatVector) codes.convertShape(VectorOperators.B2F, FLOATS, part);
        int j = qOff + 16 * half + part * FLOATS.length();
        sum = FloatVector.fromArray(FLOATS, qCodes, j).fma(k, sum);
      }
    }
    return AttentionKernels.sumLanes(sum);
  }

  @Override
  protected void accumulateBlock(
      MemorySegment block, long offset, float weight, float[] acc, int accOff, float[] work) {
    if (FLOATS.length() < 4 || FLOATS.length() > 16) {
      super.accumulateBlock(block, offset, weight, acc, accOff, work);
      return;
    }
    float wd = weight * Q8_0Codec.INSTANCE.d(block, offset);
    for (int half = 0; half < 2; half++) {
      ByteVector codes = VectorKernels.bytes16(block, offset + QS + 16 * half);
      for (int part = 0; part < PARTS; part++) {
        FloatVector v = (FloatVector) codes.convertShape(VectorOperators.B2F, FLOATS, part);
        int j = accOff + 16 * half + part * FLOATS.length();
        v.fma(FloatVector.broadcast(FLOATS, wd), FloatVector.fromArray(FLOATS, acc, j))
            .intoArray(acc, j);
      }
    }
  }

  // Block loops over the block's byte array with the per-32-value kernels inlined: the same
  // operations in the same order as the per-row methods above, so the same bits.

  /** Sixteen signed codes at byte {@code at}, widened to floats (16 lanes). */
  private static FloatVector b2f(byte[] array, int at) {
    return (FloatVector)
        ByteVector.fromArray(BYTES16, array, at).convertShape(VectorOperators.B2F, FLOATS, 0);
  }

  private static float scaleAt(byte[] array, int at) {
    return Float.float16ToFloat((short) ((array[at] & 0xff) | (array[at + 1] << 8)));
  }

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
    if (array == null || FLOATS.length() < 4 || FLOATS.length() > 16) {
      super.scores(block, count, capacity, headDim, prepared, pOff, scores, work);
      return;
    }
    int blocks = headDim / BLOCK_VALUES;
    int rowBytes = blocks * Q8_0Codec.BYTES;
    if (FLOATS.length() == 16 && work.length >= 32) {
      scores16(array, count, headDim, prepared, pOff, scores, work);
      return;
    }
    for (int s = 0; s < count; s++) {
      float sum = 0f;
      for (int b = 0; b < blocks; b++) {
        int at = s * rowBytes + b * Q8_0Codec.BYTES;
        FloatVector partial = FloatVector.zero(FLOATS);
        for (int half = 0; half < 2; half++) {
          ByteVector codes = ByteVector.fromArray(BYTES16, array, at + QS + 16 * half);
          for (int part = 0; part < PARTS; part++) {
            FloatVector k = (FloatVector) codes.convertShape(VectorOperators.B2F, FLOATS, part);
            int j = pOff + b * BLOCK_VALUES + 16 * half + part * FLOATS.length();
            partial = FloatVector.fromArray(FLOATS, prepared, j).fma(k, partial);
          }
        }
        float sumi = AttentionKernels.sumLanes(partial);
        sum += sumi * (scaleAt(array, at) * prepared[pOff + headDim + b]);
      }
      scores[s] = sum;
    }
  }

  /**
   * {@link #scores} with 16 lanes: a row's 32-value blocks are consecutive 34-byte units over the
   * whole block ({@code rowBytes = blocks·34}), so unit {@code u} sits at byte {@code 34u} and
   * scores with query block {@code u % blocks}. Each unit's lanes are summed by {@code reduceLanes}
   * (they are exact integers in float, so any order gives the same sum), then each row adds its
   * blocks' terms in order from 0, as the per-unit loop does: the same bits.
   */
  private static void scores16(
      byte[] array,
      int count,
      int headDim,
      float[] prepared,
      int pOff,
      float[] scores,
      float[] work) {
    int blocks = headDim / BLOCK_VALUES;
    int units = count * blocks;
    float sum = 0f;
    // unit by unit from one call site (C2 inlines it; four call sites and a four-way lane sum did
    // not fit its inlining budget, and the vectors were boxed); the lanes hold exact integers
    // (|sum| < 2^24), so summing them in any order gives the same float as sumLanes
    for (int unit = 0; unit < units; unit++) {
      int b = unit % blocks;
      if (b == 0) {
        sum = 0f;
      }
      // the unit's 32 codes against its query block, written out here (a call returning a vector
      // that C2 does not inline boxes it)
      int at = unit * Q8_0Codec.BYTES + QS;
      int j = pOff + b * BLOCK_VALUES;
      FloatVector partial =
          FloatVector.fromArray(FLOATS, prepared, j).fma(b2f(array, at), FloatVector.zero(FLOATS));
      partial = FloatVector.fromArray(FLOATS, prepared, j + 16).fma(b2f(array, at + 16), partial);
      float sumi = partial.reduceLanes(VectorOperators.ADD);
      sum += sumi * (scaleAt(array, unit * Q8_0Codec.BYTES) * prepared[pOff + headDim + b]);
      if (b == blocks - 1) {
        scores[unit / blocks] = sum;
      }
    }
  }

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
    if (array == null || FLOATS.length() < 4 || FLOATS.length() > 16) {
      super.accumulateBlock(block, count, capacity, headDim, weights, wOff, acc, accOff, work);
      return;
    }
    int rowBytes = headDim / BLOCK_VALUES * Q8_0Codec.BYTES;
    int lanes = FLOATS.length();
    int j = 0;
    if (lanes == 16) {
      // two 32-value blocks (four vectors) at a time: four independent chains per slot, each
      // lane's the same fused multiply-adds in slot order as below, so the same bits
      for (; j + 4 * lanes <= headDim; j += 4 * lanes) {
        int a = accOff + j;
        FloatVector sum0 = FloatVector.fromArray(FLOATS, acc, a);
        FloatVector sum1 = FloatVector.fromArray(FLOATS, acc, a + 16);
        FloatVector sum2 = FloatVector.fromArray(FLOATS, acc, a + 32);
        FloatVector sum3 = FloatVector.fromArray(FLOATS, acc, a + 48);
        int first = j / BLOCK_VALUES * Q8_0Codec.BYTES;
        for (int s = 0; s < count; s++) {
          float weight = weights[wOff + s];
          if (weight != 0f) {
            int at = s * rowBytes + first;
            FloatVector wd0 = FloatVector.broadcast(FLOATS, weight * scaleAt(array, at));
            FloatVector wd1 =
                FloatVector.broadcast(FLOATS, weight * scaleAt(array, at + Q8_0Codec.BYTES));
            int q = at + QS;
            int q1 = q + Q8_0Codec.BYTES;
            sum0 = b2f(array, q).fma(wd0, sum0);
            sum1 = b2f(array, q + 16).fma(wd0, sum1);
            sum2 = b2f(array, q1).fma(wd1, sum2);
            sum3 = b2f(array, q1 + 16).fma(wd1, sum3);
          }
        }
        sum0.intoArray(acc, a);
        sum1.intoArray(acc, a + 16);
        sum2.intoArray(acc, a + 32);
        sum3.intoArray(acc, a + 48);
      }
    }
    for (; j < headDim; j += lanes) {
      int b = j / BLOCK_VALUES;
      int half = (j % BLOCK_VALUES) / 16;
      int part = (j % 16) / lanes;
      FloatVector sum = FloatVector.fromArray(FLOATS, acc, accOff + j);
      for (int s = 0; s < count; s++) {
        float weight = weights[wOff + s];
        if (weight != 0f) {
          int at = s * rowBytes + b * Q8_0Codec.BYTES;
          float wd = weight * scaleAt(array, at);
          ByteVector codes = ByteVector.fromArray(BYTES16, array, at + QS + 16 * half);
          FloatVector v = (FloatVector) codes.convertShape(VectorOperators.B2F, FLOATS, part);
          sum = v.fma(FloatVector.broadcast(FLOATS, wd), sum);
        }
      }
      sum.intoArray(acc, accOff + j);
    }
  }
}
