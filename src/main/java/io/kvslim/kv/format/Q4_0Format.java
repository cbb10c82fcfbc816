package io.kvslim.kv.format;

import io.kvslim.kv.attention.AttentionKernels;
import io.kvslim.kv.attention.VectorKernels;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * llama.cpp {@code q4_0} (METHODS.md Q2): 18 bytes per 32 values, an fp16 scale {@code d = max/−8}
 * ({@code max} the value of largest magnitude, with its sign) then 16 bytes whose low nibble is
 * element {@code j} and high nibble element {@code j+16}; {@code q_j = min(15, trunc(x_j/d +
 * 8.5))}, {@code x̂_j = (q_j − 8)·d}. Follows ggml's {@code quantize_row_q4_0_ref}. Error bound:
 * {@code |x − x̂| ≤ |d|/2} plus {@code 8·|d − fp16(d)|}, except for values on the side opposite the
 * extreme beyond {@code 7.5·|d|}, which clamp to code 15: up to {@code |d|} (the extreme itself
 * maps to q = 0 exactly).
 */
public final class Q4_0Format extends GgmlBlockFormat {
  private static final VectorSpecies<Float> FLOATS = VectorKernels.FLOATS;
  private static final VectorSpecies<Byte> BYTES16 = ByteVector.SPECIES_128;
  private static final VectorSpecies<Integer> INTS =
      VectorSpecies.of(int.class, VectorShape.forBitSize(FLOATS.vectorBitSize()));
  private static final int PARTS = 16 / Math.min(16, FLOATS.length());
  private static final boolean VECTORIZED = FLOATS.length() >= 4 && FLOATS.length() <= 16;

  Q4_0Format() {}

  @Override
  public String name() {
    return "q4_0";
  }

  @Override
  public int typeBytes() {
    return 18;
  }

  @Override
  protected int typeScaleBytes() {
    return 2;
  }

  @Override
  protected void encodeBlock(float[] x, int xOff, MemorySegment block, long offset) {
    float amax = 0f;
    float max = 0f;
    for (int j = 0; j < BLOCK_VALUES; j++) {
      float v = x[xOff + j];
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    float d = max / -8;
    float id = d != 0f ? 1.0f / d : 0f;
    putScale(block, offset, d);
    for (int j = 0; j < 16; j++) {
      int low = Math.min(15, (byte) (int) (x[xOff + j] * id + 8.5f));
      int high = Math.min(15, (byte) (int) (x[xOff + 16 + j] * id + 8.5f));
      block.set(ValueLayout.JAVA_BYTE, offset + 2 + j, (byte) (low | (high << 4)));
    }
  }

  @Override
  protected void decodeBlock(MemorySegment block, long offset, float[] dst, int dstOff) {
    float d = scale(block, offset);
    for (int j = 0; j < 16; j++) {
      int packed = block.get(ValueLayout.JAVA_BYTE, offset + 2 + j) & 0xff;
      dst[dstOff + j] = ((packed & 0x0f) - 8) * d;
      dst[dstOff + 16 + j] = ((packed >>> 4) - 8) * d;
    }
  }

  /**
   * Lanes {@code [part·L, part·L + L)} of the low nibbles (elements {@code j}) or the high ones
   * (elements {@code j+16}), centred on zero. The nibbles are split in int lanes: x86 has no byte
   * shift, so a byte-lane shift would not compile to vector code.
   */
  private static FloatVector nibbles(MemorySegment block, long offset, boolean high, int part) {
    ByteVector packed = VectorKernels.bytes16(block, offset + 2);
    IntVector ints = (IntVector) packed.convertShape(VectorOperators.B2I, INTS, part);
    IntVector codes = high ? ints.lanewise(VectorOperators.ASHR, 4).and(0x0f) : ints.and(0x0f);
    return (FloatVector) codes.sub(8).convert(VectorOperators.I2F, 0);
  }

  @Override
  protected void decodeCodes(MemorySegment block, long offset, float[] dst, int dstOff) {
    for (int j = 0; j < 16; j++) {
      int packed = block.get(ValueLayout.JAVA_BYTE, offset + 2 + j) & 0xff;
      dst[dstOff + j] = (packed & 0x0f) - 8;
      dst[dstOff + 16 + j] = (packed >>> 4) - 8;
    }
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
    float wd = weight * scale(block, offset);
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
