package io.kvslim.kv.format;

import io.kvslim.kv.attention.VectorKernels;
import java.lang.foreign.MemorySegment;

/**
 * KVQuant keys (Hooper et al., "KVQuant: Towards 10 Million Context Length LLM Inference with KV
 * Cache Quantization", arXiv:2401.18079; METHODS.md Q4): per-channel non-uniform quantization of
 * keys <em>before</em> RoPE ({@link #keysBeforeRope}: the cache rotates each key at its position
 * when it attends), with a per-vector dense-and-sparse split.
 *
 * <p>Per KV head and channel c the calibration gives an offset o_c and a range r_c (the authors'
 * {@code zeropoint} and {@code rangeval} from the per-channel outlier percentiles, {@code
 * quant/kvquant/simquant_module_quantizer.py} of SqueezeAILab/KVQuant, {@code SimQuant.quantize},
 * lines 471–484), and per layer a codebook of 2^bits centroids on [−1, 1] (the k-means "signposts",
 * lines 495–527). A key x is normalized, u_c = (x_c − o_c)/r_c, and each channel coded as the
 * nearest centroid ({@code quant_fn_nuq_recon}, lines 265–362, and {@code
 * round_to_nearest_pole_sim}, lines 10–28). Channels with |u_c| > 1 are outliers; up to {@code
 * outliers} of them per vector, the largest |u_c| first, are kept as fp16 in a sparse list (the
 * authors' per-token cap, {@code get_outliers} with {@code cap_outliers}, lines 30–78); further
 * outliers of the same vector are clamped to the range.
 *
 * <p>The first {@code sinkTokens} tokens of each head (the attention sink, the authors' {@code
 * first_few_fp16}, {@code quant_fn_nuq_recon} lines 298–360) are kept by the store in F16, keys and
 * values, in a block of their own ({@link #fullPrecisionTokens}).
 *
 * <p>Row layout: ⌈d·bits/8⌉ bytes of codes ({@link PackedCodes}), then {@code outliers} entries of
 * a u8 channel index (255: unused) and the fp16 value. The tables live in the format, not in the
 * block: one object per (layer, KV head) ({@link #forHead}).
 *
 * <p>Per-element bound: an inlier's error is at most r_c·E, E the largest distance from a point of
 * [−1, 1] to its nearest centroid ({@link #inlierError}); a sparse outlier's is its fp16 rounding;
 * a clamped one's is r_c·(E + |u_c| − 1).
 *
 * <p>Fused score without dequantizing: {@link #prepareQuery} stores q_c·r_c, Σ q_c·o_c and q; then
 * q·k̂ = Σ_c (q_c r_c)·cent[code_c] + Σ_c q_c o_c, corrected at each sparse outlier.
 */
public final class KvQuantKeyFormat extends RawQueryKeyFormat {
  private final int bits;
  private final int outliers;
  private final float[] centroids;
  private final float[] midpoints;
  private final float[][] offset; // [kvHead][channel]
  private final float[][] range;
  private final int sinkTokens;
  private final int head; // -1: the layer's format, which hands out the heads' formats
  // the codebook's first and last 8 centroids, each padded into one vector (CodeWords.book), for
  // the kernels that look codes up in registers; null without 8 or 16 float lanes
  private final jdk.incubator.vector.IntVector lowBook;
  private final jdk.incubator.vector.IntVector highBook;
  private final KvQuantKeyFormat[] heads;

  /**
   * The format of one layer: its heads' formats are {@link #forHead}.
   *
   * @param offset per KV head and channel, o_c
   * @param range per KV head and channel, r_c (positive)
   * @param outliers sparse outlier entries per key (0..255)
   * @throws IllegalArgumentException on a bad codebook, bits or table shape
   */
  public KvQuantKeyFormat(
      int bits, float[] centroids, float[][] offset, float[][] range, int outliers) {
    this(bits, centroids, offset, range, outliers, 0);
  }

  /**
   * As above, with the first {@code sinkTokens} tokens of each head kept in F16 by the store
   * ({@link #fullPrecisionTokens}; the authors' {@code first_few_fp16}).
   */
  public KvQuantKeyFormat(
      int bits,
      float[] centroids,
      float[][] offset,
      float[][] range,
      int outliers,
      int sinkTokens) {
    this(
        bits,
        KvQuantRows.checkCodebook("kvquant key", centroids, bits),
        offset,
        range,
        outliers,
        sinkTokens,
        -1,
        null);
  }

  private KvQuantKeyFormat(
      int bits,
      float[] centroids,
      float[][] offset,
      float[][] range,
      int outliers,
      int sinkTokens,
      int head,
      KvQuantKeyFormat[] heads) {
    if (sinkTokens < 0 || sinkTokens > 4096) {
      throw new IllegalArgumentException(
          "kvquant keeps 0..4096 first tokens in full precision, got " + sinkTokens);
    }
    this.sinkTokens = sinkTokens;
    if (bits < 2 || bits > 4) {
      throw new IllegalArgumentException("kvquant keys need 2, 3 or 4 bits, got " + bits);
    }
    if (outliers < 0 || outliers > 255) {
      throw new IllegalArgumentException(
          "kvquant keys keep 0..255 outliers per key, got " + outliers);
    }
    if (offset.length == 0 || offset.length != range.length) {
      throw new IllegalArgumentException(
          "kvquant key tables need one offset and range row per KV head");
    }
    for (int g = 0; g < range.length; g++) {
      if (offset[g].length != range[g].length) {
        throw new IllegalArgumentException("kvquant key tables of head " + g + " differ in length");
      }
      for (float r : range[g]) {
        if (!(r > 0f) || !Float.isFinite(r)) {
          throw new IllegalArgumentException("kvquant key ranges must be positive, got " + r);
        }
      }
    }
    this.bits = bits;
    this.outliers = outliers;
    this.centroids = centroids;
    this.midpoints = KvQuantRows.midpoints(centroids);
    this.lowBook = KvQuantRows.lowBook(centroids);
    this.highBook = KvQuantRows.highBook(centroids);
    this.offset = offset;
    this.range = range;
    this.head = head;
    if (head < 0) {
      this.heads = new KvQuantKeyFormat[offset.length];
      for (int g = 0; g < offset.length; g++) {
        this.heads[g] =
            new KvQuantKeyFormat(bits, centroids, offset, range, outliers, sinkTokens, g, null);
      }
    } else {
      this.heads = heads;
    }
  }

  /**
   * The layer's tables as f32: the 2^bits centroids and every KV head's offset and range per
   * channel, {@code 4·(2^bits + 2·kvHeads·d)} bytes (the midpoints are derived from the centroids).
   */
  @Override
  public long tableBytes() {
    long floats = centroids.length;
    for (int g = 0; g < offset.length; g++) {
      floats += offset[g].length + range[g].length;
    }
    return 4L * floats;
  }

  public int bits() {
    return bits;
  }

  public int outliers() {
    return outliers;
  }

  /** The format of KV head {@code kvHead}, with its channels' offsets and ranges. */
  @Override
  public KvFormat forHead(int kvHead) {
    if (head >= 0) {
      if (kvHead != head) {
        throw new IllegalArgumentException("this is KV head " + head + "'s kvquant key format");
      }
      return this;
    }
    if (kvHead < 0 || kvHead >= heads.length) {
      throw new IllegalArgumentException(
          "kvquant key tables cover " + heads.length + " KV heads, not head " + kvHead);
    }
    return heads[kvHead];
  }

  @Override
  public boolean keysBeforeRope() {
    return true;
  }

  /** The attention-sink tokens the store keeps in F16 at the start of each head. */
  @Override
  public int fullPrecisionTokens() {
    return sinkTokens;
  }

  @Override
  public String name() {
    return "kvquant_k" + bits;
  }

  public int codeBytes(int headDim) {
    return PackedCodes.bytes(headDim, bits);
  }

  @Override
  public int rowBytes(int headDim) {
    return codeBytes(headDim) + KvQuantRows.OUTLIER_BYTES * outliers;
  }

  /** The sparse outlier entries (indices and fp16 values). */
  @Override
  protected int rowScaleBytes(int headDim) {
    return KvQuantRows.OUTLIER_BYTES * outliers;
  }

  @Override
  public void checkHeadDim(int headDim) {
    if (headDim <= 0 || headDim > 255 || offset[0].length != headDim) {
      throw new IllegalArgumentException(
          "format "
              + name()
              + " was calibrated for a head dimension of "
              + offset[0].length
              + " (at most 255), not "
              + headDim);
    }
  }

  /** E: the largest normalized inlier error of the codebook ({@code |x − x̂| ≤ r_c·E}). */
  public float inlierError() {
    return KvQuantRows.maxError(centroids);
  }

  /** o_c per KV head and channel (shared, not copied: do not modify). */
  public float[][] offsets() {
    return offset;
  }

  /** r_c per KV head and channel (shared, not copied: do not modify). */
  public float[][] ranges() {
    return range;
  }

  /** Centroid {@code i} of the codebook (a normalized value in [−1, 1]). */
  public float centroid(int i) {
    return centroids[i];
  }

  /** r_c of this head's channel {@code c}. */
  public float range(int c) {
    return range[checkedHead()][c];
  }

  /** o_c of this head's channel {@code c}. */
  public float offset(int c) {
    return offset[checkedHead()][c];
  }

  private int checkedHead() {
    if (head < 0) {
      throw new IllegalStateException(
          "the layer's kvquant key format stores no tokens; use forHead(kvHead)");
    }
    return head;
  }

  @Override
  protected void encodeRow(float[] src, int srcOff, MemorySegment block, long offset, int headDim) {
    int g = checkedHead();
    float[] o = this.offset[g];
    float[] r = this.range[g];
    float[] excess = new float[headDim];
    int[] codes = PackedCodes.scratch(headDim);
    for (int j = 0; j < headDim; j++) {
      float u = (src[srcOff + j] - o[j]) / r[j];
      excess[j] = Math.abs(u);
      codes[j] = KvQuantRows.nearest(midpoints, Math.max(-1f, Math.min(1f, u)));
    }
    int[] chosen = new int[Math.max(1, outliers)];
    int count = KvQuantRows.pickLargest(excess, headDim, 1f, outliers, chosen);
    float[] values = new float[chosen.length];
    for (int i = 0; i < count; i++) {
      values[i] = src[srcOff + chosen[i]];
    }
    PackedCodes.pack(codes, headDim, bits, block, offset);
    KvQuantRows.writeOutliers(chosen, values, count, outliers, block, offset + codeBytes(headDim));
  }

  @Override
  protected void decodeRow(MemorySegment block, long offset, int headDim, float[] dst, int dstOff) {
    int g = checkedHead();
    float[] o = this.offset[g];
    float[] r = this.range[g];
    PackedCodes.lookup(block, offset, headDim, bits, centroids, dst, dstOff);
    for (int j = 0; j < headDim; j++) {
      dst[dstOff + j] = dst[dstOff + j] * r[j] + o[j];
    }
    KvQuantRows.applyOutliers(block, offset + codeBytes(headDim), outliers, dst, dstOff);
  }

  @Override
  public int preparedQueryLength(int headDim) {
    return 2 * headDim + 1;
  }

  /** [q_c·r_c (d), Σ q_c·o_c, q (d)]. */
  @Override
  public void prepareQuery(float[] q, int qOff, int headDim, float[] dst, int dstOff) {
    int g = checkedHead();
    float[] o = this.offset[g];
    float[] r = this.range[g];
    float qo = 0f;
    for (int j = 0; j < headDim; j++) {
      dst[dstOff + j] = q[qOff + j] * r[j];
      qo += q[qOff + j] * o[j];
    }
    dst[dstOff + headDim] = qo;
    System.arraycopy(q, qOff, dst, dstOff + headDim + 1, headDim);
  }

  /**
   * {@link #dotRow} for each slot without its per-row calls: each vector of a row's codes is cut
   * from the packed bytes in registers ({@link CodeWords}), looked up in the codebook held in one
   * vector (a permute) and multiplied into the lane-wise products with the query (the same fused
   * multiply-adds per lane as {@link VectorKernels#dot}); four rows' lanes are summed in one tree
   * ({@code AttentionKernels.sumLanes4}, the same bits as one sum each); then {@code Σ q_c o_c} and
   * each outlier's correction are added in {@link #dotRow}'s order: the same bits.
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
    int codeBytes = codeBytes(headDim);
    int rowBytes = rowBytes(headDim);
    if (array == null
        || !CodeWords.applies(bits, headDim)
        || CodeWords.of(bits).overrun > rowBytes - codeBytes
        || centroids.length > CodeWords.LANES
        || work.length < 4 + CodeWords.LANES) {
      super.scores(block, count, capacity, headDim, prepared, pOff, scores, work);
      return;
    }
    scoresInRegisters(
        array,
        count,
        headDim,
        rowBytes,
        codeBytes,
        CodeWords.of(bits),
        CodeWords.book(centroids),
        prepared,
        pOff,
        scores,
        work);
    if (outliers > 0) {
      corrections(array, count, headDim, rowBytes, codeBytes, prepared, pOff, scores);
    }
  }

  private static void scoresInRegisters(
      byte[] array,
      int count,
      int headDim,
      int rowBytes,
      int codeBytes,
      CodeWords w,
      jdk.incubator.vector.IntVector book,
      float[] prepared,
      int pOff,
      float[] scores,
      float[] sums) {
    jdk.incubator.vector.VectorSpecies<Float> species = CodeWords.FLOATS;
    jdk.incubator.vector.VectorSpecies<Integer> ints = CodeWords.INTS;
    int lanes = CodeWords.LANES;
    int highByte = w.highByte;
    int mask = w.mask;
    int vectorBytes = w.vectorBytes;
    jdk.incubator.vector.IntVector shifts = w.shifts;
    jdk.incubator.vector.VectorMask<Integer> high = w.high;
    float qo = prepared[pOff + headDim];
    int s = 0;
    for (; s + 3 < count; s += 4) {
      jdk.incubator.vector.FloatVector d0 = jdk.incubator.vector.FloatVector.zero(species);
      jdk.incubator.vector.FloatVector d1 = d0;
      jdk.incubator.vector.FloatVector d2 = d0;
      jdk.incubator.vector.FloatVector d3 = d0;
      for (int j = 0, at = s * rowBytes; j < headDim; j += lanes, at += vectorBytes) {
        jdk.incubator.vector.FloatVector q =
            jdk.incubator.vector.FloatVector.fromArray(species, prepared, pOff + j);
        int a1 = at + rowBytes;
        int a2 = a1 + rowBytes;
        int a3 = a2 + rowBytes;
        d0 =
            q.fma(
                jdk.incubator.vector.IntVector.broadcast(ints, CodeWords.word(array, at))
                    .blend(
                        jdk.incubator.vector.IntVector.broadcast(
                            ints, CodeWords.word(array, at + highByte)),
                        high)
                    .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
                    .and(mask)
                    .selectFrom(book)
                    .reinterpretAsFloats(),
                d0);
        d1 =
            q.fma(
                jdk.incubator.vector.IntVector.broadcast(ints, CodeWords.word(array, a1))
                    .blend(
                        jdk.incubator.vector.IntVector.broadcast(
                            ints, CodeWords.word(array, a1 + highByte)),
                        high)
                    .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
                    .and(mask)
                    .selectFrom(book)
                    .reinterpretAsFloats(),
                d1);
        d2 =
            q.fma(
                jdk.incubator.vector.IntVector.broadcast(ints, CodeWords.word(array, a2))
                    .blend(
                        jdk.incubator.vector.IntVector.broadcast(
                            ints, CodeWords.word(array, a2 + highByte)),
                        high)
                    .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
                    .and(mask)
                    .selectFrom(book)
                    .reinterpretAsFloats(),
                d2);
        d3 =
            q.fma(
                jdk.incubator.vector.IntVector.broadcast(ints, CodeWords.word(array, a3))
                    .blend(
                        jdk.incubator.vector.IntVector.broadcast(
                            ints, CodeWords.word(array, a3 + highByte)),
                        high)
                    .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
                    .and(mask)
                    .selectFrom(book)
                    .reinterpretAsFloats(),
                d3);
      }
      io.kvslim.kv.attention.AttentionKernels.sumLanes4(d0, d1, d2, d3, sums, 0, sums, 4);
      scores[s] = sums[0] + qo;
      scores[s + 1] = sums[1] + qo;
      scores[s + 2] = sums[2] + qo;
      scores[s + 3] = sums[3] + qo;
    }
    for (; s < count; s++) {
      jdk.incubator.vector.FloatVector d = jdk.incubator.vector.FloatVector.zero(species);
      for (int j = 0, at = s * rowBytes; j < headDim; j += lanes, at += vectorBytes) {
        d =
            jdk.incubator.vector.FloatVector.fromArray(species, prepared, pOff + j)
                .fma(
                    jdk.incubator.vector.IntVector.broadcast(ints, CodeWords.word(array, at))
                        .blend(
                            jdk.incubator.vector.IntVector.broadcast(
                                ints, CodeWords.word(array, at + highByte)),
                            high)
                        .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
                        .and(mask)
                        .selectFrom(book)
                        .reinterpretAsFloats(),
                    d);
      }
      scores[s] = io.kvslim.kv.attention.AttentionKernels.sumLanes(d) + qo;
    }
  }

  /** Each used outlier's term of {@link #dotRow}, added to its slot's score in entry order. */
  private void corrections(
      byte[] array,
      int count,
      int headDim,
      int rowBytes,
      int codeBytes,
      float[] q,
      int qOff,
      float[] scores) {
    float[] o = this.offset[head];
    int raw = qOff + headDim + 1;
    for (int s = 0; s < count; s++) {
      int offset = s * rowBytes;
      int sparse = offset + codeBytes;
      float dot = scores[s];
      for (int i = 0; i < outliers; i++) {
        int idx = KvQuantRows.outlierIndex(null, array, sparse, i);
        if (idx != KvQuantRows.UNUSED) {
          float v = KvQuantRows.outlierValue(null, array, sparse, i);
          int code = KvQuantRows.codeAt(array, offset, idx, bits);
          dot += q[raw + idx] * (v - o[idx]) - q[qOff + idx] * centroids[code];
        }
      }
      scores[s] = dot;
    }
  }

  /**
   * Per rotary pair k = (a, b), d/2 each: [q_a r_a, q_b r_b, q_b r_a, −q_a r_b, q_a o_a + q_b o_b,
   * q_b o_a − q_a o_b]; then per channel index c < 256 (an outlier entry's index, 255 for an unused
   * one) the weights of its pair's cos and sin: q_c and q_b for a first channel c = a, q_c and −q_a
   * for a second c = b, both 0 past the head (the outliers' pass reads them without a branch).
   */
  @Override
  public int rotatedQueryLength(int headDim) {
    return 3 * headDim + 2 * OUTLIER_INDICES;
  }

  /** Outlier entry indices: a u8 channel, 255 marking an unused entry. */
  private static final int OUTLIER_INDICES = 256;

  @Override
  public void prepareRotatedQuery(
      float[] q, int qOff, int headDim, int pairOffset, float[] dst, int dstOff) {
    int g = checkedHead();
    float[] o = this.offset[g];
    float[] r = this.range[g];
    int half = headDim / 2;
    for (int k = 0; k < half; k++) {
      int a = firstOfPair(k, pairOffset);
      int b = a + pairOffset;
      float qa = q[qOff + a];
      float qb = q[qOff + b];
      dst[dstOff + k] = qa * r[a];
      dst[dstOff + half + k] = qb * r[b];
      dst[dstOff + 2 * half + k] = qb * r[a];
      dst[dstOff + 3 * half + k] = -qa * r[b];
      dst[dstOff + 4 * half + k] = qa * o[a] + qb * o[b];
      dst[dstOff + 5 * half + k] = qb * o[a] - qa * o[b];
    }
    int wc = dstOff + 3 * headDim;
    int ws = wc + OUTLIER_INDICES;
    java.util.Arrays.fill(dst, wc, ws + OUTLIER_INDICES, 0f);
    for (int k = 0; k < half; k++) {
      int a = firstOfPair(k, pairOffset);
      int b = a + pairOffset;
      dst[wc + a] = q[qOff + a];
      dst[ws + a] = q[qOff + b];
      dst[wc + b] = q[qOff + b];
      dst[ws + b] = -q[qOff + a];
    }
  }

  /** The first channel of rotary pair {@code k}: 2k for adjacent pairs, k for pairs d/2 apart. */
  private static int firstOfPair(int k, int pairOffset) {
    return pairOffset == 1 ? 2 * k : k;
  }

  /**
   * Scores of keys before RoPE, each rotated at its position, without decoding or rotating a key,
   * as KVQuant's decode kernels do (they weight each dequantized channel by {@code cos·q_c + sign·
   * sin·q_partner}: {@code deployment/kvquant/quant_cuda_kernel.cu} of SqueezeAILab/KVQuant at
   * 57a2383, the dense {@code VecQuant4MatMulKernelNUQPerChannelTransposedRopeMHABatchedFusedOpt},
   * lines 3040–3140, and the sparse {@code SPMV_ATOMIC_ROPE_BALANCED}, lines 473–520; they compute
   * the angles in the loop, this kernel reads the model's from its table). With k̂_c =
   * r_c·cent[code_c] + o_c and pair k = (a, b) at angle (cos_k, sin_k):
   *
   * <pre>
   * q·R(p)·k̂ = Σ_k cos_k·(q_a r_a·cent_a + q_b r_b·cent_b + q_a o_a + q_b o_b)
   *          + sin_k·(q_b r_a·cent_a − q_a r_b·cent_b + q_b o_a − q_a o_b)
   * </pre>
   *
   * A dense pass over the codes, then a sparse pass adding each used outlier's {@code (v − k̂_c)}
   * times its weight ({@code q_a cos_k + q_b sin_k} for a first channel, {@code q_b cos_k − q_a
   * sin_k} for a second). For adjacent pairs (ggml's NORMAL RoPE) the dense pass runs in registers,
   * four rows at a time: each run of 2L channels' codes is cut into the pairs' first and second
   * channels ({@link PairCodeWords}), each looked up in the codebook by permutes (a 16-entry
   * codebook on 8 lanes as two halves), so lane k meets pair k's angle straight from the table (at
   * 4 bits on 8 lanes a run's 8 bytes are widened to 8 lanes instead, each byte pair k's two codes,
   * and each row's outliers are added in the same loop: {@link #fourBitPairs(int)}); for pairs half
   * a head apart (NEOX) on 8 lanes, the first and second channels of 8 pairs are two runs of 8
   * codes, each cut as {@link CodeWords} cuts them ({@link #halvesInRegisters}). Within float
   * rounding of the decoded key rotated and scored ({@code KvQuantRopeKernelTest}).
   */
  @Override
  public void scoresAtPositions(
      MemorySegment block,
      int count,
      int headDim,
      float[] prepared,
      int pOff,
      int pairOffset,
      int[] positions,
      float[] cos,
      float[] sin,
      float[] scores,
      int sOff,
      float[] work) {
    byte[] array = VectorKernels.array(block);
    int codeBytes = codeBytes(headDim);
    int rowBytes = rowBytes(headDim);
    int half = headDim / 2;
    PairCodeWords w = PairCodeWords.of(bits, headDim);
    if (array != null && pairOffset == 1 && fourBitPairs(headDim)) {
      fourBitPairs(
          array,
          count,
          half,
          rowBytes,
          codeBytes,
          outliers,
          bits,
          this.offset[head],
          this.range[head],
          centroids,
          lowBook,
          highBook,
          prepared,
          pOff,
          positions,
          cos,
          sin,
          scores,
          sOff);
      return;
    }
    if (array != null && pairOffset == 1 && w != null && lowBook != null) {
      pairsInRegisters(
          array, count, half, rowBytes, w, lowBook, highBook, prepared, pOff, positions, cos, sin,
          scores, sOff);
    } else if (array != null && pairOffset == half && halvesInRegisters(headDim, rowBytes)) {
      halvesInRegisters(
          array,
          count,
          half,
          rowBytes,
          CodeWords.of(bits),
          lowBook,
          highBook,
          prepared,
          pOff,
          positions,
          cos,
          sin,
          scores,
          sOff);
    } else {
      for (int s = 0; s < count; s++) {
        long row = (long) s * rowBytes;
        int t = positions[s] * half;
        float dot = 0f;
        for (int k = 0; k < half; k++) {
          int a = firstOfPair(k, pairOffset);
          float ca = centroids[KvQuantRows.codeAt(block, row, a, bits)];
          float cb = centroids[KvQuantRows.codeAt(block, row, a + pairOffset, bits)];
          float x =
              prepared[pOff + k] * ca
                  + prepared[pOff + half + k] * cb
                  + prepared[pOff + 4 * half + k];
          float y =
              prepared[pOff + 2 * half + k] * ca
                  + prepared[pOff + 3 * half + k] * cb
                  + prepared[pOff + 5 * half + k];
          dot += cos[t + k] * x + sin[t + k] * y;
        }
        scores[sOff + s] = dot;
      }
    }
    if (outliers > 0) {
      rotatedCorrections(
          block,
          array,
          count,
          headDim,
          rowBytes,
          codeBytes,
          prepared,
          pOff,
          pairOffset,
          positions,
          cos,
          sin,
          scores,
          sOff);
    }
  }

  /**
   * Whether {@link #halvesInRegisters} applies to rows of {@code headDim} channels: 8 float lanes
   * (each run of 8 codes one word, {@link CodeWords#highByte} 0), whole runs of 8 pairs, and the
   * last run's word inside the row ({@link CodeWords#overrun}).
   */
  private boolean halvesInRegisters(int headDim, int rowBytes) {
    return CodeWords.LANES == 8
        && lowBook != null
        && headDim % 16 == 0
        && CodeWords.of(bits).highByte == 0
        && CodeWords.of(bits).overrun <= rowBytes - codeBytes(headDim);
  }

  /**
   * The dense pass of {@link #scoresAtPositions} for pairs half a head apart (NEOX RoPE, pair k =
   * channels k and k + d/2), in registers: the pairs k..k+7 have their first channels' codes in the
   * run of channels k..k+7 and their second channels' in the run at k + d/2, each cut from one word
   * as {@link CodeWords} cuts a vector of channels, then weighted as in {@link #pairsInRegisters}.
   */
  private static void halvesInRegisters(
      byte[] array,
      int count,
      int half,
      int rowBytes,
      CodeWords w,
      jdk.incubator.vector.IntVector low,
      jdk.incubator.vector.IntVector high,
      float[] p,
      int pOff,
      int[] positions,
      float[] cos,
      float[] sin,
      float[] scores,
      int sOff) {
    jdk.incubator.vector.VectorSpecies<Float> species = CodeWords.FLOATS;
    jdk.incubator.vector.VectorSpecies<Integer> ints = CodeWords.INTS;
    int mask = w.mask;
    int runBytes = w.vectorBytes;
    int second = half * w.bits / 8; // byte of channel d/2's code
    jdk.incubator.vector.IntVector shifts = w.shifts;
    int ra = pOff;
    int rb = pOff + half;
    int sa = pOff + 2 * half;
    int sb = pOff + 3 * half;
    int oc = pOff + 4 * half;
    int os = pOff + 5 * half;
    for (int s = 0; s < count; s++) {
      jdk.incubator.vector.FloatVector d = jdk.incubator.vector.FloatVector.zero(species);
      int t = positions[s] * half;
      for (int k = 0, a = s * rowBytes; k < half; k += 8, a += runBytes) {
        jdk.incubator.vector.IntVector codeA =
            jdk.incubator.vector.IntVector.broadcast(ints, CodeWords.word(array, a))
                .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
                .and(mask);
        jdk.incubator.vector.IntVector codeB =
            jdk.incubator.vector.IntVector.broadcast(ints, CodeWords.word(array, a + second))
                .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
                .and(mask);
        jdk.incubator.vector.FloatVector ca = centroids(codeA, low, high);
        jdk.incubator.vector.FloatVector cb = centroids(codeB, low, high);
        jdk.incubator.vector.FloatVector x =
            jdk.incubator.vector.FloatVector.fromArray(species, p, ra + k)
                .fma(ca, jdk.incubator.vector.FloatVector.fromArray(species, p, oc + k));
        x = jdk.incubator.vector.FloatVector.fromArray(species, p, rb + k).fma(cb, x);
        jdk.incubator.vector.FloatVector y =
            jdk.incubator.vector.FloatVector.fromArray(species, p, sa + k)
                .fma(ca, jdk.incubator.vector.FloatVector.fromArray(species, p, os + k));
        y = jdk.incubator.vector.FloatVector.fromArray(species, p, sb + k).fma(cb, y);
        d = x.fma(jdk.incubator.vector.FloatVector.fromArray(species, cos, t + k), d);
        d = y.fma(jdk.incubator.vector.FloatVector.fromArray(species, sin, t + k), d);
      }
      scores[sOff + s] = io.kvslim.kv.attention.AttentionKernels.sumLanes(d);
    }
  }

  /**
   * Whether the 4-bit kernel for adjacent pairs applies: 4-bit codes, 8 float lanes, whole runs of
   * 8 pairs.
   */
  private boolean fourBitPairs(int headDim) {
    return bits == 4 && CodeWords.LANES == 8 && lowBook != null && headDim % 16 == 0;
  }

  /** Eight bytes: the codes of eight adjacent pairs at 4 bits. */
  private static final jdk.incubator.vector.VectorSpecies<Byte> PAIR_BYTES =
      jdk.incubator.vector.ByteVector.SPECIES_64;

  /**
   * {@link #scoresAtPositions} for adjacent pairs (NORMAL RoPE) at 4 bits on 8 lanes, outliers
   * included: byte k of a run of 16 channels' codes holds pair k's first channel in its low nibble
   * and its second in the high one, so the run's 8 bytes widened to 8 int lanes (one widening load)
   * give both channels' codes with a mask and a shift, where {@link PairCodeWords} broadcasts two
   * words and blends and shifts each. Each row's outlier corrections follow its dense sum in the
   * same loop (scalar work beside the vector work, instead of a second pass over the block). The
   * same operations in the same order as {@link #pairsInRegisters} and {@link #rotatedCorrections}:
   * the same bits.
   */
  private static void fourBitPairs(
      byte[] array,
      int count,
      int half,
      int rowBytes,
      int codeBytes,
      int outliers,
      int bits,
      float[] o,
      float[] r,
      float[] cents,
      jdk.incubator.vector.IntVector low,
      jdk.incubator.vector.IntVector high,
      float[] p,
      int pOff,
      int[] positions,
      float[] cos,
      float[] sin,
      float[] scores,
      int sOff) {
    jdk.incubator.vector.VectorSpecies<Float> species = CodeWords.FLOATS;
    jdk.incubator.vector.VectorSpecies<Integer> ints = CodeWords.INTS;
    int ra = pOff;
    int rb = pOff + half;
    int sa = pOff + 2 * half;
    int sb = pOff + 3 * half;
    int oc = pOff + 4 * half;
    int os = pOff + 5 * half;
    int wc = pOff + 6 * half;
    int ws = wc + OUTLIER_INDICES;
    int last = 2 * half - 1;
    for (int s = 0; s < count; s++) {
      jdk.incubator.vector.FloatVector d = jdk.incubator.vector.FloatVector.zero(species);
      int row = s * rowBytes;
      int t = positions[s] * half;
      for (int k = 0, a = row; k < half; k += 8, a += 8) {
        jdk.incubator.vector.IntVector codes =
            (jdk.incubator.vector.IntVector)
                jdk.incubator.vector.ByteVector.fromArray(PAIR_BYTES, array, a)
                    .convertShape(jdk.incubator.vector.VectorOperators.B2I, ints, 0);
        jdk.incubator.vector.IntVector codeA = codes.and(15);
        jdk.incubator.vector.IntVector codeB =
            codes.lanewise(jdk.incubator.vector.VectorOperators.LSHR, 4).and(15);
        jdk.incubator.vector.FloatVector ca = centroids(codeA, low, high);
        jdk.incubator.vector.FloatVector cb = centroids(codeB, low, high);
        jdk.incubator.vector.FloatVector x =
            jdk.incubator.vector.FloatVector.fromArray(species, p, ra + k)
                .fma(ca, jdk.incubator.vector.FloatVector.fromArray(species, p, oc + k));
        x = jdk.incubator.vector.FloatVector.fromArray(species, p, rb + k).fma(cb, x);
        jdk.incubator.vector.FloatVector y =
            jdk.incubator.vector.FloatVector.fromArray(species, p, sa + k)
                .fma(ca, jdk.incubator.vector.FloatVector.fromArray(species, p, os + k));
        y = jdk.incubator.vector.FloatVector.fromArray(species, p, sb + k).fma(cb, y);
        d = x.fma(jdk.incubator.vector.FloatVector.fromArray(species, cos, t + k), d);
        d = y.fma(jdk.incubator.vector.FloatVector.fromArray(species, sin, t + k), d);
      }
      float dot = io.kvslim.kv.attention.AttentionKernels.sumLanes(d);
      // rotatedCorrections' terms for adjacent pairs (an unused entry adds ±0)
      for (int i = 0, e = row + codeBytes; i < outliers; i++, e += KvQuantRows.OUTLIER_BYTES) {
        int idx = array[e] & 0xff;
        float v = HalfFloats.fromF16((short) ((array[e + 1] & 0xff) | array[e + 2] << 8));
        int c = Math.min(idx, last);
        float key = r[c] * cents[KvQuantRows.codeAt(array, row, c, bits)] + o[c];
        int pair = c >>> 1;
        dot += (v - key) * (p[wc + idx] * cos[t + pair] + p[ws + idx] * sin[t + pair]);
      }
      scores[sOff + s] = dot;
    }
  }

  private static void pairsInRegisters(
      byte[] array,
      int count,
      int half,
      int rowBytes,
      PairCodeWords w,
      jdk.incubator.vector.IntVector low,
      jdk.incubator.vector.IntVector high,
      float[] p,
      int pOff,
      int[] positions,
      float[] cos,
      float[] sin,
      float[] scores,
      int sOff) {
    jdk.incubator.vector.VectorSpecies<Float> species = CodeWords.FLOATS;
    jdk.incubator.vector.VectorSpecies<Integer> ints = CodeWords.INTS;
    int lanes = CodeWords.LANES;
    int highByte = w.highByte;
    int mask = w.mask;
    int runBytes = w.runBytes;
    jdk.incubator.vector.IntVector shiftA = w.firstShifts;
    jdk.incubator.vector.VectorMask<Integer> highA = w.firstHigh;
    jdk.incubator.vector.IntVector shiftB = w.secondShifts;
    jdk.incubator.vector.VectorMask<Integer> highB = w.secondHigh;
    int ra = pOff;
    int rb = pOff + half;
    int sa = pOff + 2 * half;
    int sb = pOff + 3 * half;
    int oc = pOff + 4 * half;
    int os = pOff + 5 * half;
    // selectFrom wraps each index to the vector (code & 7 on 8 lanes: the first half's entry; on
    // 16 lanes the pair runs hold 2-bit codes only), the lanes with codes above 7 take the second
    // half's. One row at a time: four rows at once (the prepared query held for them) spilled the
    // registers and measured 2x slower
    for (int s = 0; s < count; s++) {
      jdk.incubator.vector.FloatVector d = jdk.incubator.vector.FloatVector.zero(species);
      int t = positions[s] * half;
      for (int k = 0, a = s * rowBytes; k < half; k += lanes, a += runBytes) {
        jdk.incubator.vector.IntVector w0 =
            jdk.incubator.vector.IntVector.broadcast(ints, CodeWords.word(array, a));
        jdk.incubator.vector.IntVector w1 =
            jdk.incubator.vector.IntVector.broadcast(ints, CodeWords.word(array, a + highByte));
        jdk.incubator.vector.IntVector codeA =
            w0.blend(w1, highA)
                .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shiftA)
                .and(mask);
        jdk.incubator.vector.IntVector codeB =
            w0.blend(w1, highB)
                .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shiftB)
                .and(mask);
        jdk.incubator.vector.FloatVector ca = centroids(codeA, low, high);
        jdk.incubator.vector.FloatVector cb = centroids(codeB, low, high);
        jdk.incubator.vector.FloatVector x =
            jdk.incubator.vector.FloatVector.fromArray(species, p, ra + k)
                .fma(ca, jdk.incubator.vector.FloatVector.fromArray(species, p, oc + k));
        x = jdk.incubator.vector.FloatVector.fromArray(species, p, rb + k).fma(cb, x);
        jdk.incubator.vector.FloatVector y =
            jdk.incubator.vector.FloatVector.fromArray(species, p, sa + k)
                .fma(ca, jdk.incubator.vector.FloatVector.fromArray(species, p, os + k));
        y = jdk.incubator.vector.FloatVector.fromArray(species, p, sb + k).fma(cb, y);
        d = x.fma(jdk.incubator.vector.FloatVector.fromArray(species, cos, t + k), d);
        d = y.fma(jdk.incubator.vector.FloatVector.fromArray(species, sin, t + k), d);
      }
      scores[sOff + s] = io.kvslim.kv.attention.AttentionKernels.sumLanes(d);
    }
  }

  /**
   * Each used outlier's {@code (v − k̂_c)} times its channel's weight {@code w_c·cos_k +
   * w'_c·sin_k} ({@link #rotatedQueryLength}), added to its slot's score. Without a branch on the
   * entry: an unused entry (index 255) reads weights 0 and its terms stay finite (its channel
   * clamped into the head for the code and the tables, its pair into the angles' row), so it adds
   * ±0; where the outliers' channels are random, branches on them mispredict half the time.
   */
  private void rotatedCorrections(
      MemorySegment block,
      byte[] array,
      int count,
      int headDim,
      int rowBytes,
      int codeBytes,
      float[] p,
      int pOff,
      int pairOffset,
      int[] positions,
      float[] cos,
      float[] sin,
      float[] scores,
      int sOff) {
    float[] o = this.offset[head];
    float[] r = this.range[head];
    float[] cents = this.centroids;
    int bits = this.bits;
    int wc = pOff + 3 * headDim;
    int ws = wc + OUTLIER_INDICES;
    int half = headDim / 2;
    int last = headDim - 1;
    // pair of channel c: c >>> 1 for adjacent pairs; c, or c − d/2 past the first half, otherwise
    int shift = pairOffset == 1 ? 1 : 0;
    int wrap = pairOffset == 1 ? Integer.MAX_VALUE : half;
    for (int s = 0; s < count; s++) {
      long offset = (long) s * rowBytes;
      long sparse = offset + codeBytes;
      int t = positions[s] * half;
      float dot = scores[sOff + s];
      for (int i = 0; i < outliers; i++) {
        int idx = KvQuantRows.outlierIndex(block, array, sparse, i);
        float v = KvQuantRows.outlierValue(block, array, sparse, i);
        int c = Math.min(idx, last);
        int code =
            array != null
                ? KvQuantRows.codeAt(array, (int) offset, c, bits)
                : KvQuantRows.codeAt(block, offset, c, bits);
        float k = r[c] * cents[code] + o[c];
        int pair = c >>> shift;
        pair = pair >= wrap ? pair - wrap : pair;
        float weight = p[wc + idx] * cos[t + pair] + p[ws + idx] * sin[t + pair];
        dot += (v - k) * weight;
      }
      scores[sOff + s] = dot;
    }
  }

  @Override
  protected float dotRow(
      MemorySegment block, long offset, int headDim, float[] q, int qOff, float[] work) {
    PackedCodes.lookup(block, offset, headDim, bits, centroids, work, 0);
    float dot = VectorKernels.dot(q, qOff, work, 0, headDim) + q[qOff + headDim];
    long at = offset + codeBytes(headDim);
    byte[] array = VectorKernels.array(block);
    float[] o = this.offset[head];
    int raw = qOff + headDim + 1;
    for (int i = 0; i < outliers; i++) {
      int idx = KvQuantRows.outlierIndex(block, array, at, i);
      if (idx != KvQuantRows.UNUSED) {
        float v = KvQuantRows.outlierValue(block, array, at, i);
        dot += q[raw + idx] * (v - o[idx]) - q[qOff + idx] * work[idx];
      }
    }
    return dot;
  }

  /**
   * The 4-bit codebook entries of 8 codes on 8 lanes, the codebook's halves {@code low} (entries
   * 0-7) and {@code high} (8-15) held as float bits: {@code selectFrom} wraps each index to the 8
   * lanes, and codes above 7 take the second half's entry.
   */
  private static jdk.incubator.vector.FloatVector centroids(
      jdk.incubator.vector.IntVector code,
      jdk.incubator.vector.IntVector low,
      jdk.incubator.vector.IntVector high) {
    return code.selectFrom(low)
        .blend(code.selectFrom(high), code.compare(jdk.incubator.vector.VectorOperators.GT, 7))
        .reinterpretAsFloats();
  }
}
