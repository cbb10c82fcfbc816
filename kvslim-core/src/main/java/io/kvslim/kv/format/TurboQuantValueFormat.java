package io.kvslim.kv.format;

import io.kvslim.kv.attention.VectorKernels;
import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * TurboQuant values as vLLM stores them (METHODS.md N1 step 5; vllm-project/vllm, {@code
 * vllm/v1/attention/ops/triton_turboquant_store.py}, {@code _store_quantized_value}): not rotated;
 * one asymmetric uniform group per token over all d channels: {@code s = max((max − min)/(2^b − 1),
 * 1e-8)} (the test is {@code s > 1e-8}), {@code code = clamp(⌊(v − min)/s + 0.5⌋, 0, 2^b − 1)} with
 * the float {@code s} and {@code min}, then {@code s} and {@code min} stored as fp16 (round to
 * nearest); dequantized {@code v̂ = code·s₁₆ + min₁₆} ({@code triton_turboquant_decode.py}, {@code
 * _tq_decode_stage1}).
 *
 * <p>Not KIVI's value format with one group of d channels ({@link KiviValueFormat}): that one
 * rounds the zero point down and the scale up to keep its bound and has no 3-bit codes; this one
 * keeps vLLM's rounding and layout. Bound: {@code |v − v̂| ≤ s/2} plus the fp16 rounding of {@code
 * s} (times the code) and of {@code min}.
 *
 * <p>Row layout: {@code ⌈d·bits/8⌉} bytes of codes ({@link PackedCodes}, little-endian), then
 * {@code s} and {@code min} as fp16: {@code ⌈d·bits/8⌉ + 4} bytes per token. The fused weighted sum
 * reads the codes directly and adds {@code (w·s)·code + w·min}.
 */
public final class TurboQuantValueFormat extends RowFormat {
  private final int bits;

  /**
   * @throws IllegalArgumentException unless {@code bits} is 2, 3 or 4
   */
  public TurboQuantValueFormat(int bits) {
    if (bits < 2 || bits > 4) {
      throw new IllegalArgumentException(
          "turboquant values need 2, 3 or 4 bits per channel, got " + bits);
    }
    this.bits = bits;
  }

  public int bits() {
    return bits;
  }

  @Override
  public String name() {
    return "tq_v" + bits;
  }

  public int codeBytes(int headDim) {
    return PackedCodes.bytes(headDim, bits);
  }

  @Override
  public int rowBytes(int headDim) {
    return codeBytes(headDim) + 4;
  }

  @Override
  protected int rowScaleBytes(int headDim) {
    return 4;
  }

  @Override
  protected void encodeRow(float[] src, int srcOff, MemorySegment block, long offset, int headDim) {
    float min = Float.POSITIVE_INFINITY;
    float max = Float.NEGATIVE_INFINITY;
    for (int j = 0; j < headDim; j++) {
      min = Math.min(min, src[srcOff + j]);
      max = Math.max(max, src[srcOff + j]);
    }
    int top = (1 << bits) - 1;
    float scale = (max - min) / top;
    scale = scale > 1e-8f ? scale : 1e-8f;
    int[] codes = PackedCodes.scratch(headDim);
    for (int j = 0; j < headDim; j++) {
      codes[j] = Math.min(top, Math.max(0, (int) ((src[srcOff + j] - min) / scale + 0.5f)));
    }
    PackedCodes.pack(codes, headDim, bits, block, offset);
    long at = offset + codeBytes(headDim);
    block.set(F16Format.SHORT_LE, at, HalfFloats.toF16(scale));
    block.set(F16Format.SHORT_LE, at + 2, HalfFloats.toF16(min));
  }

  /** The fp16 scale {@code s} of the row at {@code offset}. */
  float scale(MemorySegment block, long offset, int headDim) {
    return HalfFloats.fromF16(
        AsymmetricCodes.shortAt(block, VectorKernels.array(block), offset + codeBytes(headDim)));
  }

  /** The fp16 zero point (the row's minimum). */
  float zero(MemorySegment block, long offset, int headDim) {
    return HalfFloats.fromF16(
        AsymmetricCodes.shortAt(
            block, VectorKernels.array(block), offset + codeBytes(headDim) + 2));
  }

  /** Scale of the token in {@code slot} (for bound checks). */
  public float scale(MemorySegment block, int slot, int headDim) {
    return scale(block, (long) slot * rowBytes(headDim), headDim);
  }

  @Override
  protected void decodeRow(MemorySegment block, long offset, int headDim, float[] dst, int dstOff) {
    PackedCodes.lookup(block, offset, headDim, bits, null, dst, dstOff);
    float scale = scale(block, offset, headDim);
    float zero = zero(block, offset, headDim);
    for (int j = 0; j < headDim; j++) {
      dst[dstOff + j] = dst[dstOff + j] * scale + zero;
    }
  }

  @Override
  protected float dotRow(
      MemorySegment block, long offset, int headDim, float[] q, int qOff, float[] work) {
    PackedCodes.lookup(block, offset, headDim, bits, null, work, 0);
    float codeDot = VectorKernels.dot(q, qOff, work, 0, headDim);
    float querySum = 0f;
    for (int j = 0; j < headDim; j++) {
      querySum += q[qOff + j];
    }
    return scale(block, offset, headDim) * codeDot + zero(block, offset, headDim) * querySum;
  }

  /** {@code acc += (w·s)·code + w·min}, lane by lane with a fused multiply-add. */
  @Override
  protected void accumulateRow(
      MemorySegment block,
      long offset,
      int headDim,
      float weight,
      float[] acc,
      int accOff,
      float[] work) {
    PackedCodes.lookup(block, offset, headDim, bits, null, work, 0);
    float scaled = weight * scale(block, offset, headDim);
    float shift = weight * zero(block, offset, headDim);
    add(work, scaled, shift, acc, accOff, headDim);
  }

  /**
   * {@link #accumulateRow} for the block's slots with a nonzero weight, in slot order, a vector of
   * channels at a time: each slot's {@code w·s} and {@code w·min} computed once, then for each
   * vector of channels the sum is kept in a register while every slot's codes are cut from the
   * packed bytes ({@link CodeWords}) and added with the same fused multiply-add and add per lane as
   * {@link #add}: the same bits.
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
    if (array == null || !CodeWords.applies(bits, headDim) || work.length < 3 * count) {
      super.accumulateBlock(block, count, capacity, headDim, weights, wOff, acc, accOff, work);
      return;
    }
    int rowBytes = rowBytes(headDim);
    int codeBytes = codeBytes(headDim);
    int used = 0;
    for (int s = 0; s < count; s++) {
      float weight = weights[wOff + s];
      if (weight != 0f) {
        int offset = s * rowBytes;
        int at = offset + codeBytes;
        float scale = HalfFloats.fromF16((short) ((array[at] & 0xff) | array[at + 1] << 8));
        float zero = HalfFloats.fromF16((short) ((array[at + 2] & 0xff) | array[at + 3] << 8));
        work[3 * used] = weight * scale;
        work[3 * used + 1] = weight * zero;
        work[3 * used + 2] = Float.intBitsToFloat(offset); // the row's byte offset, carried exactly
        used++;
      }
    }
    addInRegisters(array, used, headDim, CodeWords.of(bits), work, acc, accOff);
  }

  /**
   * {@link #accumulateBlock}'s register loop: one body, the code constants hoisted; four vectors of
   * the output held over the slots (independent sums, each slot added in order as before), then one
   * vector at a time. Written out without helpers (C2 inlines none of them reliably here).
   */
  private static void addInRegisters(
      byte[] array, int used, int headDim, CodeWords w, float[] work, float[] acc, int accOff) {
    VectorSpecies<Float> species = CodeWords.FLOATS;
    jdk.incubator.vector.VectorSpecies<Integer> ints = CodeWords.INTS;
    int lanes = CodeWords.LANES;
    int highByte = w.highByte;
    int mask = w.mask;
    int vb = w.vectorBytes;
    jdk.incubator.vector.IntVector shifts = w.shifts;
    jdk.incubator.vector.VectorMask<Integer> high = w.high;
    int j = 0;
    int first = 0;
    for (; j + 4 * lanes <= headDim; j += 4 * lanes, first += 4 * vb) {
      FloatVector a0 = FloatVector.fromArray(species, acc, accOff + j);
      FloatVector a1 = FloatVector.fromArray(species, acc, accOff + j + lanes);
      FloatVector a2 = FloatVector.fromArray(species, acc, accOff + j + 2 * lanes);
      FloatVector a3 = FloatVector.fromArray(species, acc, accOff + j + 3 * lanes);
      for (int k = 0; k < used; k++) {
        int at = Float.floatToRawIntBits(work[3 * k + 2]) + first;
        FloatVector vs = FloatVector.broadcast(species, work[3 * k]);
        FloatVector vz = FloatVector.broadcast(species, work[3 * k + 1]);
        a0 =
            ((FloatVector)
                    jdk.incubator.vector.IntVector.broadcast(ints, CodeWords.word(array, at + 0))
                        .blend(
                            jdk.incubator.vector.IntVector.broadcast(
                                ints, CodeWords.word(array, at + 0 + highByte)),
                            high)
                        .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
                        .and(mask)
                        .convert(jdk.incubator.vector.VectorOperators.I2F, 0))
                .fma(vs, vz)
                .add(a0);
        a1 =
            ((FloatVector)
                    jdk.incubator.vector.IntVector.broadcast(ints, CodeWords.word(array, at + vb))
                        .blend(
                            jdk.incubator.vector.IntVector.broadcast(
                                ints, CodeWords.word(array, at + vb + highByte)),
                            high)
                        .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
                        .and(mask)
                        .convert(jdk.incubator.vector.VectorOperators.I2F, 0))
                .fma(vs, vz)
                .add(a1);
        a2 =
            ((FloatVector)
                    jdk.incubator.vector.IntVector.broadcast(
                            ints, CodeWords.word(array, at + 2 * vb))
                        .blend(
                            jdk.incubator.vector.IntVector.broadcast(
                                ints, CodeWords.word(array, at + 2 * vb + highByte)),
                            high)
                        .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
                        .and(mask)
                        .convert(jdk.incubator.vector.VectorOperators.I2F, 0))
                .fma(vs, vz)
                .add(a2);
        a3 =
            ((FloatVector)
                    jdk.incubator.vector.IntVector.broadcast(
                            ints, CodeWords.word(array, at + 3 * vb))
                        .blend(
                            jdk.incubator.vector.IntVector.broadcast(
                                ints, CodeWords.word(array, at + 3 * vb + highByte)),
                            high)
                        .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
                        .and(mask)
                        .convert(jdk.incubator.vector.VectorOperators.I2F, 0))
                .fma(vs, vz)
                .add(a3);
      }
      a0.intoArray(acc, accOff + j);
      a1.intoArray(acc, accOff + j + lanes);
      a2.intoArray(acc, accOff + j + 2 * lanes);
      a3.intoArray(acc, accOff + j + 3 * lanes);
    }
    for (; j < headDim; j += lanes, first += vb) {
      FloatVector a0 = FloatVector.fromArray(species, acc, accOff + j);
      for (int k = 0; k < used; k++) {
        int at = Float.floatToRawIntBits(work[3 * k + 2]) + first;
        FloatVector vs = FloatVector.broadcast(species, work[3 * k]);
        FloatVector vz = FloatVector.broadcast(species, work[3 * k + 1]);
        a0 =
            ((FloatVector)
                    jdk.incubator.vector.IntVector.broadcast(ints, CodeWords.word(array, at + 0))
                        .blend(
                            jdk.incubator.vector.IntVector.broadcast(
                                ints, CodeWords.word(array, at + 0 + highByte)),
                            high)
                        .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
                        .and(mask)
                        .convert(jdk.incubator.vector.VectorOperators.I2F, 0))
                .fma(vs, vz)
                .add(a0);
      }
      a0.intoArray(acc, accOff + j);
    }
  }

  /** {@code acc[accOff..+headDim) += scaled·codes + shift}, fused lane by lane. */
  private static void add(
      float[] codes, float scaled, float shift, float[] acc, int accOff, int headDim) {
    VectorSpecies<Float> species = VectorKernels.FLOATS;
    int j = 0;
    FloatVector vs = FloatVector.broadcast(species, scaled);
    FloatVector vz = FloatVector.broadcast(species, shift);
    for (int end = species.loopBound(headDim); j < end; j += species.length()) {
      FloatVector a = FloatVector.fromArray(species, acc, accOff + j);
      FloatVector.fromArray(species, codes, j).fma(vs, vz).add(a).intoArray(acc, accOff + j);
    }
    for (; j < headDim; j++) {
      acc[accOff + j] += Math.fma(codes[j], scaled, shift);
    }
  }

  /**
   * Each slot's codes, scale and zero point are read once for all rows, then every row adds them
   * exactly as {@link #accumulateRow} does (bit for bit per row).
   */
  @Override
  public void accumulateBlockRows(
      MemorySegment block,
      int count,
      int capacity,
      int headDim,
      float[] weights,
      int wOff,
      int wStride,
      int[] rows,
      int rowCount,
      float[] acc,
      int accStride,
      float[] work) {
    if (rowCount < 2) {
      super.accumulateBlockRows(
          block, count, capacity, headDim, weights, wOff, wStride, rows, rowCount, acc, accStride,
          work);
      return;
    }
    int rowBytes = rowBytes(headDim);
    for (int s = 0; s < count; s++) {
      long offset = (long) s * rowBytes;
      boolean decoded = false;
      float scale = 0f;
      float zero = 0f;
      for (int i = 0; i < rowCount; i++) {
        int r = rows[i];
        float weight = weights[wOff + r * wStride + s];
        if (weight == 0f) {
          continue;
        }
        if (!decoded) {
          PackedCodes.lookup(block, offset, headDim, bits, null, work, 0);
          scale = scale(block, offset, headDim);
          zero = zero(block, offset, headDim);
          decoded = true;
        }
        add(work, weight * scale, weight * zero, acc, r * accStride, headDim);
      }
    }
  }

  @Override
  public boolean equals(Object other) {
    return other instanceof TurboQuantValueFormat o && o.bits == bits;
  }

  @Override
  public int hashCode() {
    return bits;
  }
}
