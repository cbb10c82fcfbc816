package io.kvslim.kv.format;

import io.kvslim.kv.attention.AttentionKernels;
import io.kvslim.kv.attention.VectorKernels;
import java.lang.foreign.MemorySegment;

/**
 * GEAR values (Kang et al. 2024, arXiv:2403.05527; METHODS.md H3), the authors' GEAR-KIVI variant
 * ({@code gearslkivi_tokenQ_new}, {@code compress_function.py} lines 204–211): per block of tokens,
 * V ≈ deq(Q) + A·Bᵀ + S, where S holds each token's {@code k} smallest and {@code k} largest
 * entries exactly, Q is KIVI's per-token quantization in groups of {@code group} channels ({@link
 * KiviValueFormat}; groups of {@code min(group, d)}, the authors' groups running over the heads
 * side by side) of the values with those entries set to the token's mean, and A·Bᵀ the rank-r
 * power-iteration approximation of the residual over the block ({@link GearCodec}).
 *
 * <p>Layout for {@code C} slots: {@code C} {@link KiviValueFormat} rows, then A ({@code C × r}
 * fp16), then the outliers of token after token, {@code 2k} each ({@code k = GearCodec.perSide(d,
 * outliers)}; indices (2 bytes, the channel, −1 for none) then values (f32)), then B ({@code d × r}
 * fp16) last. The kernels take {@code C} from the segment's size, since the attention passes the
 * filled count of a value part as its capacity.
 *
 * <p>The reconstruction is the authors' {@code output + error_lr} (lines 204–211): the quantized
 * values with the outliers put back exactly ({@code gears_tokenQ}, lines 297–333), plus the
 * low-rank term on every entry, outliers included.
 *
 * <p>Fused weighted sum: {@code Σ_t p_t·v̂_t = Σ_t p_t·deq(Q)_t + (pᵀA)·Bᵀ + Σ_{outliers (t,c)}
 * p_t·(x − deq_{tc})}, the first term by {@link KiviValueFormat}'s fused kernel on the same bytes.
 */
public record GearValueFormat(int bits, int group, int rank, int loop, double outliers)
    implements KvFormat {

  public GearValueFormat {
    GearCodec.checkKnobs(bits, rank, loop, outliers);
    new KiviValueFormat(bits, group);
  }

  /** The value quantizer: groups of {@code min(group, headDim)} channels. */
  private KiviValueFormat quantizer(int headDim) {
    return new KiviValueFormat(bits, Math.min(group, headDim));
  }

  @Override
  public String name() {
    return "gear_v" + bits + "_g" + group + "_r" + rank + "_s" + outliers;
  }

  @Override
  public boolean perToken() {
    return false;
  }

  private int perSide(int headDim) {
    return GearCodec.perSide(headDim, outliers);
  }

  private long perTokenBytes(int headDim) {
    return quantizer(headDim).rowBytes(headDim)
        + 2L * rank
        + 2L * perSide(headDim) * GearCodec.OUTLIER_BYTES;
  }

  @Override
  public long blockBytes(int capacity, int headDim) {
    return capacity * perTokenBytes(headDim) + 2L * headDim * rank;
  }

  /** The slots a block of this size holds. */
  private int slots(MemorySegment block, int headDim) {
    return Math.toIntExact((block.byteSize() - 2L * headDim * rank) / perTokenBytes(headDim));
  }

  private long aOffset(int slots, int headDim) {
    return (long) slots * quantizer(headDim).rowBytes(headDim);
  }

  private long outliersOffset(int slots, int headDim) {
    return aOffset(slots, headDim) + 2L * slots * rank;
  }

  private long bOffset(int slots, int headDim) {
    return outliersOffset(slots, headDim)
        + (long) slots * 2 * perSide(headDim) * GearCodec.OUTLIER_BYTES;
  }

  @Override
  public long scaleBytes(int capacity, int headDim) {
    return blockBytes(capacity, headDim) - (long) capacity * headDim * bits / 8;
  }

  @Override
  public void checkHeadDim(int headDim) {
    quantizer(headDim).checkHeadDim(headDim);
    if (headDim > Short.MAX_VALUE) {
      throw new IllegalArgumentException("format " + name() + " needs headDim < 32768");
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
    int d = headDim;
    int slots = slots(block, d);
    float[] x = new float[count * d];
    for (int t = 0; t < count; t++) {
      System.arraycopy(src, srcOff + t * srcStride, x, t * d, d);
    }
    int k = perSide(d);
    int table = slots * 2 * k;
    short[] idx = new short[table];
    float[] val = new float[table];
    java.util.Arrays.fill(idx, (short) -1);
    for (int t = 0; t < count; t++) {
      GearCodec.takeOutliers(x, t * d, 1, d, k, idx, val, t * 2 * k);
    }
    KiviValueFormat q = quantizer(d);
    q.encode(x, 0, d, count, block, 0, slots, d);
    // the codes under the outliers are never decoded (the outlier replaces them): stored as 0, so
    // an outlier's correction is p_t·(x − z) without looking its code up
    for (int t = 0; t < count; t++) {
      for (int j = 0; j < 2 * k; j++) {
        long codes = t * q.rowBytes(d) + q.rowScaleBytes(d);
        AsymmetricCodes.put(block, codes, idx[t * 2 * k + j], bits, 0);
      }
    }
    double[] a = new double[slots * rank];
    double[] b = new double[d * rank];
    if (rank > 0 && count > 0) {
      double[] r = new double[count * d];
      float[] row = new float[d];
      for (int t = 0; t < count; t++) {
        q.decode(block, t, slots, d, row, 0);
        for (int c = 0; c < d; c++) {
          r[t * d + c] = src[srcOff + t * srcStride + c] - row[c];
        }
        for (int j = 0; j < 2 * k; j++) {
          r[t * d + idx[t * 2 * k + j]] = 0; // restored exactly: no residual there
        }
      }
      GearCodec.powerIteration(r, count, d, rank, loop, a, b);
    }
    GearCodec.putHalves(block, aOffset(slots, d), a, slots * rank);
    GearCodec.putHalves(block, bOffset(slots, d), b, d * rank);
    GearCodec.putOutliers(block, outliersOffset(slots, d), idx, val, table);
  }

  @Override
  public void decode(
      MemorySegment block, int slot, int capacity, int headDim, float[] dst, int dstOff) {
    int slots = slots(block, headDim);
    quantizer(headDim).decode(block, slot, slots, headDim, dst, dstOff);
    int k = perSide(headDim);
    int table = slots * 2 * k;
    long o = outliersOffset(slots, headDim);
    for (int i = slot * 2 * k; i < (slot + 1) * 2 * k; i++) {
      int c = GearCodec.outlierIndex(block, o, i);
      if (c >= 0) {
        dst[dstOff + c] = GearCodec.outlierValue(block, o, table, i);
      }
    }
    // the authors' output + error_lr: the low-rank term on every entry, outliers included
    for (int c = 0; c < headDim; c++) {
      dst[dstOff + c] += lowRank(block, slot, c, headDim);
    }
  }

  /** {@code L_{t,c} = Σ_j A_{t,j} B_{c,j}} as stored (fp16 factors, f32 sum). */
  float lowRank(MemorySegment block, int t, int c, int headDim) {
    int slots = slots(block, headDim);
    long a = aOffset(slots, headDim);
    long b = bOffset(slots, headDim);
    float s = 0f;
    for (int j = 0; j < rank; j++) {
      s += GearCodec.half(block, a, t * rank + j) * GearCodec.half(block, b, c * rank + j);
    }
    return s;
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
    for (int s = 0; s < count; s++) {
      decode(block, s, capacity, headDim, work, 0);
      float sum = 0f;
      for (int j = 0; j < headDim; j++) {
        sum += q[qOff + j] * work[j];
      }
      scores[s] = sum;
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
    int slots = slots(block, headDim);
    KiviValueFormat quantizer = quantizer(headDim);
    // KIVI's register-held one-row kernel (the same bits as its accumulateBlock) where it applies
    if (!quantizer.accumulateOneRow(block, count, headDim, weights, wOff, acc, accOff, work)) {
      quantizer.accumulateBlock(block, count, slots, headDim, weights, wOff, acc, accOff, work);
    }
    if (rank > 0) {
      addLowRank(block, slots, count, headDim, weights, wOff, acc, accOff);
    }
    int k = perSide(headDim);
    if (k == 0) {
      return;
    }
    byte[] array = VectorKernels.array(block);
    if (array != null && group >= headDim) {
      correctOutliers(array, slots, count, headDim, weights, wOff, acc, accOff);
      return;
    }
    int table = slots * 2 * k;
    long o = outliersOffset(slots, headDim);
    long rowBytes = quantizer.rowBytes(headDim);
    int scaleBytes = quantizer.rowScaleBytes(headDim);
    for (int t = 0; t < count; t++) {
      float w = weights[wOff + t];
      if (w == 0f) {
        continue;
      }
      for (int i = t * 2 * k; i < (t + 1) * 2 * k; i++) {
        int c = GearCodec.outlierIndex(block, array, o, i);
        if (c < 0) {
          continue;
        }
        // the outlier's channel of the decoded row alone (the bits decode writes there)
        float deq =
            array != null
                ? quantizer.decodedAt(array, (int) (t * rowBytes), scaleBytes, c)
                : quantizer.decodedAt(block, t * rowBytes, headDim, c);
        acc[accOff + c] += w * (GearCodec.outlierValue(block, array, o, table, i) - deq);
      }
    }
  }

  /**
   * The outliers' terms {@code p_t·(x − deq_{tc})} of a heap block whose rows are one group of
   * channels: a row's scale and zero point read once for its outliers (the values {@link
   * KiviValueFormat#decodedAt} reads, in the same arithmetic, so the same bits).
   */
  private void correctOutliers(
      byte[] array,
      int slots,
      int count,
      int headDim,
      float[] weights,
      int wOff,
      float[] acc,
      int accOff) {
    int perToken = 2 * perSide(headDim);
    int idxAt = (int) outliersOffset(slots, headDim);
    int valAt = idxAt + 2 * slots * perToken;
    KiviValueFormat quantizer = quantizer(headDim);
    int rowBytes = (int) quantizer.rowBytes(headDim);
    for (int t = 0; t < count; t++) {
      float w = weights[wOff + t];
      if (w == 0f) {
        continue;
      }
      float zero = GearCodec.half(array, t * rowBytes); // the row's one group
      for (int i = t * perToken, end = i + perToken; i < end; i++) {
        int c = GearCodec.outlierIndex(array, idxAt, i);
        if (c >= 0) {
          // an outlier's code is 0 (see encode): deq = 0·s + z = z
          acc[accOff + c] += w * (GearCodec.outlierValue(array, valAt, i) - zero);
        }
      }
    }
  }

  /**
   * The low-rank term {@code (pᵀA)·Bᵀ} of a block: {@code pᵀA} once (each of its {@code rank} sums
   * over the weighted slots in order), then one sum of {@code rank} products per channel, the fp16
   * factors read where they are used. Rank 2 from a heap block is unrolled (the same operations, so
   * the same bits as the general loop).
   */
  private void addLowRank(
      MemorySegment block,
      int slots,
      int count,
      int headDim,
      float[] weights,
      int wOff,
      float[] acc,
      int accOff) {
    long a = aOffset(slots, headDim);
    long b = bOffset(slots, headDim);
    byte[] array = VectorKernels.array(block);
    if (rank == 2 && array != null) {
      addLowRank2(array, (int) a, (int) b, count, headDim, weights, wOff, acc, accOff);
      return;
    }
    float[] pa = new float[rank];
    for (int t = 0; t < count; t++) {
      float w = weights[wOff + t];
      if (w != 0f) {
        for (int j = 0; j < rank; j++) {
          pa[j] += w * GearCodec.half(block, a, t * rank + j);
        }
      }
    }
    for (int c = 0; c < headDim; c++) {
      float s = 0f;
      for (int j = 0; j < rank; j++) {
        s += pa[j] * GearCodec.half(block, b, c * rank + j);
      }
      acc[accOff + c] += s;
    }
  }

  /** {@link #addLowRank} at rank 2 from a block's array (factors A at byte a, B at byte b). */
  private static void addLowRank2(
      byte[] array,
      int a,
      int b,
      int count,
      int headDim,
      float[] weights,
      int wOff,
      float[] acc,
      int accOff) {
    float pa0 = 0f;
    float pa1 = 0f;
    for (int t = 0; t < count; t++) {
      float w = weights[wOff + t];
      if (w != 0f) {
        pa0 += w * GearCodec.half(array, a + 4 * t);
        pa1 += w * GearCodec.half(array, a + 4 * t + 2);
      }
    }
    for (int c = 0; c < headDim; c++) {
      float s = 0f + pa0 * GearCodec.half(array, b + 4 * c);
      acc[accOff + c] += s + pa1 * GearCodec.half(array, b + 4 * c + 2);
    }
  }

  @Override
  public String toString() {
    return name();
  }
}
