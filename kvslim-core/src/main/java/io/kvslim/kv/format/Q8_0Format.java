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
    for (int j = 0; j < headDim; j += lanes) {
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
