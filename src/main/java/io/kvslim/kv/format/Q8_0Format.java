package io.kvslim.kv.format;

import io.kvslim.kv.attention.AttentionKernels;
import io.kvslim.kv.attention.VectorKernels;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * llama.cpp {@code q8_0} (METHODS.md Q1): 34 bytes per 32 values, an fp16 scale {@code d =
 * amax/127} then 32 signed bytes {@code q_j = roundf(x_j/d)}; {@code x̂_j = q_j·d}. Quantization
 * follows ggml's {@code quantize_row_q8_0_ref}. Error bound per value: {@code |x − x̂| ≤ d/2} plus
 * the fp16 rounding of {@code d} times {@code |q_j| ≤ 127}, i.e. {@code ≤ d/2 + 127·|d − fp16(d)|}.
 */
public final class Q8_0Format extends GgmlBlockFormat {
  private static final VectorSpecies<Float> FLOATS = VectorKernels.FLOATS;
  private static final VectorSpecies<Byte> BYTES16 = ByteVector.SPECIES_128;
  private static final int PARTS = 16 / Math.min(16, FLOATS.length());

  Q8_0Format() {}

  @Override
  public String name() {
    return "q8_0";
  }

  @Override
  public int typeBytes() {
    return 34;
  }

  @Override
  protected int typeScaleBytes() {
    return 2;
  }

  @Override
  protected void encodeBlock(float[] x, int xOff, MemorySegment block, long offset) {
    float amax = 0f;
    for (int j = 0; j < BLOCK_VALUES; j++) {
      amax = Math.max(amax, Math.abs(x[xOff + j]));
    }
    float d = amax / 127;
    float id = d != 0f ? 1.0f / d : 0f;
    putScale(block, offset, d);
    for (int j = 0; j < BLOCK_VALUES; j++) {
      float q = HalfFloats.roundHalfAwayFromZero(x[xOff + j] * id);
      block.set(ValueLayout.JAVA_BYTE, offset + 2 + j, (byte) (int) q);
    }
  }

  @Override
  protected void decodeBlock(MemorySegment block, long offset, float[] dst, int dstOff) {
    float d = scale(block, offset);
    for (int j = 0; j < BLOCK_VALUES; j++) {
      dst[dstOff + j] = block.get(ValueLayout.JAVA_BYTE, offset + 2 + j) * d;
    }
  }

  @Override
  protected void decodeCodes(MemorySegment block, long offset, float[] dst, int dstOff) {
    for (int j = 0; j < BLOCK_VALUES; j++) {
      dst[dstOff + j] = block.get(ValueLayout.JAVA_BYTE, offset + 2 + j);
    }
  }

  @Override
  protected float integerDot(
      MemorySegment block, long offset, float[] qCodes, int qOff, float[] work) {
    if (FLOATS.length() < 4 || FLOATS.length() > 16) {
      return super.integerDot(block, offset, qCodes, qOff, work);
    }
    FloatVector sum = FloatVector.zero(FLOATS);
    for (int half = 0; half < 2; half++) {
      ByteVector codes = VectorKernels.bytes16(block, offset + 2 + 16 * half);
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
    float wd = weight * scale(block, offset);
    for (int half = 0; half < 2; half++) {
      ByteVector codes = VectorKernels.bytes16(block, offset + 2 + 16 * half);
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
    int rowBytes = blocks * 34;
    for (int s = 0; s < count; s++) {
      float sum = 0f;
      for (int b = 0; b < blocks; b++) {
        int at = s * rowBytes + b * 34;
        FloatVector partial = FloatVector.zero(FLOATS);
        for (int half = 0; half < 2; half++) {
          ByteVector codes = ByteVector.fromArray(BYTES16, array, at + 2 + 16 * half);
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
    int rowBytes = headDim / BLOCK_VALUES * 34;
    int lanes = FLOATS.length();
    for (int j = 0; j < headDim; j += lanes) {
      int b = j / BLOCK_VALUES;
      int half = (j % BLOCK_VALUES) / 16;
      int part = (j % 16) / lanes;
      FloatVector sum = FloatVector.fromArray(FLOATS, acc, accOff + j);
      for (int s = 0; s < count; s++) {
        float weight = weights[wOff + s];
        if (weight != 0f) {
          int at = s * rowBytes + b * 34;
          float wd = weight * scaleAt(array, at);
          ByteVector codes = ByteVector.fromArray(BYTES16, array, at + 2 + 16 * half);
          FloatVector v = (FloatVector) codes.convertShape(VectorOperators.B2F, FLOATS, part);
          sum = v.fma(FloatVector.broadcast(FLOATS, wd), sum);
        }
      }
      sum.intoArray(acc, accOff + j);
    }
  }
}
