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
 * <p>Fused score: {@code q·k̂_t = q·deq(Q)_t + (q·B)·A_tᵀ + Σ_{outliers (t,c)} q_c·(x − deq_{tc} −
 * L_{tc})}, the first term by {@link KiviKeyFormat}'s fused kernel on the same bytes; no key is
 * dequantized.
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
  private float lowRank(MemorySegment block, int t, int c, int capacity, int headDim) {
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
    for (int c = 0; c < headDim; c++) {
      dst[dstOff + c] += lowRank(block, slot, c, capacity, headDim);
    }
    int kCap = GearCodec.perSide(capacity, outliers);
    int table = headDim * 2 * kCap;
    long o = outliersOffset(capacity, headDim);
    for (int i = 0; i < table; i++) {
      if (GearCodec.outlierIndex(block, o, i) == slot) {
        dst[dstOff + i / (2 * kCap)] = GearCodec.outlierValue(block, o, table, i);
      }
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
    KiviKeyFormat quantizer = quantizer();
    quantizer.scores(block, count, capacity, headDim, q, qOff, scores, work);
    // A's rows of the scored tokens and B as floats once (the values each fp16 read gives), for
    // the low-rank term and every outlier's correction
    long a = factorsOffset(capacity, headDim);
    long b = bOffset(capacity, headDim);
    int bAt = count * rank;
    int n = bAt + headDim * rank;
    float[] f = work.length >= n ? work : new float[n];
    VectorKernels.halves(block, a, bAt, f, 0);
    VectorKernels.halves(block, b, headDim * rank, f, bAt);
    if (rank > 0) {
      float[] qb = new float[rank];
      for (int c = 0; c < headDim; c++) {
        float qc = q[qOff + c];
        for (int j = 0; j < rank; j++) {
          qb[j] += qc * f[bAt + c * rank + j];
        }
      }
      for (int t = 0; t < count; t++) {
        float s = 0f;
        for (int j = 0; j < rank; j++) {
          s += qb[j] * f[t * rank + j];
        }
        scores[t] += s;
      }
    }
    int kCap = GearCodec.perSide(capacity, outliers);
    int table = headDim * 2 * kCap;
    long o = outliersOffset(capacity, headDim);
    long codes = 4L * headDim;
    int rowBytes = headDim * bits / 8;
    byte[] array = VectorKernels.array(block);
    // the table is channel-major (2·kCap entries a channel): a channel's scale, zero point and
    // query element are read once for its entries, the entries corrected in the table's order
    int perChannel = 2 * kCap;
    for (int c = 0, i = 0; c < headDim; c++) {
      float qc = q[qOff + c];
      float scale = 0f;
      float zero = 0f;
      boolean read = false;
      for (int end = i + perChannel; i < end; i++) {
        int t = GearCodec.outlierIndex(block, array, o, i);
        if (t < 0 || t >= count) {
          continue;
        }
        if (!read) {
          scale = quantizer.channelScale(block, c);
          zero = quantizer.channelZeroPoint(block, c);
          read = true;
        }
        int code =
            array != null
                ? AsymmetricCodes.get(array, (int) (codes + (long) t * rowBytes), c, bits)
                : AsymmetricCodes.get(block, codes + (long) t * rowBytes, c, bits);
        float deq = code * scale + zero;
        float lowRank = 0f;
        for (int j = 0; j < rank; j++) {
          lowRank += f[t * rank + j] * f[bAt + c * rank + j];
        }
        float approx = deq + lowRank;
        scores[t] += qc * (GearCodec.outlierValue(block, array, o, table, i) - approx);
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
