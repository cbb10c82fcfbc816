package io.kvslim.kv.format;

import io.kvslim.kv.attention.AttentionKernels;
import io.kvslim.kv.attention.VectorKernels;
import java.lang.foreign.MemorySegment;

/**
 * GEAR keys (Kang et al. 2024, arXiv:2403.05527; METHODS.md H3), the authors' GEAR-KIVI variant
 * ({@code gearslkivi_channelQ_new}, {@code compress_function.py} lines 213–220): per block of
 * tokens, K ≈ deq(Q) + A·Bᵀ + S, where S holds each channel's {@code k} smallest and {@code k}
 * largest entries over the block's tokens exactly, Q is KIVI's per-channel asymmetric quantization
 * ({@link KiviKeyFormat}, the block being the group of tokens) of the keys with those entries set
 * to the channel mean, and A·Bᵀ the rank-r power-iteration approximation of the residual ({@link
 * GearCodec}).
 *
 * <p>Layout for {@code C} slots: the {@link KiviKeyFormat} block ({@code 4d + C·d·bits/8}), then A
 * ({@code C × r} fp16), B ({@code d × r} fp16), then the outliers of channel after channel, {@code
 * 2k} each ({@code k = GearCodec.perSide(C, outliers)}): indices (2 bytes, the token slot, −1 for
 * none) then values (f32).
 *
 * <p>The reconstruction is the authors' {@code output + error_lr} (lines 213–220): the quantized
 * keys with the outliers put back exactly ({@code gears_channelQ}, lines 261–296), plus the
 * low-rank term on every entry, outliers included (their residual is zero when A·Bᵀ is fitted, but
 * the authors add A·Bᵀ to the whole block).
 *
 * <p>Fused score: {@code q·k̂_t = q·deq(Q)_t + Σ_{outliers (t,c)} q_c·(x − deq_{tc}) + (q·B)·A_tᵀ},
 * the first term by {@link KiviKeyFormat}'s fused kernel on the same bytes; no key is dequantized.
 */
public record GearKeyFormat(int bits, int rank, int loop, double outliers) implements KvFormat {

  public GearKeyFormat {
    GearCodec.checkKnobs(bits, rank, loop, outliers);
  }

  private KiviKeyFormat quantizer() {
    return new KiviKeyFormat(bits);
  }

  @Override
  public String name() {
    return "gear_k" + bits + "_r" + rank + "_s" + outliers;
  }

  @Override
  public boolean perToken() {
    return false;
  }

  private long factorsOffset(int capacity, int headDim) {
    return quantizer().blockBytes(capacity, headDim);
  }

  private long bOffset(int capacity, int headDim) {
    return factorsOffset(capacity, headDim) + 2L * capacity * rank;
  }

  private long outliersOffset(int capacity, int headDim) {
    return bOffset(capacity, headDim) + 2L * headDim * rank;
  }

  @Override
  public long blockBytes(int capacity, int headDim) {
    int k = GearCodec.perSide(capacity, outliers);
    return outliersOffset(capacity, headDim) + (long) headDim * 2 * k * GearCodec.OUTLIER_BYTES;
  }

  /** The quantizer's scales and zero points, the low-rank factors and the outlier table. */
  @Override
  public long scaleBytes(int capacity, int headDim) {
    return blockBytes(capacity, headDim) - (long) capacity * headDim * bits / 8;
  }

  @Override
  public void checkHeadDim(int headDim) {
    quantizer().checkHeadDim(headDim);
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
    int d = headDim;
    float[] x = new float[count * d];
    for (int t = 0; t < count; t++) {
      System.arraycopy(src, srcOff + t * srcStride, x, t * d, d);
    }
    int kCap = GearCodec.perSide(capacity, outliers);
    int k = Math.min(kCap, count / 2);
    int table = d * 2 * kCap;
    short[] idx = new short[table];
    float[] val = new float[table];
    java.util.Arrays.fill(idx, (short) -1);
    for (int c = 0; c < d; c++) {
      GearCodec.takeOutliers(x, c, d, count, k, idx, val, c * 2 * kCap);
    }
    KiviKeyFormat q = quantizer();
    q.encode(x, 0, d, count, block, 0, capacity, d);
    // the codes under the outliers are never decoded (the outlier replaces them): stored as 0, so
    // an outlier's correction is q_c·(x − z_c) without looking its code up
    for (int c = 0; c < d; c++) {
      for (int j = 0; j < 2 * k; j++) {
        int t = idx[c * 2 * kCap + j];
        AsymmetricCodes.put(block, 4L * d + (long) t * (d * bits / 8), c, bits, 0);
      }
    }
    double[] a = new double[capacity * rank];
    double[] b = new double[d * rank];
    if (rank > 0 && count > 0) {
      double[] r = new double[count * d];
      float[] row = new float[d];
      for (int t = 0; t < count; t++) {
        q.decode(block, t, capacity, d, row, 0);
        for (int c = 0; c < d; c++) {
          r[t * d + c] = src[srcOff + t * srcStride + c] - row[c];
        }
      }
      for (int c = 0; c < d; c++) {
        for (int j = 0; j < 2 * k; j++) {
          r[idx[c * 2 * kCap + j] * d + c] = 0; // restored exactly: no residual there
        }
      }
      GearCodec.powerIteration(r, count, d, rank, loop, a, b);
    }
    GearCodec.putHalves(block, factorsOffset(capacity, d), a, capacity * rank);
    GearCodec.putHalves(block, bOffset(capacity, d), b, d * rank);
    GearCodec.putOutliers(block, outliersOffset(capacity, d), idx, val, table);
  }

  /** {@code L_{t,c} = Σ_j A_{t,j} B_{c,j}} as stored (fp16 factors, f32 sum). */
  float lowRank(MemorySegment block, int t, int c, int capacity, int headDim) {
    float s = 0f;
    long a = factorsOffset(capacity, headDim);
    long b = bOffset(capacity, headDim);
    for (int j = 0; j < rank; j++) {
      s += GearCodec.half(block, a, t * rank + j) * GearCodec.half(block, b, c * rank + j);
    }
    return s;
  }

  @Override
  public void decode(
      MemorySegment block, int slot, int capacity, int headDim, float[] dst, int dstOff) {
    quantizer().decode(block, slot, capacity, headDim, dst, dstOff);
    int kCap = GearCodec.perSide(capacity, outliers);
    int table = headDim * 2 * kCap;
    long o = outliersOffset(capacity, headDim);
    for (int i = 0; i < table; i++) {
      if (GearCodec.outlierIndex(block, o, i) == slot) {
        dst[dstOff + i / (2 * kCap)] = GearCodec.outlierValue(block, o, table, i);
      }
    }
    // the authors' output + error_lr: the low-rank term on every entry, outliers included
    for (int c = 0; c < headDim; c++) {
      dst[dstOff + c] += lowRank(block, slot, c, capacity, headDim);
    }
  }

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
    quantizer().scores(block, count, capacity, headDim, q, qOff, scores, work);
    if (GearCodec.perSide(capacity, outliers) > 0) {
      byte[] array = VectorKernels.array(block);
      if (array != null) {
        correctOutliers(array, count, capacity, headDim, q, qOff, scores);
      } else {
        correctOutliers(block, count, capacity, headDim, q, qOff, scores);
      }
    }
    if (rank > 0) {
      addLowRank(block, count, capacity, headDim, q, qOff, scores);
    }
  }

  /**
   * The outliers' terms {@code q_c·(x − deq_{tc})} of the scored tokens ({@code x} replaces the
   * quantized entry; the low-rank term covers every entry, see {@link #addLowRank}), from the
   * block's array: the table is channel-major ({@code 2k} entries a channel), so a channel's scale,
   * zero point and query element are read once for its entries. The same arithmetic as the segment
   * path below, so the same bits.
   */
  private void correctOutliers(
      byte[] array, int count, int capacity, int headDim, float[] q, int qOff, float[] scores) {
    int perChannel = 2 * GearCodec.perSide(capacity, outliers);
    int table = headDim * perChannel;
    int idxAt = (int) outliersOffset(capacity, headDim);
    int valAt = idxAt + 2 * table;
    for (int c = 0, i = 0; c < headDim; c++) {
      float qc = q[qOff + c];
      float zero = GearCodec.half(array, 4 * c);
      for (int end = i + perChannel; i < end; i++) {
        int t = GearCodec.outlierIndex(array, idxAt, i);
        if ((t & 0xffff) < count) { // −1 (none) reads as 65535, never a scored token
          // an outlier's code is 0 (see encode): deq = 0·s + z = z
          scores[t] += qc * (GearCodec.outlierValue(array, valAt, i) - zero);
        }
      }
    }
  }

  /** {@link #correctOutliers(byte[], int, int, int, float[], int, float[])} off the heap. */
  private void correctOutliers(
      MemorySegment block,
      int count,
      int capacity,
      int headDim,
      float[] q,
      int qOff,
      float[] scores) {
    KiviKeyFormat quantizer = quantizer();
    int perChannel = 2 * GearCodec.perSide(capacity, outliers);
    int table = headDim * perChannel;
    long o = outliersOffset(capacity, headDim);
    long codes = 4L * headDim;
    int rowBytes = headDim * bits / 8;
    for (int c = 0, i = 0; c < headDim; c++) {
      float qc = q[qOff + c];
      float zero = quantizer.channelZeroPoint(block, c);
      float scale = quantizer.channelScale(block, c);
      for (int end = i + perChannel; i < end; i++) {
        int t = GearCodec.outlierIndex(block, o, i);
        if ((t & 0xffff) < count) {
          float deq =
              AsymmetricCodes.get(block, codes + (long) t * rowBytes, c, bits) * scale + zero;
          scores[t] += qc * (GearCodec.outlierValue(block, o, table, i) - deq);
        }
      }
    }
  }

  /**
   * The low-rank term {@code (q·B)·A_tᵀ} of every scored token: {@code q·B} once per block (each of
   * its {@code rank} sums over the channels in order), then one sum of {@code rank} products per
   * token, the fp16 factors read where they are used. Rank 2 from a heap block is unrolled (the
   * same operations, so the same bits as the general loop).
   */
  private void addLowRank(
      MemorySegment block,
      int count,
      int capacity,
      int headDim,
      float[] q,
      int qOff,
      float[] scores) {
    long a = factorsOffset(capacity, headDim);
    long b = bOffset(capacity, headDim);
    byte[] array = VectorKernels.array(block);
    if (rank == 2 && array != null) {
      addLowRank2(array, (int) a, (int) b, count, headDim, q, qOff, scores);
      return;
    }
    float[] qb = new float[rank];
    for (int c = 0; c < headDim; c++) {
      float qc = q[qOff + c];
      for (int j = 0; j < rank; j++) {
        qb[j] += qc * GearCodec.half(block, b, c * rank + j);
      }
    }
    for (int t = 0; t < count; t++) {
      float s = 0f;
      for (int j = 0; j < rank; j++) {
        s += qb[j] * GearCodec.half(block, a, t * rank + j);
      }
      scores[t] += s;
    }
  }

  /** {@link #addLowRank} at rank 2 from a block's array (factors A at byte a, B at byte b). */
  private static void addLowRank2(
      byte[] array, int a, int b, int count, int headDim, float[] q, int qOff, float[] scores) {
    float qb0 = 0f;
    float qb1 = 0f;
    for (int c = 0; c < headDim; c++) {
      float qc = q[qOff + c];
      qb0 += qc * GearCodec.half(array, b + 4 * c);
      qb1 += qc * GearCodec.half(array, b + 4 * c + 2);
    }
    for (int t = 0; t < count; t++) {
      float s = 0f + qb0 * GearCodec.half(array, a + 4 * t);
      scores[t] += s + qb1 * GearCodec.half(array, a + 4 * t + 2);
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
