package io.kvslim.kv.format;

import java.lang.foreign.MemorySegment;

/**
 * How one block stores the keys (or the values) of its tokens (DESIGN.md §3.3). A block holds up to
 * {@code capacity} token slots of {@code headDim} values each, in one {@link MemorySegment} of
 * {@link #blockBytes} bytes.
 *
 * <p>Two kinds exist. Per-token formats ({@link #perToken()}: F32, F16, BF16, the llama.cpp blocks,
 * KIVI values) encode each token's row on its own: tokens can be appended one at a time and rows
 * can be moved between blocks without requantizing. Token-group formats (KIVI keys, per channel
 * over the block's tokens) encode all tokens of a block at once and never move rows.
 *
 * <p>The attention kernels are fused and work on a whole block: {@link #scores} (the query prepared
 * once by {@link #prepareQuery}) and {@link #accumulateBlock} read the block in its own format; no
 * dequantized copy of the cache is made. {@link #dots} and {@link #accumulate} are their one-query,
 * one-slot forms. {@link #dotsReference} and {@link #accumulateReference} are the scalar references
 * they are tested against (dequantize, then plain loops; llama.cpp's scalar kernel for the formats
 * that quantize the query).
 */
public interface KvFormat {

  /** Name as accepted by {@link KvFormats#byName}, e.g. {@code q8_0}. */
  String name();

  /** True when each token's row is encoded independently (appendable, movable). */
  boolean perToken();

  /** Exact bytes of one block: codes plus scales and zero points. */
  long blockBytes(int capacity, int headDim);

  /** Of {@link #blockBytes}, the bytes that are scales and zero points (for reports). */
  long scaleBytes(int capacity, int headDim);

  /**
   * Checks that this format can store rows of {@code headDim} values.
   *
   * @throws IllegalArgumentException naming the format and what it needs
   */
  void checkHeadDim(int headDim);

  /**
   * Encodes {@code count} rows {@code src[srcOff + t*srcStride ..+headDim)} into slots {@code
   * firstSlot..firstSlot+count)}. Token-group formats require {@code firstSlot == 0} and encode the
   * whole block in one call.
   */
  void encode(
      float[] src,
      int srcOff,
      int srcStride,
      int count,
      MemorySegment block,
      int firstSlot,
      int capacity,
      int headDim);

  /** Decodes the row in {@code slot} into {@code dst[dstOff..+headDim)}. */
  void decode(MemorySegment block, int slot, int capacity, int headDim, float[] dst, int dstOff);

  /**
   * Floats of query this format's {@link #scores} reads for rows of {@code headDim}: the query
   * itself by default, a quantized copy for the llama.cpp block formats.
   */
  default int preparedQueryLength(int headDim) {
    return headDim;
  }

  /**
   * Writes into {@code dst[dstOff..+preparedQueryLength)} the form of {@code q[qOff..+headDim)}
   * that {@link #scores} reads. Done once per query and format, not once per block. By default a
   * copy; formats whose llama.cpp kernel converts the query first (to q8_0/q8_1 for the block
   * formats, to f16 for f16 keys) do that conversion here, so scores equal llama.cpp's.
   */
  default void prepareQuery(float[] q, int qOff, int headDim, float[] dst, int dstOff) {
    System.arraycopy(q, qOff, dst, dstOff, headDim);
  }

  /**
   * Fused scores: {@code scores[s] = q · k_s} for slots {@code 0..count)}, where {@code q} is a
   * query prepared by {@link #prepareQuery} at {@code prepared[pOff..)}. {@code work} has at least
   * {@link #workLength(int)} floats.
   */
  void scores(
      MemorySegment block,
      int count,
      int capacity,
      int headDim,
      float[] prepared,
      int pOff,
      float[] scores,
      float[] work);

  /**
   * {@link #scores} for several prepared queries over the same slots: for each {@code i <
   * rowCount}, query {@code rows[i]} (prepared at {@code prepared[rows[i]·pStride..)}) scores slot
   * {@code s} into {@code out[i·outStride + s]}. Each row's scores equal {@link #scores}'s bit for
   * bit; formats override it to decode each key once for all rows into {@code decoded} (at least
   * {@code capacity × headDim} floats).
   */
  default void scoresRows(
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
    for (int i = 0; i < rowCount; i++) {
      scores(block, count, capacity, headDim, prepared, rows[i] * pStride, decoded, work);
      System.arraycopy(decoded, 0, out, i * outStride, count);
    }
  }

  /**
   * {@link #scores} for a raw query {@code q[qOff..+headDim)}: prepares it, then scores (allocates
   * the prepared copy; the attention loop prepares once per query instead).
   */
  default void dots(
      MemorySegment block,
      int count,
      int capacity,
      int headDim,
      float[] q,
      int qOff,
      float[] scores,
      float[] work) {
    float[] prepared = new float[preparedQueryLength(headDim)];
    prepareQuery(q, qOff, headDim, prepared, 0);
    scores(block, count, capacity, headDim, prepared, 0, scores, work);
  }

  /** Fused weighted sum: {@code acc[0..headDim) += weight * v_slot}. */
  void accumulate(
      MemorySegment block,
      int slot,
      int capacity,
      int headDim,
      float weight,
      float[] acc,
      float[] work);

  /**
   * This format with fused kernels that may assume every row they read holds no infinity or NaN;
   * {@code this} for formats whose kernels do not check a block for them. A {@link
   * io.kvslim.kv.store.KvBlock} hands it out for its rows once {@link #finiteRows} has said so, so
   * a block's check runs once, not at every step. Use it for the kernel calls only: it is not the
   * format the block is stored in (it need not equal it).
   */
  default KvFormat assumingFinite() {
    return this;
  }

  /**
   * Whether rows {@code [from, to)} of the block hold no infinity or NaN, for formats whose {@link
   * #assumingFinite} differs from themselves (the others: {@code false}, never asked).
   */
  default boolean finiteRows(MemorySegment block, int from, int to, int capacity, int headDim) {
    return false;
  }

  /**
   * True when {@link #accumulate} and {@link #accumulateBlock} take normalized probabilities rather
   * than unnormalized softmax weights: f16 values, which round each probability to f16 first, as
   * llama.cpp's (non-flash) {@code KQV} product with an f16 cache does. The attention loop then
   * normalizes those blocks' weights first instead of the sum at the end.
   */
  default boolean accumulatesProbabilities() {
    return false;
  }

  /**
   * Fused weighted sum of a block: {@code acc[accOff..+headDim) += weights[wOff + s] * v_s} for the
   * slots {@code s < count} in order, skipping zero weights (adding {@code 0·v} to a sum that
   * started at {@code +0} would not change it, so skipping is exact).
   */
  void accumulateBlock(
      MemorySegment block,
      int count,
      int capacity,
      int headDim,
      float[] weights,
      int wOff,
      float[] acc,
      int accOff,
      float[] work);

  /**
   * {@link #accumulateBlock} for several query rows over the same slots: for each {@code i <
   * rowCount}, row {@code r = rows[i]} adds {@code weights[wOff + r·wStride + s] · v_s} into {@code
   * acc[r·accStride ..)}. Each row's result equals {@link #accumulateBlock}'s bit for bit; formats
   * override it to decode each value once for all rows (a prefill tile has 16).
   */
  default void accumulateBlockRows(
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
    for (int i = 0; i < rowCount; i++) {
      int r = rows[i];
      accumulateBlock(
          block, count, capacity, headDim, weights, wOff + r * wStride, acc, r * accStride, work);
    }
  }

  /**
   * Floats of one query row's sum of values in this (value) format's own coordinates, which {@link
   * #accumulateCodes} adds to and {@link #addCodes} turns into a vector once: 0 (the default) when
   * the format has none and the attention loop adds its values with {@link #accumulateBlock}.
   * Lexico's is one float per atom: each token adds {@code w·c} to its atoms' entries instead of
   * {@code w·c·D[:, a]} to the head's sum, and the sum is multiplied by the dictionary at the end.
   */
  default int codeSumLength(int headDim) {
    return 0;
  }

  /**
   * {@link #accumulateBlock} into a code sum ({@link #codeSumLength} floats at {@code
   * codeSum[cOff..)}): the slots {@code s < count} in order, skipping zero weights.
   */
  default void accumulateCodes(
      MemorySegment block,
      int count,
      int capacity,
      int headDim,
      float[] weights,
      int wOff,
      float[] codeSum,
      int cOff) {
    throw new UnsupportedOperationException(name() + " has no code sum");
  }

  /**
   * {@code acc[accOff..+headDim) +=} the vector the code sum at {@code codeSum[cOff..)} stands for.
   */
  default void addCodes(float[] codeSum, int cOff, int headDim, float[] acc, int accOff) {
    throw new UnsupportedOperationException(name() + " has no code sum");
  }

  /**
   * The format one KV head stores its rows in: this one, unless the format holds per-head tables
   * (KVQuant's calibrated key channels) and hands each head its own.
   */
  default KvFormat forHead(int kvHead) {
    return this;
  }

  /**
   * Bytes of the tables this format reads beside its rows, held once per layer and shared by the
   * layer's tokens and heads (CQ's codebooks, Lexico's dictionary, KVQuant's per-channel offsets,
   * ranges and levels), as stored: the cache counts them in its bytes once per layer ({@code
   * PagedLayerKv#tableBytes}). 0 for formats without tables. A per-head form ({@link #forHead})
   * reports the whole layer's tables.
   */
  default long tableBytes() {
    return 0;
  }

  /**
   * True when this (key) format is meant for keys before RoPE: the cache then stores keys as
   * projected and rotates each at its own position when it attends (KVQuant, METHODS.md M6).
   */
  default boolean keysBeforeRope() {
    return false;
  }

  /**
   * Floats of the query that {@link #scoresAtPositions} reads, or 0 (the default) when this (key)
   * format has no such kernel: the cache then decodes each key, rotates it at its position and
   * scores it in F32.
   */
  default int rotatedQueryLength(int headDim) {
    return 0;
  }

  /**
   * Writes into {@code dst[dstOff..+rotatedQueryLength)} what {@link #scoresAtPositions} reads of
   * the query {@code q[qOff..+headDim)}, whose channels RoPE rotates in pairs {@code (a, a +
   * pairOffset)} ({@link io.kvslim.kv.Rotary#pairOffset}: 1 for adjacent pairs, {@code headDim/2}
   * for pairs half a head apart). Once per query and format.
   */
  default void prepareRotatedQuery(
      float[] q, int qOff, int headDim, int pairOffset, float[] dst, int dstOff) {
    throw new UnsupportedOperationException(name() + " has no kernel for keys before RoPE");
  }

  /**
   * Fused scores of keys stored before RoPE, each rotated at its position: {@code scores[sOff + s]
   * = q · R(p_s)·k_s} for slots {@code 0..count)}, {@code p_s = positions[s]}, R the rotation of
   * every pair (a, b) of channels by its angle, {@code (k_a cos − k_b sin, k_a sin + k_b cos)}, as
   * {@link io.kvslim.kv.Rotary#rotate} does; pair {@code i}'s angle at position p has its cosine
   * and sine at {@code cos[p·headDim/2 + i]} and {@code sin[...]}. The query is prepared by {@link
   * #prepareRotatedQuery} with the same {@code pairOffset}; {@code work} has at least {@link
   * #workLength(int)} floats. Every channel is rotated (a rotary over part of the head is not
   * handled here).
   */
  default void scoresAtPositions(
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
    throw new UnsupportedOperationException(name() + " has no kernel for keys before RoPE");
  }

  /**
   * Tokens at the start of each head that a (key) format leaves in full precision: the store keeps
   * them, keys and values, in F16 in a block of their own (KVQuant's attention sink, the authors'
   * {@code first_few_fp16}). 0 by default.
   */
  default int fullPrecisionTokens() {
    return 0;
  }

  /** Copies a row without requantizing. Only for {@link #perToken()} formats. */
  default void copyRow(
      MemorySegment from, int fromSlot, MemorySegment to, int toSlot, int capacity, int headDim) {
    throw new UnsupportedOperationException(name() + " rows cannot be moved one at a time");
  }

  /** Scratch floats the fused kernels of any format need for rows of {@code headDim}. */
  static int workLength(int headDim) {
    return 3 * headDim + 64;
  }

  /**
   * Scalar reference of {@link #dots}: dequantize each row, then a sequential dot product with the
   * prepared query (formats that quantize the query override this with llama.cpp's scalar kernel).
   */
  default void dotsReference(
      MemorySegment block,
      int count,
      int capacity,
      int headDim,
      float[] q,
      int qOff,
      float[] scores) {
    float[] row = new float[headDim];
    float[] prepared = new float[preparedQueryLength(headDim)];
    prepareQuery(q, qOff, headDim, prepared, 0);
    for (int s = 0; s < count; s++) {
      decode(block, s, capacity, headDim, row, 0);
      float sum = 0f;
      for (int j = 0; j < headDim; j++) {
        sum += prepared[j] * row[j];
      }
      scores[s] = sum;
    }
  }

  /** Scalar reference of {@link #accumulate}: dequantize the row, then add it weighted. */
  default void accumulateReference(
      MemorySegment block, int slot, int capacity, int headDim, float weight, float[] acc) {
    float[] row = new float[headDim];
    decode(block, slot, capacity, headDim, row, 0);
    for (int j = 0; j < headDim; j++) {
      acc[j] += weight * row[j];
    }
  }
}
