package io.kvslim.kv.format;

import static io.kvslim.ggml.Q4_0Codec.QS;

import io.kvslim.ggml.Q4_0Codec;
import io.kvslim.kv.attention.AttentionKernels;
import io.kvslim.kv.attention.VectorKernels;
import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * llama.cpp {@code q4_0} (METHODS.md Q2): 18-byte blocks of 32 values read and written by {@link
 * Q4_0Codec} (ggml's {@code quantize_row_q4_0_ref}; error per value at most {@code |d|/2 + 8·|d −
 * fp16(d)|}, up to {@code |d|} for values opposite the extreme beyond {@code 7.5·|d|}). This class
 * adds the vector kernels: the integer dot with the prepared query and the weighted sum of values
 * decode the nibbles in registers.
 */
public final class Q4_0Format extends GgmlBlockFormat {
  private static final VectorSpecies<Float> FLOATS = VectorKernels.FLOATS;
  private static final VectorSpecies<Byte> BYTES16 = ByteVector.SPECIES_128;
  private static final VectorSpecies<Integer> INTS =
      VectorSpecies.of(int.class, VectorShape.forBitSize(FLOATS.vectorBitSize()));
  private static final int PARTS = 16 / Math.min(16, FLOATS.length());
  private static final boolean VECTORIZED = FLOATS.length() >= 4 && FLOATS.length() <= 16;

  Q4_0Format() {
    super("q4_0", Q4_0Codec.INSTANCE);
  }

  /**
   * Lanes {@code [part·L, part·L + L)} of the low nibbles (elements {@code j}) or the high ones
   * (elements {@code j+16}), centred on zero. The nibbles are split in int lanes: x86 has no byte
   * shift, so a byte-lane shift would not compile to vector code.
   */
  private static FloatVector nibbles(MemorySegment block, long offset, boolean high, int part) {
    ByteVector packed = VectorKernels.bytes16(block, offset + QS);
    IntVector ints = (IntVector) packed.convertShape(VectorOperators.B2I, INTS, part);
    IntVector codes = high ? ints.lanewise(VectorOperators.ASHR, 4).and(0x0f) : ints.and(0x0f);
    return (FloatVector) codes.sub(8).convert(VectorOperators.I2F, 0);
  }

  @Override
  protected float integerDot(
      MemorySegment block, long offset, float[] qCodes, int qOff, float[] work) {
    if (!VECTORIZED) {
      return super.integerDot(block, offset, qCodes, qOff, work);
    }
    FloatVector sum = FloatVector.zero(FLOATS);
    for (int half = 0; half < 2; half++) {
      for (int part = 0; part < PARTS; part++) {
        FloatVector k = nibbles(block, offset, half == 1, part);
        int j = qOff + 16 * half + part * FLOATS.length();
        sum = FloatVector.fromArray(FLOATS, qCodes, j).fma(k, sum);
      }
    }
    return AttentionKernels.sumLanes(sum);
  }

  @Override
  protected void accumulateBlock(
      MemorySegment block, long offset, float weight, float[] acc, int accOff, float[] work) {
    if (!VECTORIZED) {
      super.accumulateBlock(block, offset, weight, acc, accOff, work);
      return;
    }
    float wd = weight * Q4_0Codec.INSTANCE.d(block, offset);
    for (int half = 0; half < 2; half++) {
      for (int part = 0; part < PARTS; part++) {
        FloatVector v = nibbles(block, offset, half == 1, part);
        int j = accOff + 16 * half + part * FLOATS.length();
        v.fma(FloatVector.broadcast(FLOATS, wd), FloatVector.fromArray(FLOATS, acc, j))
            .intoArray(acc, j);
      }
    }
  }

  // Block loops over the block's byte array with 16 lanes (one 16-byte load holds a 32-value
  // block's low and high nibbles): the same operations in the same order as the per-row methods,
  // so the same bits.

  private static float scaleAt(byte[] array, int at) {
    return Float.float16ToFloat((short) ((array[at] & 0xff) | (array[at + 1] << 8)));
  }

  /** The 16 packed bytes at {@code at}: low nibbles elements 0..15, high nibbles 16..31. */
  private static ByteVector packed(byte[] array, int at) {
    return ByteVector.fromArray(BYTES16, array, at);
  }

  /** The low nibbles, centred on zero, as floats (byte lanes: exact small integers). */
  private static FloatVector low(ByteVector packed) {
    return (FloatVector)
        packed.and((byte) 0x0f).sub((byte) 8).convertShape(VectorOperators.B2F, FLOATS, 0);
  }

  /** The high nibbles, centred on zero, as floats. */
  private static FloatVector high(ByteVector packed) {
    return (FloatVector)
        packed
            .lanewise(VectorOperators.LSHR, 4)
            .and((byte) 0x0f)
            .sub((byte) 8)
            .convertShape(VectorOperators.B2F, FLOATS, 0);
  }

  /**
   * Row by row as {@link #dotRow}: a row's 32-value blocks are consecutive 18-byte units, each
   * unit's lanes summed by {@code reduceLanes} (exact integers in float, so any order gives the
   * same sum), then each row adds its blocks' terms in order from 0.
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
    if (array == null || FLOATS.length() != 16 || work.length < 32) {
      super.scores(block, count, capacity, headDim, prepared, pOff, scores, work);
      return;
    }
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
      float sumi = unitDot(array, unit, blocks, prepared, pOff).reduceLanes(VectorOperators.ADD);
      sum += sumi * (scaleAt(array, unit * Q4_0Codec.BYTES) * prepared[pOff + headDim + b]);
      if (b == blocks - 1) {
        scores[unit / blocks] = sum;
      }
    }
  }

  private static FloatVector unitDot(byte[] array, int u, int blocks, float[] prepared, int pOff) {
    ByteVector packed = packed(array, u * Q4_0Codec.BYTES + QS);
    int j = pOff + (u % blocks) * BLOCK_VALUES;
    return FloatVector.fromArray(FLOATS, prepared, j + 16)
        .fma(
            high(packed),
            FloatVector.fromArray(FLOATS, prepared, j).fma(low(packed), FloatVector.zero(FLOATS)));
  }

  /**
   * Slot by slot as {@link #accumulateRow}, the output of two 32-value blocks (four vectors) held
   * in registers across the slots: each lane the same fused multiply-adds in slot order.
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
    if (array == null || FLOATS.length() != 16 || headDim % 64 != 0) {
      super.accumulateBlock(block, count, capacity, headDim, weights, wOff, acc, accOff, work);
      return;
    }
    int rowBytes = rowBytes(headDim);
    for (int j = 0; j < headDim; j += 64) {
      int a = accOff + j;
      FloatVector sum0 = FloatVector.fromArray(FLOATS, acc, a);
      FloatVector sum1 = FloatVector.fromArray(FLOATS, acc, a + 16);
      FloatVector sum2 = FloatVector.fromArray(FLOATS, acc, a + 32);
      FloatVector sum3 = FloatVector.fromArray(FLOATS, acc, a + 48);
      int first = j / BLOCK_VALUES * Q4_0Codec.BYTES;
      for (int s = 0; s < count; s++) {
        float weight = weights[wOff + s];
        if (weight != 0f) {
          int at = s * rowBytes + first;
          int at1 = at + Q4_0Codec.BYTES;
          FloatVector wd0 = FloatVector.broadcast(FLOATS, weight * scaleAt(array, at));
          FloatVector wd1 = FloatVector.broadcast(FLOATS, weight * scaleAt(array, at1));
          ByteVector k0 = packed(array, at + QS);
          ByteVector k1 = packed(array, at1 + QS);
          sum0 = low(k0).fma(wd0, sum0);
          sum1 = high(k0).fma(wd0, sum1);
          sum2 = low(k1).fma(wd1, sum2);
          sum3 = high(k1).fma(wd1, sum3);
        }
      }
      sum0.intoArray(acc, a);
      sum1.intoArray(acc, a + 16);
      sum2.intoArray(acc, a + 32);
      sum3.intoArray(acc, a + 48);
    }
  }
}
