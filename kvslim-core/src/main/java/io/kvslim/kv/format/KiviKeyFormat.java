package io.kvslim.kv.format;

import io.kvslim.ggml.LittleEndian;
import io.kvslim.kv.attention.AttentionKernels;
import io.kvslim.kv.attention.VectorKernels;
import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * KIVI keys (Liu et al. 2024, "KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache",
 * arXiv:2402.02750, §3.3 and METHODS.md Q3): keys are quantized <em>per channel</em>, because key
 * outliers sit in fixed channels; one group is one channel over the block's tokens (the paper's
 * group of G tokens, G = the block size). Asymmetric {@code bits}-bit codes with fp16 scale and
 * zero point per channel (see {@link AsymmetricCodes}); bound {@code |x − x̂| ≤ s_c/2}. With {@code
 * bits = 1} (AsymKV, METHODS.md Q7) {@code s_c = max − min} and every element decodes to its
 * channel's stored min or max, whichever is nearer (threshold at the midpoint); the codes are read
 * sixteen bits a vector by the same fused kernels.
 *
 * <p>Layout: {@code headDim} pairs (zero point, scale) as fp16, then the codes token-major, {@code
 * headDim·bits/8} bytes per token slot. A block is encoded once, with all its tokens. With {@code
 * group > 0} a block of C tokens holds C/group such groups one after the other, each with its own
 * scales (the paper's groups of G tokens inside a larger storage block: the same codes and scales
 * as blocks of G tokens, with a quarter of the blocks to walk at C = 4G; a block cut to fewer slots
 * by an eviction ends with a shorter group); {@code group = 0} makes the whole block one group.
 *
 * <p>Fused score (M8): {@code q·k̂_t = Σ_c (q_c s_c)·code_{c,t} + Σ_c q_c z_c}; the two per-channel
 * terms are computed once per query and block.
 */
public record KiviKeyFormat(int bits, int group) implements KvFormat {

  public KiviKeyFormat {
    AsymmetricCodes.checkBits("kivi keys", bits);
    if (group < 0) {
      throw new IllegalArgumentException("kivi keys need a group of >= 0 tokens, got " + group);
    }
  }

  /** One group per block. */
  public KiviKeyFormat(int bits) {
    this(bits, 0);
  }

  @Override
  public String name() {
    return group == 0 ? "kivi_k" + bits : "kivi_k" + bits + "_g" + group;
  }

  /**
   * Tokens per group in a block of {@code capacity} slots (the last group of a block whose capacity
   * is not a multiple, one cut short by an eviction, holds the rest).
   */
  private int groupTokens(int capacity) {
    return group == 0 ? capacity : group;
  }

  /** Bytes of one group of {@code tokens} tokens: its scales, then its codes. */
  private long groupBytes(int tokens, int headDim) {
    return 4L * headDim + (long) tokens * codeBytesPerToken(headDim);
  }

  @Override
  public boolean perToken() {
    return false;
  }

  private int codeBytesPerToken(int headDim) {
    return headDim * bits / 8;
  }

  @Override
  public long blockBytes(int capacity, int headDim) {
    return scaleBytes(capacity, headDim) + (long) capacity * codeBytesPerToken(headDim);
  }

  @Override
  public long scaleBytes(int capacity, int headDim) {
    int tokens = Math.max(1, groupTokens(capacity));
    return 4L * headDim * ((capacity + tokens - 1) / tokens);
  }

  @Override
  public void checkHeadDim(int headDim) {
    if (headDim <= 0 || headDim * bits % 8 != 0) {
      throw new IllegalArgumentException(
          "format " + name() + " needs headDim·bits to be a multiple of 8, got headDim " + headDim);
    }
  }

  @Override
  public void encode(
      float[] src,
      int srcOff,
      int srcStride,
      int count,
      MemorySegment block,
      int firstSlot,
      int capacity,
      int headDim) {
    if (firstSlot != 0) {
      throw new IllegalStateException(name() + " encodes whole blocks, not slot " + firstSlot);
    }
    int tokens = groupTokens(capacity);
    long size = groupBytes(tokens, headDim);
    for (int first = 0; first < capacity; first += tokens) {
      int n = Math.max(0, Math.min(tokens, count - first));
      encodeGroup(
          src, srcOff + first * srcStride, srcStride, n, block, first / tokens * size, headDim);
    }
  }

  /** Encodes one group of {@code count} tokens at byte {@code base} of the block. */
  private void encodeGroup(
      float[] src,
      int srcOff,
      int srcStride,
      int count,
      MemorySegment block,
      long base,
      int headDim) {
    if (bits <= 2 && AsymmetricCodes.packs2() && headDim % 16 == 0 && count > 0) {
      encodeVector(src, srcOff, srcStride, count, block, base, headDim);
      return;
    }
    long codes = base + 4L * headDim;
    int rowBytes = codeBytesPerToken(headDim);
    for (int c = 0; c < headDim; c++) {
      float min = Float.POSITIVE_INFINITY;
      float max = Float.NEGATIVE_INFINITY;
      for (int t = 0; t < count; t++) {
        float v = src[srcOff + t * srcStride + c];
        min = Math.min(min, v);
        max = Math.max(max, v);
      }
      if (count == 0) {
        min = 0f;
        max = 0f;
      }
      short zeroBits = AsymmetricCodes.zeroPoint(min);
      float zero = HalfFloats.fromF16(zeroBits);
      short scaleBits = AsymmetricCodes.scale(zero, max, bits);
      float scale = HalfFloats.fromF16(scaleBits);
      block.set(F16Format.SHORT_LE, base + 4L * c, zeroBits);
      block.set(F16Format.SHORT_LE, base + 4L * c + 2, scaleBits);
      for (int t = 0; t < count; t++) {
        int code = AsymmetricCodes.code(src[srcOff + t * srcStride + c], zero, scale, bits);
        AsymmetricCodes.put(block, codes + (long) t * rowBytes, c, bits, code);
      }
    }
  }

  /**
   * {@link #encode} for 1- and 2-bit codes, sixteen channels a vector: the same minimum and maximum
   * per channel (order does not change them), the same fp16 zero point and scale, and each token's
   * codes of sixteen channels packed at once ({@link AsymmetricCodes#pack1}, {@link
   * AsymmetricCodes#pack2}), so the same bytes.
   */
  private void encodeVector(
      float[] src,
      int srcOff,
      int srcStride,
      int count,
      MemorySegment block,
      long base,
      int headDim) {
    VectorSpecies<Float> species = VectorKernels.FLOATS;
    float[] zeros = new float[headDim];
    float[] scales = new float[headDim];
    for (int c = 0; c < headDim; c += 16) {
      FloatVector min = FloatVector.fromArray(species, src, srcOff + c);
      FloatVector max = min;
      for (int t = 1; t < count; t++) {
        FloatVector v = FloatVector.fromArray(species, src, srcOff + t * srcStride + c);
        min = min.min(v);
        max = max.max(v);
      }
      min.intoArray(zeros, c);
      max.intoArray(scales, c);
    }
    for (int c = 0; c < headDim; c++) {
      short zeroBits = AsymmetricCodes.zeroPoint(zeros[c]);
      float zero = HalfFloats.fromF16(zeroBits);
      short scaleBits = AsymmetricCodes.scale(zero, scales[c], bits);
      block.set(F16Format.SHORT_LE, base + 4L * c, zeroBits);
      block.set(F16Format.SHORT_LE, base + 4L * c + 2, scaleBits);
      zeros[c] = zero;
      scales[c] = HalfFloats.fromF16(scaleBits);
    }
    long codes = base + 4L * headDim;
    int rowBytes = codeBytesPerToken(headDim);
    for (int t = 0; t < count; t++) {
      long row = codes + (long) t * rowBytes;
      for (int c = 0; c < headDim; c += 16) {
        int at = srcOff + t * srcStride + c;
        if (bits == 1) {
          block.set(
              F16Format.SHORT_LE,
              row + c / 8,
              (short) AsymmetricCodes.pack1(src, at, zeros, scales, c));
        } else {
          block.set(
              LittleEndian.INT, row + c / 4, AsymmetricCodes.pack2(src, at, zeros, scales, c));
        }
      }
    }
  }

  /** Scale of channel {@code c} in the block's first group, as stored. */
  public float channelScale(MemorySegment block, int c) {
    return HalfFloats.fromF16(block.get(F16Format.SHORT_LE, 4L * c + 2));
  }

  /** Zero point of channel {@code c} in the block's first group, as stored. */
  public float channelZeroPoint(MemorySegment block, int c) {
    return HalfFloats.fromF16(block.get(F16Format.SHORT_LE, 4L * c));
  }

  @Override
  public void decode(
      MemorySegment block, int slot, int capacity, int headDim, float[] dst, int dstOff) {
    int tokens = groupTokens(capacity);
    long group0 = slot / tokens * groupBytes(tokens, headDim);
    long base = group0 + 4L * headDim + (long) (slot % tokens) * codeBytesPerToken(headDim);
    for (int c = 0; c < headDim; c++) {
      int code = AsymmetricCodes.get(block, base, c, bits);
      float scale = HalfFloats.fromF16(block.get(F16Format.SHORT_LE, group0 + 4L * c + 2));
      float zero = HalfFloats.fromF16(block.get(F16Format.SHORT_LE, group0 + 4L * c));
      dst[dstOff + c] = code * scale + zero;
    }
  }

  /**
   * Widens a block's fp16 (zero point, scale) pairs a vector at a time, zero points into {@code
   * work[headDim .. 2·headDim)} and scales into {@code work[2·headDim .. 3·headDim)}, where the
   * block has an array and the channels fill whole vectors; returns whether it did. Once per block,
   * whatever the number of query rows.
   */
  private static boolean widenScales(MemorySegment block, long base, int headDim, float[] work) {
    byte[] array = VectorKernels.array(block);
    if (array == null || headDim % VectorKernels.FLOATS.length() != 0) {
      return false;
    }
    VectorKernels.halfPairs(array, (int) base, headDim, work, headDim, work, 2 * headDim);
    return true;
  }

  /**
   * Per block and query row: {@code work[c] = q_c·s_c} for every channel, and the returned {@code
   * Σ_c q_c·z_c}. With {@code widened} ({@link #widenScales}) both are vector loops, the zero-point
   * term a lane-wise fused sum with its lanes summed by {@link AttentionKernels#sumLanes};
   * otherwise both are scalar, the zero-point term in the same lane-wise order where the channels
   * fill whole vectors (a block off the heap), else in channel order. Every kernel of this format
   * prepares through here, so all of them agree bit for bit.
   */
  private static float prepareRow(
      MemorySegment block,
      long base,
      boolean widened,
      float[] q,
      int qOff,
      int headDim,
      float[] work) {
    if (widened) {
      VectorSpecies<Float> species = VectorKernels.FLOATS;
      FloatVector zeroTerm = FloatVector.zero(species);
      for (int c = 0; c < headDim; c += species.length()) {
        FloatVector query = FloatVector.fromArray(species, q, qOff + c);
        query.mul(FloatVector.fromArray(species, work, 2 * headDim + c)).intoArray(work, c);
        zeroTerm = query.fma(FloatVector.fromArray(species, work, headDim + c), zeroTerm);
      }
      zeroTerm.intoArray(work, 3 * headDim);
      return AttentionKernels.sumLanes(work, 3 * headDim);
    }
    byte[] array = VectorKernels.array(block);
    int lanes = VectorKernels.FLOATS.length();
    if (headDim % lanes == 0) {
      // the widened path's lane-wise fused sums and lane tree, in scalar code: the same bits
      int lane0 = 3 * headDim;
      java.util.Arrays.fill(work, lane0, lane0 + lanes, 0f);
      for (int c = 0; c < headDim; c++) {
        float scale = HalfFloats.fromF16(AsymmetricCodes.shortAt(block, array, base + 4L * c + 2));
        float zero = HalfFloats.fromF16(AsymmetricCodes.shortAt(block, array, base + 4L * c));
        work[c] = q[qOff + c] * scale;
        int l = lane0 + c % lanes;
        work[l] = Math.fma(q[qOff + c], zero, work[l]);
      }
      return AttentionKernels.sumLanes(work, lane0);
    }
    float queryTimesZero = 0f;
    for (int c = 0; c < headDim; c++) {
      float scale = HalfFloats.fromF16(AsymmetricCodes.shortAt(block, array, base + 4L * c + 2));
      float zero = HalfFloats.fromF16(AsymmetricCodes.shortAt(block, array, base + 4L * c));
      work[c] = q[qOff + c] * scale;
      queryTimesZero += q[qOff + c] * zero;
    }
    return queryTimesZero;
  }

  /**
   * Scores of tokens {@code [0, count)} against {@code work[0..headDim)} (the prepared query):
   * {@code out[o + t] = Σ lanes(Σ_chunks codes·work) + queryTimesZero}, one lane-wise accumulator
   * per token over its channel chunks in order, lanes summed by {@link AttentionKernels#sumLanes}.
   * Four tokens run interleaved (independent chains); each token's arithmetic is the same as alone.
   */
  private void scoreTokens(
      MemorySegment block,
      byte[] array,
      long base,
      int count,
      int headDim,
      float[] work,
      float queryTimesZero,
      float[] out,
      int o) {
    long codes = base + 4L * headDim;
    int rowBytes = codeBytesPerToken(headDim);
    int lanes = VectorKernels.FLOATS.length();
    int wordBits = lanes * bits;
    int step = wordBits / 8;
    int t = 0;
    if (array != null && bits == 2 && lanes == 8) {
      t =
          scoreTokens2x8(
              array, (int) codes, rowBytes, count, headDim, work, queryTimesZero, out, o);
    } else if (array != null && bits == 4 && lanes == 8) {
      t =
          scoreTokens4x8(
              array, (int) codes, rowBytes, count, headDim, work, queryTimesZero, out, o);
    }
    for (; t + 4 <= count; t += 4) {
      long row = codes + (long) t * rowBytes;
      FloatVector s0 = FloatVector.zero(VectorKernels.FLOATS);
      FloatVector s1 = s0;
      FloatVector s2 = s0;
      FloatVector s3 = s0;
      long at = row;
      for (int c = 0; c < headDim; c += lanes, at += step) {
        FloatVector w = FloatVector.fromArray(VectorKernels.FLOATS, work, c);
        s0 = AsymmetricCodes.codes(block, array, at, wordBits, bits).fma(w, s0);
        s1 = AsymmetricCodes.codes(block, array, at + rowBytes, wordBits, bits).fma(w, s1);
        s2 = AsymmetricCodes.codes(block, array, at + 2L * rowBytes, wordBits, bits).fma(w, s2);
        s3 = AsymmetricCodes.codes(block, array, at + 3L * rowBytes, wordBits, bits).fma(w, s3);
      }
      AttentionKernels.sumLanes4(s0, s1, s2, s3, out, o + t, work, 3 * headDim);
      out[o + t] += queryTimesZero;
      out[o + t + 1] += queryTimesZero;
      out[o + t + 2] += queryTimesZero;
      out[o + t + 3] += queryTimesZero;
    }
    for (; t < count; t++) {
      long at = codes + (long) t * rowBytes;
      FloatVector sum = FloatVector.zero(VectorKernels.FLOATS);
      for (int c = 0; c < headDim; c += lanes, at += step) {
        FloatVector w = FloatVector.fromArray(VectorKernels.FLOATS, work, c);
        sum = AsymmetricCodes.codes(block, array, at, wordBits, bits).fma(w, sum);
      }
      sum.intoArray(work, 3 * headDim);
      out[o + t] = AttentionKernels.sumLanes(work, 3 * headDim) + queryTimesZero;
    }
  }

  /**
   * {@link #scoreTokens}'s four-token loop for 2-bit codes on 8 lanes (AVX2) from the block's
   * array, with {@link AsymmetricCodes#codes2x8}'s steps written out: a code-word helper that
   * returns a vector, left out of line when C2's inlining budget runs out, hands back a boxed
   * vector (KIVI-2 key passes 3.6x slower without the launcher's {@code -XX:CompileCommand=inline}
   * of those helpers, `KvReadCpuBench`); a kernel with the steps in its own body does not depend on
   * that flag (a library user's JVM has none). The same operations per lane, so the same bits.
   * Returns the first token it did not score.
   */
  private static int scoreTokens2x8(
      byte[] array,
      int codes,
      int rowBytes,
      int count,
      int headDim,
      float[] work,
      float queryTimesZero,
      float[] out,
      int o) {
    IntVector shifts = AsymmetricCodes.SHIFTS2;
    int t = 0;
    for (; t + 4 <= count; t += 4) {
      int a0 = codes + t * rowBytes;
      int a1 = a0 + rowBytes;
      int a2 = a1 + rowBytes;
      int a3 = a2 + rowBytes;
      FloatVector s0 = FloatVector.zero(VectorKernels.FLOATS);
      FloatVector s1 = s0;
      FloatVector s2 = s0;
      FloatVector s3 = s0;
      for (int c = 0; c < headDim; c += 8, a0 += 2, a1 += 2, a2 += 2, a3 += 2) {
        FloatVector w = FloatVector.fromArray(VectorKernels.FLOATS, work, c);
        FloatVector k0 =
            (FloatVector)
                IntVector.broadcast(INTS8, (array[a0] & 0xff) | (array[a0 + 1] & 0xff) << 8)
                    .lanewise(VectorOperators.LSHR, shifts)
                    .and(3)
                    .convert(VectorOperators.I2F, 0);
        FloatVector k1 =
            (FloatVector)
                IntVector.broadcast(INTS8, (array[a1] & 0xff) | (array[a1 + 1] & 0xff) << 8)
                    .lanewise(VectorOperators.LSHR, shifts)
                    .and(3)
                    .convert(VectorOperators.I2F, 0);
        FloatVector k2 =
            (FloatVector)
                IntVector.broadcast(INTS8, (array[a2] & 0xff) | (array[a2 + 1] & 0xff) << 8)
                    .lanewise(VectorOperators.LSHR, shifts)
                    .and(3)
                    .convert(VectorOperators.I2F, 0);
        FloatVector k3 =
            (FloatVector)
                IntVector.broadcast(INTS8, (array[a3] & 0xff) | (array[a3 + 1] & 0xff) << 8)
                    .lanewise(VectorOperators.LSHR, shifts)
                    .and(3)
                    .convert(VectorOperators.I2F, 0);
        s0 = k0.fma(w, s0);
        s1 = k1.fma(w, s1);
        s2 = k2.fma(w, s2);
        s3 = k3.fma(w, s3);
      }
      AttentionKernels.sumLanes4(s0, s1, s2, s3, out, o + t, work, 3 * headDim);
      out[o + t] += queryTimesZero;
      out[o + t + 1] += queryTimesZero;
      out[o + t + 2] += queryTimesZero;
      out[o + t + 3] += queryTimesZero;
    }
    return t;
  }

  /** {@link #scoreTokens2x8} for 4-bit codes: one 32-bit word of eight codes a vector. */
  private static int scoreTokens4x8(
      byte[] array,
      int codes,
      int rowBytes,
      int count,
      int headDim,
      float[] work,
      float queryTimesZero,
      float[] out,
      int o) {
    IntVector shifts = AsymmetricCodes.SHIFTS4;
    int t = 0;
    for (; t + 4 <= count; t += 4) {
      int a0 = codes + t * rowBytes;
      int a1 = a0 + rowBytes;
      int a2 = a1 + rowBytes;
      int a3 = a2 + rowBytes;
      FloatVector s0 = FloatVector.zero(VectorKernels.FLOATS);
      FloatVector s1 = s0;
      FloatVector s2 = s0;
      FloatVector s3 = s0;
      for (int c = 0; c < headDim; c += 8, a0 += 4, a1 += 4, a2 += 4, a3 += 4) {
        FloatVector w = FloatVector.fromArray(VectorKernels.FLOATS, work, c);
        FloatVector k0 =
            (FloatVector)
                IntVector.broadcast(INTS8, AsymmetricCodes.word32(array, a0))
                    .lanewise(VectorOperators.LSHR, shifts)
                    .and(15)
                    .convert(VectorOperators.I2F, 0);
        FloatVector k1 =
            (FloatVector)
                IntVector.broadcast(INTS8, AsymmetricCodes.word32(array, a1))
                    .lanewise(VectorOperators.LSHR, shifts)
                    .and(15)
                    .convert(VectorOperators.I2F, 0);
        FloatVector k2 =
            (FloatVector)
                IntVector.broadcast(INTS8, AsymmetricCodes.word32(array, a2))
                    .lanewise(VectorOperators.LSHR, shifts)
                    .and(15)
                    .convert(VectorOperators.I2F, 0);
        FloatVector k3 =
            (FloatVector)
                IntVector.broadcast(INTS8, AsymmetricCodes.word32(array, a3))
                    .lanewise(VectorOperators.LSHR, shifts)
                    .and(15)
                    .convert(VectorOperators.I2F, 0);
        s0 = k0.fma(w, s0);
        s1 = k1.fma(w, s1);
        s2 = k2.fma(w, s2);
        s3 = k3.fma(w, s3);
      }
      AttentionKernels.sumLanes4(s0, s1, s2, s3, out, o + t, work, 3 * headDim);
      out[o + t] += queryTimesZero;
      out[o + t + 1] += queryTimesZero;
      out[o + t + 2] += queryTimesZero;
      out[o + t + 3] += queryTimesZero;
    }
    return t;
  }

  /** Ints with as many lanes as {@link VectorKernels#FLOATS}. */
  private static final jdk.incubator.vector.VectorSpecies<Integer> INTS8 =
      jdk.incubator.vector.VectorSpecies.of(
          int.class,
          jdk.incubator.vector.VectorShape.forBitSize(VectorKernels.FLOATS.vectorBitSize()));

  @Override
  public void scores(
      MemorySegment block,
      int count,
      int capacity,
      int headDim,
      float[] q,
      int qOff,
      float[] scores,
      float[] work) {
    byte[] array = VectorKernels.array(block);
    int tokens = groupTokens(capacity);
    long size = groupBytes(tokens, headDim);
    int lanes = VectorKernels.FLOATS.length();
    boolean vector = AsymmetricCodes.vectorizable(bits) && headDim % lanes == 0;
    int rowBytes = codeBytesPerToken(headDim);
    for (int first = 0; first < count; first += tokens) {
      long base = first / tokens * size;
      int n = Math.min(tokens, count - first);
      float queryTimesZero =
          prepareRow(block, base, widenScales(block, base, headDim, work), q, qOff, headDim, work);
      if (vector) {
        scoreTokens(block, array, base, n, headDim, work, queryTimesZero, scores, first);
        continue;
      }
      long codes = base + 4L * headDim;
      for (int t = 0; t < n; t++) {
        AsymmetricCodes.unpack(block, codes + (long) t * rowBytes, headDim, bits, work, headDim);
        scores[first + t] = VectorKernels.dot(work, 0, work, headDim, headDim) + queryTimesZero;
      }
    }
  }

  /** Each token's codes are unpacked once for all rows; each row then scores as {@link #scores}. */
  @Override
  public void scoresRows(
      MemorySegment block,
      int count,
      int capacity,
      int headDim,
      float[] prepared,
      int pStride,
      int[] rows,
      int rowCount,
      float[] out,
      int outStride,
      float[] work,
      float[] decoded) {
    if (rowCount < 2 || decoded.length < count * headDim) {
      KvFormat.super.scoresRows(
          block, count, capacity, headDim, prepared, pStride, rows, rowCount, out, outStride, work,
          decoded);
      return;
    }
    int tokens = groupTokens(capacity);
    long size = groupBytes(tokens, headDim);
    for (int first = 0; first < count; first += tokens) {
      scoreGroupRows(
          block,
          first / tokens * size,
          first,
          Math.min(count, first + tokens),
          headDim,
          prepared,
          pStride,
          rows,
          rowCount,
          out,
          outStride,
          work,
          decoded);
    }
  }

  /**
   * {@link #scoresRows} of the group at byte {@code base}, slots {@code [first, end)}: each token's
   * codes unpacked once into {@code decoded} (slot order), then every row scored over them.
   */
  private void scoreGroupRows(
      MemorySegment block,
      long base,
      int first,
      int end,
      int headDim,
      float[] prepared,
      int pStride,
      int[] rows,
      int rowCount,
      float[] out,
      int outStride,
      float[] work,
      float[] decoded) {
    long codes = base + 4L * headDim - (long) first * codeBytesPerToken(headDim);
    int rowBytes = codeBytesPerToken(headDim);
    for (int t = first; t < end; t++) {
      AsymmetricCodes.unpack(
          block, codes + (long) t * rowBytes, headDim, bits, decoded, t * headDim);
    }
    int lanes = VectorKernels.FLOATS.length();
    boolean vector = AsymmetricCodes.vectorizable(bits) && headDim % lanes == 0;
    boolean widened = widenScales(block, base, headDim, work);
    int count = end;
    for (int i = 0; i < rowCount; i++) {
      float queryTimesZero =
          prepareRow(block, base, widened, prepared, rows[i] * pStride, headDim, work);
      int o = i * outStride;
      int t = first;
      if (vector) {
        // four tokens interleaved, as scoreTokens does over the codes: the same chains, so the
        // same bits as each token alone
        for (; t + 4 <= count; t += 4) {
          FloatVector s0 = FloatVector.zero(VectorKernels.FLOATS);
          FloatVector s1 = s0;
          FloatVector s2 = s0;
          FloatVector s3 = s0;
          int d = t * headDim;
          for (int c = 0; c < headDim; c += lanes, d += lanes) {
            FloatVector w = FloatVector.fromArray(VectorKernels.FLOATS, work, c);
            s0 = FloatVector.fromArray(VectorKernels.FLOATS, decoded, d).fma(w, s0);
            s1 = FloatVector.fromArray(VectorKernels.FLOATS, decoded, d + headDim).fma(w, s1);
            s2 = FloatVector.fromArray(VectorKernels.FLOATS, decoded, d + 2 * headDim).fma(w, s2);
            s3 = FloatVector.fromArray(VectorKernels.FLOATS, decoded, d + 3 * headDim).fma(w, s3);
          }
          AttentionKernels.sumLanes4(s0, s1, s2, s3, out, o + t, work, 3 * headDim);
          out[o + t] += queryTimesZero;
          out[o + t + 1] += queryTimesZero;
          out[o + t + 2] += queryTimesZero;
          out[o + t + 3] += queryTimesZero;
        }
      }
      for (; t < count; t++) {
        if (vector) {
          FloatVector sum = FloatVector.zero(VectorKernels.FLOATS);
          for (int c = 0; c < headDim; c += lanes) {
            sum =
                FloatVector.fromArray(VectorKernels.FLOATS, decoded, t * headDim + c)
                    .fma(FloatVector.fromArray(VectorKernels.FLOATS, work, c), sum);
          }
          sum.intoArray(work, 3 * headDim);
          out[o + t] = AttentionKernels.sumLanes(work, 3 * headDim) + queryTimesZero;
        } else {
          out[o + t] = VectorKernels.dot(work, 0, decoded, t * headDim, headDim) + queryTimesZero;
        }
      }
    }
  }

  @Override
  public void accumulate(
      MemorySegment block,
      int slot,
      int capacity,
      int headDim,
      float weight,
      float[] acc,
      float[] work) {
    decode(block, slot, capacity, headDim, work, 0);
    AttentionKernels.addWeighted(weight, work, 0, acc, 0, headDim);
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
    for (int s = 0; s < count; s++) {
      if (weights[wOff + s] != 0f) {
        decode(block, s, capacity, headDim, work, 0);
        AttentionKernels.addWeighted(weights[wOff + s], work, 0, acc, accOff, headDim);
      }
    }
  }

  @Override
  public String toString() {
    return name();
  }
}
