package io.kvslim.kv.format;

import io.kvslim.ggml.LittleEndian;
import io.kvslim.kv.attention.VectorKernels;
import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * KIVI values (Liu et al. 2024, arXiv:2402.02750, §3.3 and METHODS.md Q3): values are quantized
 * <em>per token</em>, in groups of {@code group} consecutive channels, because value errors act per
 * token in the attention output. Asymmetric {@code bits}-bit codes with fp16 zero point and scale
 * per group ({@link AsymmetricCodes}); bound {@code |x − x̂| ≤ s_g/2}. With {@code bits = 1}
 * (AsymKV, METHODS.md Q7) each element decodes to its group's stored min or max; the fused kernels
 * read the codes sixteen bits a vector.
 *
 * <p>Row layout: {@code headDim/group} pairs (zero point, scale) as fp16, then {@code
 * headDim·bits/8} bytes of codes. The fused weighted sum adds {@code (w·s_g)·code + w·z_g}.
 *
 * <p>Written-out SIMD kernels (Vector API): longer than ~500 lines on purpose.
 */
public final class KiviValueFormat extends RowFormat {
  private final int bits;
  private final int group;

  public KiviValueFormat(int bits, int group) {
    AsymmetricCodes.checkBits("kivi values", bits);
    if (group <= 0 || group * bits % 8 != 0) {
      throw new IllegalArgumentException(
          "kivi values need a channel group whose codes fill whole bytes, got group " + group);
    }
    this.bits = bits;
    this.group = group;
  }

  public int bits() {
    return bits;
  }

  public int group() {
    return group;
  }

  @Override
  public String name() {
    return "kivi_v" + bits + "_g" + group;
  }

  @Override
  public int rowBytes(int headDim) {
    return rowScaleBytes(headDim) + headDim * bits / 8;
  }

  @Override
  protected int rowScaleBytes(int headDim) {
    return headDim / group * 4;
  }

  @Override
  public void checkHeadDim(int headDim) {
    if (headDim <= 0 || headDim % group != 0) {
      throw new IllegalArgumentException(
          "format "
              + name()
              + " needs a head dimension that is a multiple of "
              + group
              + ", got "
              + headDim);
    }
  }

  @Override
  protected void encodeRow(float[] src, int srcOff, MemorySegment block, long offset, int headDim) {
    long codes = offset + rowScaleBytes(headDim);
    if (bits <= 2 && group % 16 == 0 && AsymmetricCodes.packs2()) {
      // sixteen channels a vector (AsymmetricCodes.pack1/pack2): the same minimum, maximum, codes
      VectorSpecies<Float> species = VectorKernels.FLOATS;
      for (int g = 0; g < headDim / group; g++) {
        int first = srcOff + g * group;
        FloatVector min = FloatVector.fromArray(species, src, first);
        FloatVector max = min;
        for (int c = 16; c < group; c += 16) {
          FloatVector v = FloatVector.fromArray(species, src, first + c);
          min = min.min(v);
          max = max.max(v);
        }
        short zeroBits = AsymmetricCodes.zeroPoint(min.reduceLanes(VectorOperators.MIN));
        float zero = HalfFloats.fromF16(zeroBits);
        short scaleBits = AsymmetricCodes.scale(zero, max.reduceLanes(VectorOperators.MAX), bits);
        float scale = HalfFloats.fromF16(scaleBits);
        block.set(F16Format.SHORT_LE, offset + 4L * g, zeroBits);
        block.set(F16Format.SHORT_LE, offset + 4L * g + 2, scaleBits);
        for (int c = 0; c < group; c += 16) {
          if (bits == 1) {
            block.set(
                F16Format.SHORT_LE,
                codes + (g * group + c) / 8,
                (short) AsymmetricCodes.pack1(src, first + c, zero, scale));
          } else {
            block.set(
                LittleEndian.INT,
                codes + (g * group + c) / 4,
                AsymmetricCodes.pack2(src, first + c, zero, scale));
          }
        }
      }
      return;
    }
    for (int g = 0; g < headDim / group; g++) {
      float min = Float.POSITIVE_INFINITY;
      float max = Float.NEGATIVE_INFINITY;
      for (int c = g * group; c < (g + 1) * group; c++) {
        min = Math.min(min, src[srcOff + c]);
        max = Math.max(max, src[srcOff + c]);
      }
      short zeroBits = AsymmetricCodes.zeroPoint(min);
      float zero = HalfFloats.fromF16(zeroBits);
      short scaleBits = AsymmetricCodes.scale(zero, max, bits);
      float scale = HalfFloats.fromF16(scaleBits);
      block.set(F16Format.SHORT_LE, offset + 4L * g, zeroBits);
      block.set(F16Format.SHORT_LE, offset + 4L * g + 2, scaleBits);
      for (int c = g * group; c < (g + 1) * group; c++) {
        AsymmetricCodes.put(
            block, codes, c, bits, AsymmetricCodes.code(src[srcOff + c], zero, scale, bits));
      }
    }
  }

  /**
   * Channel {@code c} of the row at {@code offset} as {@link #decodeRow} writes it (the same
   * operations: the code as a float, times the group's scale, plus its zero point).
   */
  float decodedAt(MemorySegment block, long offset, int headDim, int c) {
    float code = AsymmetricCodes.get(block, offset + rowScaleBytes(headDim), c, bits);
    int g = c / group;
    return code * groupScale(block, offset, g) + groupZeroPoint(block, offset, g);
  }

  /**
   * {@link #decodedAt(MemorySegment, long, int, int)} from a block's array: the row at byte {@code
   * rowAt}, whose codes follow {@code scaleBytes} ({@link #rowScaleBytes}) of scales (the group by
   * a shift when the group size is a power of two).
   */
  float decodedAt(byte[] array, int rowAt, int scaleBytes, int c) {
    int bit = c * bits;
    int at = rowAt + scaleBytes + (bit >>> 3);
    float code = ((array[at] & 0xff) >>> (bit & 7)) & ((1 << bits) - 1);
    int g = (group & (group - 1)) == 0 ? c >>> Integer.numberOfTrailingZeros(group) : c / group;
    return code * scaleAt(null, array, rowAt, g) + zeroAt(null, array, rowAt, g);
  }

  /** Scale of channel group {@code g} of the row at {@code offset}. */
  float groupScale(MemorySegment block, long offset, int g) {
    return scaleAt(block, VectorKernels.array(block), offset, g);
  }

  float groupZeroPoint(MemorySegment block, long offset, int g) {
    return zeroAt(block, VectorKernels.array(block), offset, g);
  }

  /** Scale of channel group {@code g} of the token in {@code slot} (for bound checks). */
  public float groupScale(MemorySegment block, int slot, int headDim, int g) {
    return groupScale(block, (long) slot * rowBytes(headDim), g);
  }

  @Override
  protected void decodeRow(MemorySegment block, long offset, int headDim, float[] dst, int dstOff) {
    long codes = offset + rowScaleBytes(headDim);
    AsymmetricCodes.unpack(block, codes, headDim, bits, dst, dstOff);
    for (int g = 0; g < headDim / group; g++) {
      float scale = groupScale(block, offset, g);
      float zero = groupZeroPoint(block, offset, g);
      for (int c = g * group; c < (g + 1) * group; c++) {
        dst[dstOff + c] = dst[dstOff + c] * scale + zero;
      }
    }
  }

  @Override
  protected float dotRow(
      MemorySegment block, long offset, int headDim, float[] q, int qOff, float[] work) {
    AsymmetricCodes.unpack(block, offset + rowScaleBytes(headDim), headDim, bits, work, 0);
    float sum = 0f;
    for (int g = 0; g < headDim / group; g++) {
      float codeDot = VectorKernels.dot(q, qOff + g * group, work, g * group, group);
      float querySum = 0f;
      for (int c = g * group; c < (g + 1) * group; c++) {
        querySum += q[qOff + c];
      }
      sum += groupScale(block, offset, g) * codeDot + groupZeroPoint(block, offset, g) * querySum;
    }
    return sum;
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
    int lanes = VectorKernels.FLOATS.length();
    if (AsymmetricCodes.vectorizable(bits) && group % lanes == 0) {
      long codes = offset + rowScaleBytes(headDim);
      for (int g = 0; g < headDim / group; g++) {
        FloatVector scaled =
            FloatVector.broadcast(VectorKernels.FLOATS, weight * groupScale(block, offset, g));
        FloatVector shift =
            FloatVector.broadcast(VectorKernels.FLOATS, weight * groupZeroPoint(block, offset, g));
        for (int c = g * group; c < (g + 1) * group; c += lanes) {
          FloatVector a = FloatVector.fromArray(VectorKernels.FLOATS, acc, accOff + c);
          AsymmetricCodes.codes(block, codes, c, bits)
              .fma(scaled, shift)
              .add(a)
              .intoArray(acc, accOff + c);
        }
      }
      return;
    }
    AsymmetricCodes.unpack(block, offset + rowScaleBytes(headDim), headDim, bits, work, 0);
    for (int g = 0; g < headDim / group; g++) {
      float scaled = weight * groupScale(block, offset, g);
      float shift = weight * groupZeroPoint(block, offset, g);
      for (int c = g * group; c < (g + 1) * group; c++) {
        acc[accOff + c] += scaled * work[c] + shift;
      }
    }
  }

  /**
   * Each slot's codes, scales and zero points are read once for all rows, then every row adds them
   * exactly as {@link #accumulateRow} does: {@code (w·s_g)·code + w·z_g} fused, plus the sum, where
   * that path is vectorized; {@code sum + ((w·s_g)·code + w·z_g)} without fusion otherwise (the
   * same IEEE operations lane by lane).
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
    int groups = headDim / group;
    // each row alone through the register-held kernel where it applies (for a GQA group too: the
    // block is read again from L1, cheaper than adding each decoded slot to every row's output in
    // memory); the same bits as each row's accumulateBlock
    if (rowCount >= 1
        && accumulateOneRow(
            block,
            count,
            headDim,
            weights,
            wOff + rows[0] * wStride,
            acc,
            rows[0] * accStride,
            work)) {
      for (int i = 1; i < rowCount; i++) {
        accumulateOneRow(
            block,
            count,
            headDim,
            weights,
            wOff + rows[i] * wStride,
            acc,
            rows[i] * accStride,
            work);
      }
      return;
    }
    if (rowCount < 2 || work.length < headDim + 2 * groups) {
      super.accumulateBlockRows(
          block, count, capacity, headDim, weights, wOff, wStride, rows, rowCount, acc, accStride,
          work);
      return;
    }
    VectorSpecies<Float> species = VectorKernels.FLOATS;
    int lanes = species.length();
    boolean fused = AsymmetricCodes.vectorizable(bits) && group % lanes == 0;
    int rowBytes = rowBytes(headDim);
    int scales = headDim;
    int zeros = headDim + groups;
    for (int s = 0; s < count; s++) {
      long offset = (long) s * rowBytes;
      boolean decoded = false;
      for (int i = 0; i < rowCount; i++) {
        int r = rows[i];
        float weight = weights[wOff + r * wStride + s];
        if (weight == 0f) {
          continue;
        }
        if (!decoded) {
          AsymmetricCodes.unpack(block, offset + rowScaleBytes(headDim), headDim, bits, work, 0);
          for (int g = 0; g < groups; g++) {
            work[scales + g] = groupScale(block, offset, g);
            work[zeros + g] = groupZeroPoint(block, offset, g);
          }
          decoded = true;
        }
        int accOff = r * accStride;
        for (int g = 0; g < groups; g++) {
          float scaled = weight * work[scales + g];
          float shift = weight * work[zeros + g];
          int c = g * group;
          int end = c + group;
          if (fused) {
            FloatVector vs = FloatVector.broadcast(species, scaled);
            FloatVector vz = FloatVector.broadcast(species, shift);
            for (; c < end; c += lanes) {
              FloatVector a = FloatVector.fromArray(species, acc, accOff + c);
              FloatVector.fromArray(species, work, c).fma(vs, vz).add(a).intoArray(acc, accOff + c);
            }
          } else {
            for (; c + lanes <= end; c += lanes) {
              FloatVector a = FloatVector.fromArray(species, acc, accOff + c);
              a.add(FloatVector.fromArray(species, work, c).mul(scaled).add(shift))
                  .intoArray(acc, accOff + c);
            }
            for (; c < end; c++) {
              acc[accOff + c] += scaled * work[c] + shift;
            }
          }
        }
      }
    }
  }

  /**
   * One query row over a block, the row's output kept in four vector registers per 4·lanes channels
   * across all slots instead of loaded and stored per slot: each lane adds {@code (w·s_g)·code +
   * w·z_g} slot by slot exactly as {@link #accumulateRow}. Per run of slots, the products {@code
   * w·s_g} and {@code w·z_g} are computed first into {@code work} (a row's (zero point, scale)
   * pairs read as one word per two groups); the vector loop then only broadcasts them. Returns
   * false (nothing done) where the codes do not vectorize that way.
   */
  boolean accumulateOneRow(
      MemorySegment block,
      int count,
      int headDim,
      float[] weights,
      int w0,
      float[] acc,
      int accOff,
      float[] work) {
    int lanes = VectorKernels.FLOATS.length();
    byte[] array = VectorKernels.array(block);
    int groups = headDim / group;
    int run = work.length / (2 * groups); // slots whose products fit in work at once
    if (array == null
        || bits != 2
        || (lanes != 16 && lanes != 8)
        || group % lanes != 0
        || headDim % (4 * lanes) != 0
        || run == 0) {
      return accumulateOneRowAnyWidth(block, count, headDim, weights, w0, acc, accOff);
    }
    for (int first = 0; first < count; first += run) {
      int last = Math.min(count, first + run);
      products(array, first, last, headDim, weights, w0, work);
      for (int c0 = 0; c0 < headDim; c0 += 4 * lanes) {
        addRun(array, first, last, headDim, c0, weights, w0, acc, accOff + c0, work);
      }
    }
    return true;
  }

  /**
   * One query row over a block, the row's output kept in four vector registers per 4·lanes channels
   * across all slots instead of loaded and stored per slot: each lane adds {@code (w·s_g)·code +
   * w·z_g} slot by slot exactly as {@link #accumulateRow}. A group's scale and zero point are read
   * once per slot, however many of the four vectors it spans. Returns false (nothing done) where
   * the codes do not vectorize that way. (Other widths and lane counts than {@link #addRun2}'s.)
   */
  private boolean accumulateOneRowAnyWidth(
      MemorySegment block,
      int count,
      int headDim,
      float[] weights,
      int w0,
      float[] acc,
      int accOff) {
    if (bits == 4 && VectorKernels.FLOATS.length() == 8) {
      return accumulateOneRow4x8(block, count, headDim, weights, w0, acc, accOff);
    }
    VectorSpecies<Float> species = VectorKernels.FLOATS;
    int lanes = species.length();
    byte[] array = VectorKernels.array(block);
    if (array == null
        || !AsymmetricCodes.vectorizable(bits)
        || group % lanes != 0
        || headDim % (4 * lanes) != 0) {
      return false;
    }
    int rowBytes = rowBytes(headDim);
    int scaleBytes = rowScaleBytes(headDim);
    int wordBits = lanes * bits;
    int step = wordBits / 8;
    for (int c0 = 0; c0 < headDim; c0 += 4 * lanes) {
      // groups only grow along the channels, so a vector shares its group with the one before
      // exactly when their group numbers are equal
      int g0 = c0 / group;
      int g1 = (c0 + lanes) / group;
      int g2 = (c0 + 2 * lanes) / group;
      int g3 = (c0 + 3 * lanes) / group;
      long codeAt = scaleBytes + (long) c0 * bits / 8;
      FloatVector a0 = FloatVector.fromArray(species, acc, accOff + c0);
      FloatVector a1 = FloatVector.fromArray(species, acc, accOff + c0 + lanes);
      FloatVector a2 = FloatVector.fromArray(species, acc, accOff + c0 + 2 * lanes);
      FloatVector a3 = FloatVector.fromArray(species, acc, accOff + c0 + 3 * lanes);
      for (int s = 0; s < count; s++) {
        float weight = weights[w0 + s];
        if (weight == 0f) {
          continue;
        }
        long off = (long) s * rowBytes;
        long at = off + codeAt;
        FloatVector s0 = FloatVector.broadcast(species, weight * scaleAt(block, array, off, g0));
        FloatVector z0 = FloatVector.broadcast(species, weight * zeroAt(block, array, off, g0));
        FloatVector s1 = s0;
        FloatVector z1 = z0;
        if (g1 != g0) {
          s1 = FloatVector.broadcast(species, weight * scaleAt(block, array, off, g1));
          z1 = FloatVector.broadcast(species, weight * zeroAt(block, array, off, g1));
        }
        FloatVector s2 = s1;
        FloatVector z2 = z1;
        if (g2 != g1) {
          s2 = FloatVector.broadcast(species, weight * scaleAt(block, array, off, g2));
          z2 = FloatVector.broadcast(species, weight * zeroAt(block, array, off, g2));
        }
        FloatVector s3 = s2;
        FloatVector z3 = z2;
        if (g3 != g2) {
          s3 = FloatVector.broadcast(species, weight * scaleAt(block, array, off, g3));
          z3 = FloatVector.broadcast(species, weight * zeroAt(block, array, off, g3));
        }
        a0 = AsymmetricCodes.codes(block, array, at, wordBits, bits).fma(s0, z0).add(a0);
        a1 = AsymmetricCodes.codes(block, array, at + step, wordBits, bits).fma(s1, z1).add(a1);
        a2 =
            AsymmetricCodes.codes(block, array, at + 2L * step, wordBits, bits).fma(s2, z2).add(a2);
        a3 =
            AsymmetricCodes.codes(block, array, at + 3L * step, wordBits, bits).fma(s3, z3).add(a3);
      }
      a0.intoArray(acc, accOff + c0);
      a1.intoArray(acc, accOff + c0 + lanes);
      a2.intoArray(acc, accOff + c0 + 2 * lanes);
      a3.intoArray(acc, accOff + c0 + 3 * lanes);
    }
    return true;
  }

  /**
   * {@link #accumulateOneRowAnyWidth} for 4-bit codes on 8 lanes (AVX2), the code words cut in this
   * method's own body (one 32-bit word of eight codes a vector): a code helper that returns a
   * vector and is left out of line hands back a boxed vector (KIVI-4 value passes 6x slower without
   * the launcher's {@code -XX:CompileCommand=inline} flags, `KvReadCpuBench`). The same operations
   * per lane, so the same bits.
   */
  private boolean accumulateOneRow4x8(
      MemorySegment block,
      int count,
      int headDim,
      float[] weights,
      int w0,
      float[] acc,
      int accOff) {
    VectorSpecies<Float> species = VectorKernels.FLOATS;
    int lanes = species.length();
    byte[] array = VectorKernels.array(block);
    if (array == null
        || !AsymmetricCodes.vectorizable(bits)
        || group % lanes != 0
        || headDim % (4 * lanes) != 0) {
      return false;
    }
    int rowBytes = rowBytes(headDim);
    int scaleBytes = rowScaleBytes(headDim);
    int wordBits = lanes * bits;
    int step = wordBits / 8;
    for (int c0 = 0; c0 < headDim; c0 += 4 * lanes) {
      // groups only grow along the channels, so a vector shares its group with the one before
      // exactly when their group numbers are equal
      int g0 = c0 / group;
      int g1 = (c0 + lanes) / group;
      int g2 = (c0 + 2 * lanes) / group;
      int g3 = (c0 + 3 * lanes) / group;
      long codeAt = scaleBytes + (long) c0 * bits / 8;
      FloatVector a0 = FloatVector.fromArray(species, acc, accOff + c0);
      FloatVector a1 = FloatVector.fromArray(species, acc, accOff + c0 + lanes);
      FloatVector a2 = FloatVector.fromArray(species, acc, accOff + c0 + 2 * lanes);
      FloatVector a3 = FloatVector.fromArray(species, acc, accOff + c0 + 3 * lanes);
      for (int s = 0; s < count; s++) {
        float weight = weights[w0 + s];
        if (weight == 0f) {
          continue;
        }
        long off = (long) s * rowBytes;
        long at = off + codeAt;
        FloatVector s0 = FloatVector.broadcast(species, weight * scaleAt(block, array, off, g0));
        FloatVector z0 = FloatVector.broadcast(species, weight * zeroAt(block, array, off, g0));
        FloatVector s1 = s0;
        FloatVector z1 = z0;
        if (g1 != g0) {
          s1 = FloatVector.broadcast(species, weight * scaleAt(block, array, off, g1));
          z1 = FloatVector.broadcast(species, weight * zeroAt(block, array, off, g1));
        }
        FloatVector s2 = s1;
        FloatVector z2 = z1;
        if (g2 != g1) {
          s2 = FloatVector.broadcast(species, weight * scaleAt(block, array, off, g2));
          z2 = FloatVector.broadcast(species, weight * zeroAt(block, array, off, g2));
        }
        FloatVector s3 = s2;
        FloatVector z3 = z2;
        if (g3 != g2) {
          s3 = FloatVector.broadcast(species, weight * scaleAt(block, array, off, g3));
          z3 = FloatVector.broadcast(species, weight * zeroAt(block, array, off, g3));
        }
        a0 =
            ((FloatVector)
                    IntVector.broadcast(INTS8, AsymmetricCodes.word32(array, (int) (at)))
                        .lanewise(VectorOperators.LSHR, AsymmetricCodes.SHIFTS4)
                        .and(15)
                        .convert(VectorOperators.I2F, 0))
                .fma(s0, z0)
                .add(a0);
        a1 =
            ((FloatVector)
                    IntVector.broadcast(INTS8, AsymmetricCodes.word32(array, (int) (at + step)))
                        .lanewise(VectorOperators.LSHR, AsymmetricCodes.SHIFTS4)
                        .and(15)
                        .convert(VectorOperators.I2F, 0))
                .fma(s1, z1)
                .add(a1);
        a2 =
            ((FloatVector)
                    IntVector.broadcast(INTS8, AsymmetricCodes.word32(array, (int) (at + 2 * step)))
                        .lanewise(VectorOperators.LSHR, AsymmetricCodes.SHIFTS4)
                        .and(15)
                        .convert(VectorOperators.I2F, 0))
                .fma(s2, z2)
                .add(a2);
        a3 =
            ((FloatVector)
                    IntVector.broadcast(INTS8, AsymmetricCodes.word32(array, (int) (at + 3 * step)))
                        .lanewise(VectorOperators.LSHR, AsymmetricCodes.SHIFTS4)
                        .and(15)
                        .convert(VectorOperators.I2F, 0))
                .fma(s3, z3)
                .add(a3);
      }
      a0.intoArray(acc, accOff + c0);
      a1.intoArray(acc, accOff + c0 + lanes);
      a2.intoArray(acc, accOff + c0 + 2 * lanes);
      a3.intoArray(acc, accOff + c0 + 3 * lanes);
    }
    return true;
  }

  /**
   * For slots {@code [first, last)}: {@code work[2·(k·groups + g)] = w·s_g} and {@code
   * work[2·(k·groups + g) + 1] = w·z_g} for slot {@code first + k}, two groups' (zero point, scale)
   * pairs read as one 64-bit word (an odd count's last group as two 16-bit reads).
   */
  private void products(
      byte[] array, int first, int last, int headDim, float[] weights, int w0, float[] work) {
    int perSlot = 2 * (headDim / group);
    int rowBytes = rowBytes(headDim);
    int g = 0;
    for (; 2 * g + 2 < perSlot; g += 2) {
      // two groups a pass, the slots innermost (a long loop the compiler unrolls)
      for (int s = first, k = 2 * g; s < last; s++, k += perSlot) {
        float weight = weights[w0 + s];
        long pairs = AsymmetricCodes.longAt(array, s * rowBytes + 4 * g); // z_g, s_g, z_g+1, s_g+1
        work[k] = weight * HalfFloats.fromF16((short) (pairs >>> 16));
        work[k + 1] = weight * HalfFloats.fromF16((short) pairs);
        work[k + 2] = weight * HalfFloats.fromF16((short) (pairs >>> 48));
        work[k + 3] = weight * HalfFloats.fromF16((short) (pairs >>> 32));
      }
    }
    if (2 * g < perSlot) {
      // an odd number of groups (GEAR's one group of 64 channels): the last one alone
      for (int s = first, k = 2 * g; s < last; s++, k += perSlot) {
        float weight = weights[w0 + s];
        int pair = AsymmetricCodes.word32(array, s * rowBytes + 4 * g); // z_g, s_g
        work[k] = weight * HalfFloats.fromF16((short) (pair >>> 16));
        work[k + 1] = weight * HalfFloats.fromF16((short) pair);
      }
    }
  }

  /**
   * Adds slots {@code [first, last)} to channels {@code [c0, c0 + 4·lanes)} of the row ({@code
   * acc[a..]}) with the products {@link #products} left in {@code work}: 2-bit codes, 16 lanes (one
   * 32-bit word per vector) or 8 lanes (AVX2: one 16-bit word per vector); other widths and lane
   * counts take {@link #accumulateOneRowAnyWidth}.
   */
  private void addRun(
      byte[] array,
      int first,
      int last,
      int headDim,
      int c0,
      float[] weights,
      int w0,
      float[] acc,
      int a,
      float[] work) {
    if (VectorKernels.FLOATS.length() == 8) {
      addRun2x8(
          array,
          first,
          last,
          rowBytes(headDim),
          rowScaleBytes(headDim) + c0 / 4,
          2 * (headDim / group),
          2 * (c0 / group),
          2 * ((c0 + 8) / group),
          2 * ((c0 + 16) / group),
          2 * ((c0 + 24) / group),
          weights,
          w0,
          acc,
          a,
          work);
      return;
    }
    addRun2(
        array,
        first,
        last,
        rowBytes(headDim),
        rowScaleBytes(headDim) + c0 / 4,
        2 * (headDim / group),
        2 * (c0 / group),
        2 * ((c0 + 16) / group),
        2 * ((c0 + 32) / group),
        2 * ((c0 + 48) / group),
        weights,
        w0,
        acc,
        a,
        work);
  }

  /**
   * {@link #addRun} for 2-bit codes and 16 lanes, constants folded: {@code k·perSlot + g_i} indexes
   * slot {@code first + k}'s products of vector {@code i}'s group.
   */
  private static void addRun2(
      byte[] array,
      int first,
      int last,
      int rowBytes,
      int codeAt,
      int perSlot,
      int g0,
      int g1,
      int g2,
      int g3,
      float[] weights,
      int w0,
      float[] acc,
      int a,
      float[] work) {
    VectorSpecies<Float> species = VectorKernels.FLOATS;
    FloatVector a0 = FloatVector.fromArray(species, acc, a);
    FloatVector a1 = FloatVector.fromArray(species, acc, a + 16);
    FloatVector a2 = FloatVector.fromArray(species, acc, a + 32);
    FloatVector a3 = FloatVector.fromArray(species, acc, a + 48);
    for (int s = first, k = 0; s < last; s++, k += perSlot) {
      if (weights[w0 + s] == 0f) {
        continue;
      }
      int at = s * rowBytes + codeAt;
      a0 =
          AsymmetricCodes.codes2(array, at)
              .fma(
                  FloatVector.broadcast(species, work[k + g0]),
                  FloatVector.broadcast(species, work[k + g0 + 1]))
              .add(a0);
      a1 =
          AsymmetricCodes.codes2(array, at + 4)
              .fma(
                  FloatVector.broadcast(species, work[k + g1]),
                  FloatVector.broadcast(species, work[k + g1 + 1]))
              .add(a1);
      a2 =
          AsymmetricCodes.codes2(array, at + 8)
              .fma(
                  FloatVector.broadcast(species, work[k + g2]),
                  FloatVector.broadcast(species, work[k + g2 + 1]))
              .add(a2);
      a3 =
          AsymmetricCodes.codes2(array, at + 12)
              .fma(
                  FloatVector.broadcast(species, work[k + g3]),
                  FloatVector.broadcast(species, work[k + g3 + 1]))
              .add(a3);
    }
    a0.intoArray(acc, a);
    a1.intoArray(acc, a + 16);
    a2.intoArray(acc, a + 32);
    a3.intoArray(acc, a + 48);
  }

  /**
   * {@link #addRun2} for 8 lanes (AVX2): four vectors of eight channels, each one 16-bit word of
   * 2-bit codes ({@link AsymmetricCodes#codes2x8}); the same operations per lane, so the same bits.
   */
  private static void addRun2x8(
      byte[] array,
      int first,
      int last,
      int rowBytes,
      int codeAt,
      int perSlot,
      int g0,
      int g1,
      int g2,
      int g3,
      float[] weights,
      int w0,
      float[] acc,
      int a,
      float[] work) {
    VectorSpecies<Float> species = VectorKernels.FLOATS;
    FloatVector a0 = FloatVector.fromArray(species, acc, a);
    FloatVector a1 = FloatVector.fromArray(species, acc, a + 8);
    FloatVector a2 = FloatVector.fromArray(species, acc, a + 16);
    FloatVector a3 = FloatVector.fromArray(species, acc, a + 24);
    for (int s = first, k = 0; s < last; s++, k += perSlot) {
      if (weights[w0 + s] == 0f) {
        continue;
      }
      int at = s * rowBytes + codeAt;
      a0 =
          ((FloatVector)
                  IntVector.broadcast(INTS8, (array[at] & 0xff) | (array[at + 1] & 0xff) << 8)
                      .lanewise(VectorOperators.LSHR, AsymmetricCodes.SHIFTS2)
                      .and(3)
                      .convert(VectorOperators.I2F, 0))
              .fma(
                  FloatVector.broadcast(species, work[k + g0]),
                  FloatVector.broadcast(species, work[k + g0 + 1]))
              .add(a0);
      a1 =
          ((FloatVector)
                  IntVector.broadcast(
                          INTS8, (array[at + 2] & 0xff) | (array[at + 2 + 1] & 0xff) << 8)
                      .lanewise(VectorOperators.LSHR, AsymmetricCodes.SHIFTS2)
                      .and(3)
                      .convert(VectorOperators.I2F, 0))
              .fma(
                  FloatVector.broadcast(species, work[k + g1]),
                  FloatVector.broadcast(species, work[k + g1 + 1]))
              .add(a1);
      a2 =
          ((FloatVector)
                  IntVector.broadcast(
                          INTS8, (array[at + 4] & 0xff) | (array[at + 4 + 1] & 0xff) << 8)
                      .lanewise(VectorOperators.LSHR, AsymmetricCodes.SHIFTS2)
                      .and(3)
                      .convert(VectorOperators.I2F, 0))
              .fma(
                  FloatVector.broadcast(species, work[k + g2]),
                  FloatVector.broadcast(species, work[k + g2 + 1]))
              .add(a2);
      a3 =
          ((FloatVector)
                  IntVector.broadcast(
                          INTS8, (array[at + 6] & 0xff) | (array[at + 6 + 1] & 0xff) << 8)
                      .lanewise(VectorOperators.LSHR, AsymmetricCodes.SHIFTS2)
                      .and(3)
                      .convert(VectorOperators.I2F, 0))
              .fma(
                  FloatVector.broadcast(species, work[k + g3]),
                  FloatVector.broadcast(species, work[k + g3 + 1]))
              .add(a3);
    }
    a0.intoArray(acc, a);
    a1.intoArray(acc, a + 8);
    a2.intoArray(acc, a + 16);
    a3.intoArray(acc, a + 24);
  }

  /** {@link #groupScale} with the block's array (or null) looked up by the caller. */
  private static float scaleAt(MemorySegment block, byte[] array, long off, int g) {
    return HalfFloats.fromF16(AsymmetricCodes.shortAt(block, array, off + 4L * g + 2));
  }

  private static float zeroAt(MemorySegment block, byte[] array, long off, int g) {
    return HalfFloats.fromF16(AsymmetricCodes.shortAt(block, array, off + 4L * g));
  }

  /** Ints with as many lanes as {@link VectorKernels#FLOATS}. */
  private static final VectorSpecies<Integer> INTS8 =
      VectorSpecies.of(
          int.class,
          jdk.incubator.vector.VectorShape.forBitSize(VectorKernels.FLOATS.vectorBitSize()));

  @Override
  public boolean equals(Object other) {
    return other instanceof KiviValueFormat o && o.bits == bits && o.group == group;
  }

  @Override
  public int hashCode() {
    return 31 * bits + group;
  }
}
