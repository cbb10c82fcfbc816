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
}
