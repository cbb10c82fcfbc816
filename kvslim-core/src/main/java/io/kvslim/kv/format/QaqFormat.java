package io.kvslim.kv.format;

import io.kvslim.kv.attention.VectorKernels;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;

/**
 * QAQ's mixed-precision rows (Dong et al. 2024, "QAQ: Quality Adaptive Quantization for LLM KV
 * Cache", arXiv:2403.04643; METHODS.md Q6), the authors' "head" level: each token's row of one
 * (layer, KV head) is quantized on its own with its own bit width {@code b}, chosen by {@code
 * QaqMethod} from the attention the token received. Per row, following the authors' {@code
 * src/quantizer.py} (ClubieDong/QAQ-KVCacheQuantization):
 *
 * <ol>
 *   <li>outliers: the {@code low} smallest and {@code high} largest entries stay exact (lines
 *       204–210: {@code k = ⌈r/2·d⌉} below, the entries above the {@code ⌊(1 − r/2)·d⌋}-th value);
 *   <li>the inliers give {@code μ} (their mean) and {@code s = (max − min)/2^b} (lines 226–230);
 *   <li>{@code q = clamp(round((x − μ)/s), −2^{b−1}, 2^{b−1} − 1)}, {@code x̂ = q·s + μ} (lines
 *       249–253), outliers overwritten by their exact values.
 * </ol>
 *
 * {@code μ} and {@code s} are stored as f16 (the authors' fp16 cache, whose size count gives each
 * unit two fp16 numbers, line 289) and the codes are computed with the stored values, so an inlier
 * within the clamp range is off by at most {@code s/2}. Outliers are f32 values with a one-byte
 * channel index (exact; counted in the bytes, the authors count them as 16 bits each, line 276).
 *
 * <p>One instance describes one block: the bit width of each slot ({@code 0} for a slot without a
 * row). Layout for {@code C} slots: the {@code C} bit widths (one byte each), then row after row
 * (slots with {@code b > 0}): {@code μ} (f16), {@code s} (f16), {@code low + high} outliers (index
 * byte, f32 value), then the {@code d} codes {@code q + 2^{b−1}} packed as {@link PackedCodes}
 * ({@code ⌈d·b/8⌉} bytes).
 *
 * <p>Fused kernels: {@code q·k̂ = s·(q·codes − 2^{b−1}·Σq) + μ·Σq + Σ_o q_o·(x_o − x̂_o)} and
 * {@code acc += w·s·codes + w·(μ − 2^{b−1}·s)} plus the outliers' corrections; no row is
 * dequantized into a copy. An outlier's code is {@code 2^{b−1}} (its {@code q} is 0), so its coded
 * value {@code x̂_o} is {@code 0·s + μ}, the same for the row's outliers: the corrections read no
 * code. A block on the heap has its codes cut in registers ({@link Cut}: every width 1..8, a loop
 * per number of code words, 8-bit codes widened from bytes), the same bits as the general path
 * (unpack into memory, then {@link VectorKernels#dot}) that a block off the heap takes.
 */
public final class QaqFormat implements KvFormat {
  /** Bytes of one outlier: a channel index and an f32 value. */
  public static final int OUTLIER_BYTES = 5;

  /** Bytes of a row's {@code μ} and {@code s}. */
  public static final int ROW_HEADER_BYTES = 4;

  private final byte[] bits;
  private final int low;
  private final int high;
  private final int headDim;
  private final long[] offsets; // per slot: where its row starts (slots with b = 0: unused)
  private final long total;

  /**
   * @param bits the bit width of each slot, 1..8, then 0 for the slots without a row
   * @param low outliers kept exact below, per row
   * @param high outliers kept exact above, per row
   */
  public QaqFormat(byte[] bits, int low, int high, int headDim) {
    this.bits = bits.clone();
    this.low = low;
    this.high = high;
    this.headDim = headDim;
    checkHeadDim(headDim);
    if (low < 0 || high < 0 || low + high >= headDim) {
      throw new IllegalArgumentException(
          "qaq keeps " + low + "+" + high + " outliers of a row of " + headDim + " values");
    }
    this.offsets = new long[bits.length];
    long at = bits.length;
    boolean ended = false;
    for (int s = 0; s < bits.length; s++) {
      int b = bits[s];
      if (b < 0 || b > 8 || (ended && b != 0)) {
        throw new IllegalArgumentException(
            "qaq bit widths must be 1..8 for the filled slots then 0, got "
                + Arrays.toString(bits));
      }
      ended |= b == 0;
      offsets[s] = at;
      if (b > 0) {
        at += rowBytes(b, headDim, low + high);
      }
    }
    this.total = at;
  }

  /** Bytes of one row of {@code headDim} values at {@code b} bits with {@code outliers} exact. */
  public static long rowBytes(int b, int headDim, int outliers) {
    return ROW_HEADER_BYTES + (long) OUTLIER_BYTES * outliers + PackedCodes.bytes(headDim, b);
  }

  /** Outliers kept below per row for an outlier ratio {@code r} (reference line 204). */
  public static int lowOutliers(double ratio, int headDim) {
    return ratio == 0 ? 0 : (int) Math.ceil(ratio / 2 * headDim);
  }

  /** Outliers kept above per row for an outlier ratio {@code r} (reference line 205). */
  public static int highOutliers(double ratio, int headDim) {
    return ratio == 0 ? 0 : headDim - (int) Math.floor((1.0 - ratio / 2) * headDim);
  }

  /**
   * Range {@code max − min} of a row's inliers: the row {@code x[off..+d)} without its {@code low}
   * smallest and {@code high} largest entries (QAQ's {@code r_i}, reference lines 181–183): the
   * {@code low}-th and {@code (d − 1 − high)}-th entries of the row sorted as {@link
   * Arrays#sort(float[])} sorts it, found by {@link #smallest} and {@link #largest} (one pass each
   * for the usual one outlier a side) instead of sorting the row.
   */
  public static float inlierRange(float[] x, int off, int d, int low, int high) {
    return inlierRange(x, off, d, low, high, new long[Math.max(low, high) + 1]);
  }

  /** {@link #inlierRange(float[], int, int, int, int)} with {@code max(low, high) + 1} scratch. */
  public static float inlierRange(float[] x, int off, int d, int low, int high, long[] scratch) {
    smallest(x, off, d, low + 1, scratch);
    float min = x[off + channel(scratch[low])];
    largest(x, off, d, high + 1, scratch);
    float max = x[off + channel(scratch[0])];
    return max - min;
  }

  /**
   * A key that orders entries as {@link Float#compare} orders their values ({@code −0 < +0}, NaN
   * last), ties by channel: the order of sorting the channels by value then channel.
   */
  private static long key(float x, int c) {
    int b = Float.floatToIntBits(x);
    return ((long) (b ^ ((b >> 31) & 0x7fffffff)) << 32) | c;
  }

  private static int channel(long key) {
    return (int) key;
  }

  /**
   * The keys ({@link #key}) of the {@code k} smallest entries of {@code x[off..+d)} in ascending
   * order into {@code dst[0..k)}: the first {@code k} channels of the row sorted by value, ties by
   * channel.
   */
  static void smallest(float[] x, int off, int d, int k, long[] dst) {
    if (k == 0) {
      return;
    }
    int n = 0;
    for (int c = 0; c < d; c++) {
      long v = key(x[off + c], c);
      if (n < k) {
        n++;
      } else if (v >= dst[k - 1]) {
        continue;
      }
      int j = n - 1;
      while (j > 0 && dst[j - 1] > v) {
        dst[j] = dst[j - 1];
        j--;
      }
      dst[j] = v;
    }
  }

  /**
   * The keys of the {@code k} largest entries of {@code x[off..+d)} in ascending order into {@code
   * dst[0..k)}: the last {@code k} channels of the row sorted by value, ties by channel.
   */
  static void largest(float[] x, int off, int d, int k, long[] dst) {
    if (k == 0) {
      return;
    }
    int n = 0;
    for (int c = 0; c < d; c++) {
      long v = key(x[off + c], c);
      if (n < k) {
        n++;
      } else if (v <= dst[0]) {
        continue;
      }
      // dst[k − n .. k) holds the n largest so far, ascending: v goes in, the smaller ones move
      // down into the free slot k − n (or over dst[0], dropped, when full)
      int j = k - n;
      while (j < k - 1 && dst[j + 1] < v) {
        dst[j] = dst[j + 1];
        j++;
      }
      dst[j] = v;
    }
  }

  /** The bit width of slot {@code s}. */
  public int bits(int slot) {
    return bits[slot];
  }

  /** Slots with a row. */
  public int rows() {
    int n = 0;
    while (n < bits.length && bits[n] > 0) {
      n++;
    }
    return n;
  }

  @Override
  public String name() {
    return "qaq";
  }

  @Override
  public boolean perToken() {
    return false; // each instance holds its block's bit widths
  }

  private void checkShape(int capacity, int dim) {
    if (capacity != bits.length || dim != headDim) {
      throw new IllegalArgumentException(
          "this qaq block has "
              + bits.length
              + " slots of "
              + headDim
              + " values, asked for "
              + capacity
              + " of "
              + dim);
    }
  }

  @Override
  public long blockBytes(int capacity, int dim) {
    checkShape(capacity, dim);
    return total;
  }

  /** Everything but the codes: the bit widths, each row's {@code μ}, {@code s} and outliers. */
  @Override
  public long scaleBytes(int capacity, int dim) {
    long codes = 0;
    for (int s = 0; s < capacity; s++) {
      codes += bits[s] == 0 ? 0 : PackedCodes.bytes(dim, bits[s]);
    }
    return blockBytes(capacity, dim) - codes;
  }

  @Override
  public void checkHeadDim(int dim) {
    if (dim < 2 || dim > 256) {
      throw new IllegalArgumentException("qaq needs rows of 2..256 values, got " + dim);
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
      int dim) {
    checkShape(capacity, dim);
    if (firstSlot != 0 || count != rows()) {
      throw new IllegalArgumentException(
          "a qaq block is encoded at once: " + rows() + " rows from slot 0, got " + count);
    }
    for (int s = 0; s < capacity; s++) {
      block.set(ValueLayout.JAVA_BYTE, s, bits[s]);
    }
    long[] lowKeys = new long[low];
    long[] highKeys = new long[high];
    int[] codes = PackedCodes.scratch(dim);
    boolean[] outlier = new boolean[dim];
    for (int s = 0; s < count; s++) {
      encodeRow(
          src,
          srcOff + s * srcStride,
          bits[s],
          block,
          offsets[s],
          lowKeys,
          highKeys,
          codes,
          outlier);
    }
  }

  private void encodeRow(
      float[] src,
      int off,
      int b,
      MemorySegment block,
      long at,
      long[] lowKeys,
      long[] highKeys,
      int[] codes,
      boolean[] outlier) {
    int d = headDim;
    // the channels sorted ascending by value, ties by channel: the first `low` and last `high`
    // are the outliers, written in that order
    smallest(src, off, d, low, lowKeys);
    largest(src, off, d, high, highKeys);
    Arrays.fill(outlier, false);
    long o = at + ROW_HEADER_BYTES;
    for (int i = 0; i < low + high; i++) {
      int c = channel(i < low ? lowKeys[i] : highKeys[i - low]);
      outlier[c] = true;
      block.set(ValueLayout.JAVA_BYTE, o, (byte) c);
      block.set(F32Format.FLOAT_LE, o + 1, src[off + c]);
      o += OUTLIER_BYTES;
    }
    double sum = 0;
    float min = Float.POSITIVE_INFINITY;
    float max = Float.NEGATIVE_INFINITY;
    for (int c = 0; c < d; c++) {
      if (!outlier[c]) {
        float x = src[off + c];
        sum += x;
        min = Math.min(min, x);
        max = Math.max(max, x);
      }
    }
    short muBits = HalfFloats.toF16((float) (sum / (d - low - high)));
    short scaleBits = HalfFloats.toF16((float) ((max - min) / Math.pow(2, b)));
    block.set(F16Format.SHORT_LE, at, muBits);
    block.set(F16Format.SHORT_LE, at + 2, scaleBits);
    float mu = HalfFloats.fromF16(muBits);
    float scale = HalfFloats.fromF16(scaleBits);
    int half = 1 << (b - 1);
    for (int c = 0; c < d; c++) {
      int q = 0;
      if (!outlier[c] && scale > 0) {
        q = (int) Math.max(-half, Math.min(half - 1, Math.rint((src[off + c] - mu) / scale)));
      }
      codes[c] = q + half;
    }
    PackedCodes.pack(codes, d, b, block, o);
  }

  private long codesAt(int slot) {
    return offsets[slot] + ROW_HEADER_BYTES + (long) OUTLIER_BYTES * (low + high);
  }

  private static float mu(MemorySegment block, long at) {
    return HalfFloats.fromF16(block.get(F16Format.SHORT_LE, at));
  }

  private static float scale(MemorySegment block, long at) {
    return HalfFloats.fromF16(block.get(F16Format.SHORT_LE, at + 2));
  }

  @Override
  public void decode(MemorySegment block, int slot, int capacity, int dim, float[] dst, int off) {
    checkShape(capacity, dim);
    int b = bits[slot];
    long at = offsets[slot];
    float mu = mu(block, at);
    float scale = scale(block, at);
    int half = 1 << (b - 1);
    PackedCodes.lookup(block, codesAt(slot), dim, b, null, dst, off);
    for (int c = 0; c < dim; c++) {
      dst[off + c] = (dst[off + c] - half) * scale + mu;
    }
    long o = at + ROW_HEADER_BYTES;
    for (int i = 0; i < low + high; i++, o += OUTLIER_BYTES) {
      int c = block.get(ValueLayout.JAVA_BYTE, o) & 0xff;
      dst[off + c] = block.get(F32Format.FLOAT_LE, o + 1);
    }
  }

  /**
   * The codes of slot {@code slot} as floats into {@code work[0..d)}. A block on the heap comes
   * here only for the rows whose code words would read past its array (a last row of 1 or 5..8
   * bits: those of 2..4 bits read their last word with {@link Cut#lastWord}), and has them cut one
   * at a time ({@link Cut#codeAt}): the same values as {@link PackedCodes#lookup}, without its
   * general vector path.
   */
  private void codes(MemorySegment block, int slot, int b, float[] work) {
    byte[] array = VectorKernels.array(block);
    if (array == null) {
      PackedCodes.lookup(block, codesAt(slot), headDim, b, null, work, 0);
      return;
    }
    int codes = (int) codesAt(slot);
    for (int c = 0; c < headDim; c++) {
      work[c] = Cut.codeAt(array, codes, c, b);
    }
  }

  /** {@code q·k̂} of slot {@code slot}; {@code work[0..d)} receives its codes. */
  private float dot(
      MemorySegment block, int slot, float[] q, int qOff, float querySum, float[] work) {
    int b = bits[slot];
    long at = offsets[slot];
    float mu = mu(block, at);
    float scale = scale(block, at);
    int half = 1 << (b - 1);
    codes(block, slot, b, work);
    float codeDot = VectorKernels.dot(q, qOff, work, 0, headDim);
    float sum = scale * (codeDot - half * querySum) + mu * querySum;
    long o = at + ROW_HEADER_BYTES;
    for (int i = 0; i < low + high; i++, o += OUTLIER_BYTES) {
      int c = block.get(ValueLayout.JAVA_BYTE, o) & 0xff;
      float exact = block.get(F32Format.FLOAT_LE, o + 1);
      sum += q[qOff + c] * (exact - ((work[c] - half) * scale + mu));
    }
    return sum;
  }

  private static float sum(float[] q, int off, int n) {
    float s = 0f;
    for (int c = 0; c < n; c++) {
      s += q[off + c];
    }
    return s;
  }

  @Override
  public void scores(
      MemorySegment block,
      int count,
      int capacity,
      int dim,
      float[] prepared,
      int pOff,
      float[] scores,
      float[] work) {
    checkShape(capacity, dim);
    float querySum = sum(prepared, pOff, dim);
    byte[] array = Cut.applies(dim) ? VectorKernels.array(block) : null;
    if (array == null) {
      for (int s = 0; s < count; s++) {
        scores[s] = dot(block, s, prepared, pOff, querySum, work);
      }
      return;
    }
    // the rows' widths and places from the block's own bytes (its first bytes are the widths),
    // not from this object's arrays: at depth, every block's format is out of cache
    boolean four = work.length >= Cut.LANES;
    int fixed = ROW_HEADER_BYTES + OUTLIER_BYTES * (low + high);
    int at = capacity; // row s starts at byte `at`, its codes `fixed` bytes on
    for (int s = 0; s < count; s++) {
      int b = array[s];
      int codes = at + fixed;
      int len = fixed + dim * b / 8;
      if (four
          && s + 4 <= count
          && b <= Cut.ONE_WORD_BITS
          && array[s + 1] == b
          && array[s + 2] == b
          && array[s + 3] == b
          && codes + 3 * len + dim * b / 8 + 4 - b <= array.length) {
        // four tokens of one width whose codes fit one word a vector, and whose words all lie in
        // the array (the block's last rows go one at a time: a last word read by Cut.lastWord in
        // each of four chains would make dot1x4 too large for C2 to inline its vector operations):
        // four chains, their lanes summed together (AttentionKernels.sumLanes4 gives sumLanes's
        // bits for each)
        int c1 = codes + len;
        int c2 = c1 + len;
        int c3 = c2 + len;
        Cut.dot1x4(array, codes, c1, c2, c3, Cut.of(b), prepared, pOff, dim, scores, s, work);
        scores[s] = finish(array, b, codes, prepared, pOff, querySum, scores[s]);
        scores[s + 1] = finish(array, b, c1, prepared, pOff, querySum, scores[s + 1]);
        scores[s + 2] = finish(array, b, c2, prepared, pOff, querySum, scores[s + 2]);
        scores[s + 3] = finish(array, b, c3, prepared, pOff, querySum, scores[s + 3]);
        s += 3;
        at += 4 * len;
      } else {
        scores[s] =
            inRegisters(array, codes, b, dim)
                ? dotInRegisters(array, b, codes, prepared, pOff, querySum)
                : dot(block, s, prepared, pOff, querySum, work);
        at += len;
      }
    }
  }

  /**
   * Whether a row's codes at byte {@code codes} are cut in registers: when the words the kernels
   * read lie in the array, the last vector's of a width of one word a vector read by {@link
   * Cut#lastWord} (which stops at the array's end).
   */
  private static boolean inRegisters(byte[] array, long codes, int b, int dim) {
    // one word a vector: only the last vector's word is read by lastWord; the one before it
    // ends 4 − 2b bytes past the row (2 bits or more: inside it)
    long overrun = b <= Cut.ONE_WORD_BITS ? Math.max(0, 4 - 2 * b) : Cut.of(b).overrun;
    return codes + PackedCodes.bytes(dim, b) + overrun <= array.length;
  }

  /**
   * {@link #dot} from the block's array with the codes cut in registers ({@link Cut}): the same
   * products and the same one-accumulator order as {@link VectorKernels#dot} over the unpacked
   * codes, so the same bits; the outliers' coded value {@code 0·s + μ}.
   */
  private float dotInRegisters(
      byte[] array, int b, int codes, float[] q, int qOff, float querySum) {
    return finish(
        array, b, codes, q, qOff, querySum, Cut.dot(array, codes, Cut.of(b), q, qOff, headDim));
  }

  /**
   * A slot's score from its codes' dot product with the query: the scale, zero point and mean
   * folded in, then each exact outlier's difference from its coded value added ({@link
   * #dotInRegisters}).
   */
  private float finish(
      byte[] array, int b, int codes, float[] q, int qOff, float querySum, float codeDot) {
    int at = codes - ROW_HEADER_BYTES - OUTLIER_BYTES * (low + high); // the row's first byte
    float mu = HalfFloats.fromF16(half(array, at));
    float scale = HalfFloats.fromF16(half(array, at + 2));
    int half = 1 << (b - 1);
    float sum = scale * (codeDot - half * querySum) + mu * querySum;
    // an outlier's code is 2^{b−1} (q = 0, encodeRow): its coded value (code − 2^{b−1})·s + μ
    // is 0·s + μ, the same for every outlier of the row
    float coded = 0f * scale + mu;
    int o = at + ROW_HEADER_BYTES;
    for (int i = 0; i < low + high; i++, o += OUTLIER_BYTES) {
      int c = array[o] & 0xff;
      float exact = (float) FLOAT_LE.get(array, o + 1);
      sum += q[qOff + c] * (exact - coded);
    }
    return sum;
  }

  private static final java.lang.invoke.VarHandle FLOAT_LE =
      java.lang.invoke.MethodHandles.byteArrayViewVarHandle(
          float[].class, java.nio.ByteOrder.LITTLE_ENDIAN);

  private static short half(byte[] array, int at) {
    return (short) ((array[at] & 0xff) | array[at + 1] << 8);
  }

  @Override
  public void accumulate(
      MemorySegment block,
      int slot,
      int capacity,
      int dim,
      float weight,
      float[] acc,
      float[] work) {
    checkShape(capacity, dim);
    addRow(block, slot, weight, acc, 0, work);
  }

  private void addRow(
      MemorySegment block, int slot, float weight, float[] acc, int accOff, float[] work) {
    int b = bits[slot];
    long at = offsets[slot];
    float mu = mu(block, at);
    float scale = scale(block, at);
    int half = 1 << (b - 1);
    codes(block, slot, b, work);
    float a = weight * scale;
    float shift = weight * (mu - half * scale);
    for (int c = 0; c < headDim; c++) {
      acc[accOff + c] += a * work[c] + shift;
    }
    long o = at + ROW_HEADER_BYTES;
    for (int i = 0; i < low + high; i++, o += OUTLIER_BYTES) {
      int c = block.get(ValueLayout.JAVA_BYTE, o) & 0xff;
      float exact = block.get(F32Format.FLOAT_LE, o + 1);
      acc[accOff + c] += weight * (exact - ((work[c] - half) * scale + mu));
    }
  }

  @Override
  public void accumulateBlock(
      MemorySegment block,
      int count,
      int capacity,
      int dim,
      float[] weights,
      int wOff,
      float[] acc,
      int accOff,
      float[] work) {
    checkShape(capacity, dim);
    byte[] array = Cut.applies(dim) ? VectorKernels.array(block) : null;
    if (array == null) {
      for (int s = 0; s < count; s++) {
        float w = weights[wOff + s];
        if (w != 0f) {
          addRow(block, s, w, acc, accOff, work);
        }
      }
      return;
    }
    // widths and places from the block's own bytes, as scores
    int fixed = ROW_HEADER_BYTES + OUTLIER_BYTES * (low + high);
    int at = capacity;
    for (int s = 0; s < count; s++) {
      float w = weights[wOff + s];
      int b = array[s];
      int codes = at + fixed;
      at = codes + dim * b / 8;
      if (w == 0f) {
        continue;
      }
      if (inRegisters(array, codes, b, dim)) {
        addRowInRegisters(array, b, codes, w, acc, accOff);
      } else {
        addRow(block, s, w, acc, accOff, work);
      }
    }
  }

  /**
   * {@link #addRow} from the block's array with the codes cut in registers: each channel's {@code
   * acc + (a·code + shift)} as the scalar loop computes it (no fused multiply-add), then the
   * outliers' corrections in the same order.
   */
  private void addRowInRegisters(
      byte[] array, int b, int codes, float weight, float[] acc, int accOff) {
    int at = codes - ROW_HEADER_BYTES - OUTLIER_BYTES * (low + high); // the row's first byte
    float mu = HalfFloats.fromF16(half(array, at));
    float scale = HalfFloats.fromF16(half(array, at + 2));
    int half = 1 << (b - 1);
    float a = weight * scale;
    float shift = weight * (mu - half * scale);
    if (b <= Cut.ONE_WORD_BITS) {
      Cut.addOneWord(array, codes, b, a, shift, acc, accOff, headDim);
    } else {
      Cut.addScaled(array, codes, Cut.of(b), a, shift, acc, accOff, headDim);
    }
    float coded = 0f * scale + mu; // every outlier's coded value (finish)
    int o = at + ROW_HEADER_BYTES;
    for (int i = 0; i < low + high; i++, o += OUTLIER_BYTES) {
      int c = array[o] & 0xff;
      float exact = (float) FLOAT_LE.get(array, o + 1);
      // the correction added to its lane of the vector that addScaled just stored (a masked
      // add, the other lanes kept): a scalar store into it would make the next row's vector load
      // of those channels wait for the store to retire
      int v = accOff + c - (c & (Cut.LANES - 1));
      jdk.incubator.vector.FloatVector.fromArray(Cut.FLOATS, acc, v)
          .lanewise(
              jdk.incubator.vector.VectorOperators.ADD,
              weight * (exact - coded),
              jdk.incubator.vector.VectorMask.fromArray(
                  Cut.FLOATS, ONE_LANE, Cut.LANES - (c & (Cut.LANES - 1))))
          .intoArray(acc, v);
    }
  }

  /**
   * {@code ONE_LANE[LANES]} alone true: from offset {@code LANES − i}, a mask of lane {@code i}.
   */
  private static final boolean[] ONE_LANE = new boolean[2 * Cut.LANES];

  static {
    ONE_LANE[Cut.LANES] = true;
  }

  /**
   * A width's codes cut a float vector of channels at a time in registers, for every width 1..8
   * (where {@link CodeWords} covers 2..4 in two words): the {@code L·b} bits of a vector's {@code
   * L} codes are read as up to four little-endian 32-bit words, word {@code k} at byte {@code
   * wordByte[k]} for the lanes from {@code firstLane[k]} on (each word the first byte of its first
   * lane's code; with 16 lanes, 8 bits take four words, 5 bits three); each lane shifts its word
   * right by its bit offset in it and masks {@code 2^b − 1}. The last word may read up to {@link
   * #overrun} bytes past a row's codes.
   */
  static final class Cut {
    static final jdk.incubator.vector.VectorSpecies<Float> FLOATS = CodeWords.FLOATS;
    static final jdk.incubator.vector.VectorSpecies<Integer> INTS = CodeWords.INTS;
    static final int LANES = FLOATS.length();
    static final jdk.incubator.vector.VectorSpecies<Byte> BYTES =
        jdk.incubator.vector.VectorSpecies.of(
            byte.class, jdk.incubator.vector.VectorShape.forBitSize(Math.max(64, LANES * 8)));
    private static final Cut[] BY_BITS = new Cut[9];

    static {
      for (int b = 1; b <= 8; b++) {
        BY_BITS[b] = new Cut(b);
      }
    }

    final int mask;
    final int vectorBytes;
    final int byte1;
    final int byte2;
    final int byte3;
    final jdk.incubator.vector.VectorMask<Integer> lanes1;
    final jdk.incubator.vector.VectorMask<Integer> lanes2;
    final jdk.incubator.vector.VectorMask<Integer> lanes3;
    final jdk.incubator.vector.IntVector shifts;
    final int overrun;
    final int words;
    final boolean bytes; // 8 bits: a byte a lane

    private Cut(int b) {
      this.mask = (1 << b) - 1;
      this.vectorBytes = LANES * b / 8;
      int[][] layout = wordLayout(LANES, b);
      int[] wordByte = layout[0];
      int[] word = layout[1];
      int[] s = layout[2];
      this.words = layout[3][0];
      this.bytes = b == 8;
      this.byte1 = wordByte[1];
      this.byte2 = wordByte[2];
      this.byte3 = wordByte[3];
      boolean[][] m = new boolean[4][LANES];
      for (int i = 0; i < LANES; i++) {
        m[word[i]][i] = true; // lanes of word 0 keep the first broadcast
      }
      this.lanes1 = jdk.incubator.vector.VectorMask.fromArray(INTS, m[1], 0);
      this.lanes2 = jdk.incubator.vector.VectorMask.fromArray(INTS, m[2], 0);
      this.lanes3 = jdk.incubator.vector.VectorMask.fromArray(INTS, m[3], 0);
      this.shifts = jdk.incubator.vector.IntVector.fromArray(INTS, s, 0);
      this.overrun = Math.max(0, wordByte[words - 1] + 4 - vectorBytes);
    }

    /**
     * The words of a vector of {@code lanes} codes of {@code b} bits: {@code [0]} the byte of each
     * word (4 entries, unused ones 0), {@code [1]} the word of each lane, {@code [2]} each lane's
     * right shift in its word, {@code [3][0]} the number of words. A lane whose code would end past
     * the current word's 32 bits starts a new word at its first byte, so each code lies inside its
     * word (b ≤ 8: a shift of at most 7).
     */
    static int[][] wordLayout(int lanes, int b) {
      int[] wordByte = new int[4];
      int[] word = new int[lanes];
      int[] s = new int[lanes];
      int words = 1;
      for (int i = 0; i < lanes; i++) {
        int bit = i * b;
        if (bit + b > 8 * wordByte[words - 1] + 32) {
          wordByte[words++] = bit / 8;
        }
        word[i] = words - 1;
        s[i] = bit - 8 * wordByte[words - 1];
      }
      return new int[][] {wordByte, word, s, {words}};
    }

    /**
     * True when the register path applies: 8 float lanes (AVX2), whole vectors of channels. Its
     * 16-lane form is written but has not run on an AVX-512 machine yet, so 16 lanes keep the
     * general path, whose bits it must give.
     */
    static boolean applies(int dim) {
      return LANES == 8 && dim % LANES == 0;
    }

    static Cut of(int b) {
      return BY_BITS[b];
    }

    /** Codes of the vector of channels whose bits start at byte {@code at}. */
    private jdk.incubator.vector.IntVector codes(byte[] array, int at) {
      return jdk.incubator.vector.IntVector.broadcast(INTS, CodeWords.word(array, at))
          .blend(
              jdk.incubator.vector.IntVector.broadcast(INTS, CodeWords.word(array, at + byte1)),
              lanes1)
          .blend(
              jdk.incubator.vector.IntVector.broadcast(INTS, CodeWords.word(array, at + byte2)),
              lanes2)
          .blend(
              jdk.incubator.vector.IntVector.broadcast(INTS, CodeWords.word(array, at + byte3)),
              lanes3)
          .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
          .and(mask);
    }

    /**
     * {@code q · codes} of the row at byte {@code at}: one accumulator over the channel vectors in
     * order, then the lane tree ({@link io.kvslim.kv.attention.AttentionKernels#sumLanes}), as
     * {@link VectorKernels#dot} sums; one loop per number of words, so each keeps its constants in
     * registers.
     */
    static float dot(byte[] array, int at, Cut cut, float[] q, int qOff, int dim) {
      if (cut.bytes) {
        return dotBytes(array, at, q, qOff, dim);
      } else if (cut.words == 1) {
        return dot1(array, at, cut, q, qOff, dim);
      } else if (cut.words == 2) {
        return dot2(array, at, cut, q, qOff, dim);
      }
      return dot4(array, at, cut, q, qOff, dim);
    }

    private static float dot1(byte[] array, int at, Cut cut, float[] q, int qOff, int dim) {
      jdk.incubator.vector.FloatVector sum = jdk.incubator.vector.FloatVector.zero(FLOATS);
      jdk.incubator.vector.IntVector shifts = cut.shifts;
      int mask = cut.mask;
      int step = cut.vectorBytes;
      int last = dim - LANES;
      for (int j = 0; j < last; j += LANES, at += step) {
        jdk.incubator.vector.FloatVector c = cut1(CodeWords.word(array, at), shifts, mask);
        sum = jdk.incubator.vector.FloatVector.fromArray(FLOATS, q, qOff + j).fma(c, sum);
      }
      jdk.incubator.vector.FloatVector c = cut1(lastWord(array, at), shifts, mask);
      sum = jdk.incubator.vector.FloatVector.fromArray(FLOATS, q, qOff + last).fma(c, sum);
      return io.kvslim.kv.attention.AttentionKernels.sumLanes(sum);
    }

    /**
     * {@link #dot1} for four rows at once (bytes {@code a0..a3}), into {@code out[o..o+4)}: four
     * independent accumulators over the same channel vectors, each in {@code dot1}'s order, lanes
     * summed by {@link io.kvslim.kv.attention.AttentionKernels#sumLanes4} (the same bits as {@code
     * sumLanes} of each); {@code scratch[0..LANES)} is overwritten.
     */
    static void dot1x4(
        byte[] array,
        int a0,
        int a1,
        int a2,
        int a3,
        Cut cut,
        float[] q,
        int qOff,
        int dim,
        float[] out,
        int o,
        float[] scratch) {
      jdk.incubator.vector.FloatVector s0 = jdk.incubator.vector.FloatVector.zero(FLOATS);
      jdk.incubator.vector.FloatVector s1 = s0;
      jdk.incubator.vector.FloatVector s2 = s0;
      jdk.incubator.vector.FloatVector s3 = s0;
      jdk.incubator.vector.IntVector shifts = cut.shifts;
      int mask = cut.mask;
      int step = cut.vectorBytes;
      for (int j = 0; j < dim; j += LANES, a0 += step, a1 += step, a2 += step, a3 += step) {
        jdk.incubator.vector.FloatVector w =
            jdk.incubator.vector.FloatVector.fromArray(FLOATS, q, qOff + j);
        s0 =
            w.fma(
                (jdk.incubator.vector.FloatVector)
                    jdk.incubator.vector.IntVector.broadcast(INTS, CodeWords.word(array, a0))
                        .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
                        .and(mask)
                        .convert(jdk.incubator.vector.VectorOperators.I2F, 0),
                s0);
        s1 =
            w.fma(
                (jdk.incubator.vector.FloatVector)
                    jdk.incubator.vector.IntVector.broadcast(INTS, CodeWords.word(array, a1))
                        .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
                        .and(mask)
                        .convert(jdk.incubator.vector.VectorOperators.I2F, 0),
                s1);
        s2 =
            w.fma(
                (jdk.incubator.vector.FloatVector)
                    jdk.incubator.vector.IntVector.broadcast(INTS, CodeWords.word(array, a2))
                        .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
                        .and(mask)
                        .convert(jdk.incubator.vector.VectorOperators.I2F, 0),
                s2);
        s3 =
            w.fma(
                (jdk.incubator.vector.FloatVector)
                    jdk.incubator.vector.IntVector.broadcast(INTS, CodeWords.word(array, a3))
                        .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
                        .and(mask)
                        .convert(jdk.incubator.vector.VectorOperators.I2F, 0),
                s3);
      }
      io.kvslim.kv.attention.AttentionKernels.sumLanes4(s0, s1, s2, s3, out, o, scratch, 0);
    }

    private static float dot2(byte[] array, int at, Cut cut, float[] q, int qOff, int dim) {
      jdk.incubator.vector.FloatVector sum = jdk.incubator.vector.FloatVector.zero(FLOATS);
      jdk.incubator.vector.IntVector shifts = cut.shifts;
      jdk.incubator.vector.VectorMask<Integer> lanes1 = cut.lanes1;
      int byte1 = cut.byte1;
      int mask = cut.mask;
      int step = cut.vectorBytes;
      for (int j = 0; j < dim; j += LANES, at += step) {
        jdk.incubator.vector.FloatVector c =
            (jdk.incubator.vector.FloatVector)
                jdk.incubator.vector.IntVector.broadcast(INTS, CodeWords.word(array, at))
                    .blend(
                        jdk.incubator.vector.IntVector.broadcast(
                            INTS, CodeWords.word(array, at + byte1)),
                        lanes1)
                    .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
                    .and(mask)
                    .convert(jdk.incubator.vector.VectorOperators.I2F, 0);
        sum = jdk.incubator.vector.FloatVector.fromArray(FLOATS, q, qOff + j).fma(c, sum);
      }
      return io.kvslim.kv.attention.AttentionKernels.sumLanes(sum);
    }

    private static float dot4(byte[] array, int at, Cut cut, float[] q, int qOff, int dim) {
      jdk.incubator.vector.FloatVector sum = jdk.incubator.vector.FloatVector.zero(FLOATS);
      int step = cut.vectorBytes;
      for (int j = 0; j < dim; j += LANES, at += step) {
        jdk.incubator.vector.FloatVector c =
            (jdk.incubator.vector.FloatVector)
                cut.codes(array, at).convert(jdk.incubator.vector.VectorOperators.I2F, 0);
        sum = jdk.incubator.vector.FloatVector.fromArray(FLOATS, q, qOff + j).fma(c, sum);
      }
      return io.kvslim.kv.attention.AttentionKernels.sumLanes(sum);
    }

    /** 8-bit codes: one byte a lane, widened. */
    private static float dotBytes(byte[] array, int at, float[] q, int qOff, int dim) {
      jdk.incubator.vector.FloatVector sum = jdk.incubator.vector.FloatVector.zero(FLOATS);
      for (int j = 0; j < dim; j += LANES, at += LANES) {
        jdk.incubator.vector.FloatVector c =
            (jdk.incubator.vector.FloatVector)
                jdk.incubator.vector.ByteVector.fromArray(BYTES, array, at)
                    .convertShape(jdk.incubator.vector.VectorOperators.ZERO_EXTEND_B2I, INTS, 0)
                    .convert(jdk.incubator.vector.VectorOperators.I2F, 0);
        sum = jdk.incubator.vector.FloatVector.fromArray(FLOATS, q, qOff + j).fma(c, sum);
      }
      return io.kvslim.kv.attention.AttentionKernels.sumLanes(sum);
    }

    /**
     * {@code acc[c] += a·code_c + shift} for the row at byte {@code at}; one loop per number of
     * words, as {@link #dot}.
     */
    static void addScaled(
        byte[] array, int at, Cut cut, float a, float shift, float[] acc, int accOff, int dim) {
      if (cut.bytes) {
        addBytes(array, at, a, shift, acc, accOff, dim);
      } else if (cut.words == 1) {
        add1(array, at, cut, a, shift, acc, accOff, dim);
      } else if (cut.words == 2) {
        add2(array, at, cut, a, shift, acc, accOff, dim);
      } else {
        add4(array, at, cut, a, shift, acc, accOff, dim);
      }
    }

    private static void add1(
        byte[] array, int at, Cut cut, float a, float shift, float[] acc, int accOff, int dim) {
      jdk.incubator.vector.IntVector shifts = cut.shifts;
      int mask = cut.mask;
      int step = cut.vectorBytes;
      for (int j = 0; j < dim; j += LANES, at += step) {
        jdk.incubator.vector.FloatVector c =
            (jdk.incubator.vector.FloatVector)
                jdk.incubator.vector.IntVector.broadcast(INTS, CodeWords.word(array, at))
                    .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
                    .and(mask)
                    .convert(jdk.incubator.vector.VectorOperators.I2F, 0);
        jdk.incubator.vector.FloatVector.fromArray(FLOATS, acc, accOff + j)
            .add(c.mul(a).add(shift))
            .intoArray(acc, accOff + j);
      }
    }

    private static void add2(
        byte[] array, int at, Cut cut, float a, float shift, float[] acc, int accOff, int dim) {
      jdk.incubator.vector.IntVector shifts = cut.shifts;
      jdk.incubator.vector.VectorMask<Integer> lanes1 = cut.lanes1;
      int byte1 = cut.byte1;
      int mask = cut.mask;
      int step = cut.vectorBytes;
      for (int j = 0; j < dim; j += LANES, at += step) {
        jdk.incubator.vector.FloatVector c =
            (jdk.incubator.vector.FloatVector)
                jdk.incubator.vector.IntVector.broadcast(INTS, CodeWords.word(array, at))
                    .blend(
                        jdk.incubator.vector.IntVector.broadcast(
                            INTS, CodeWords.word(array, at + byte1)),
                        lanes1)
                    .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
                    .and(mask)
                    .convert(jdk.incubator.vector.VectorOperators.I2F, 0);
        jdk.incubator.vector.FloatVector.fromArray(FLOATS, acc, accOff + j)
            .add(c.mul(a).add(shift))
            .intoArray(acc, accOff + j);
      }
    }

    private static void add4(
        byte[] array, int at, Cut cut, float a, float shift, float[] acc, int accOff, int dim) {
      int step = cut.vectorBytes;
      for (int j = 0; j < dim; j += LANES, at += step) {
        jdk.incubator.vector.FloatVector c =
            (jdk.incubator.vector.FloatVector)
                cut.codes(array, at).convert(jdk.incubator.vector.VectorOperators.I2F, 0);
        jdk.incubator.vector.FloatVector.fromArray(FLOATS, acc, accOff + j)
            .add(c.mul(a).add(shift))
            .intoArray(acc, accOff + j);
      }
    }

    private static void addBytes(
        byte[] array, int at, float a, float shift, float[] acc, int accOff, int dim) {
      for (int j = 0; j < dim; j += LANES, at += LANES) {
        jdk.incubator.vector.FloatVector c =
            (jdk.incubator.vector.FloatVector)
                jdk.incubator.vector.ByteVector.fromArray(BYTES, array, at)
                    .convertShape(jdk.incubator.vector.VectorOperators.ZERO_EXTEND_B2I, INTS, 0)
                    .convert(jdk.incubator.vector.VectorOperators.I2F, 0);
        jdk.incubator.vector.FloatVector.fromArray(FLOATS, acc, accOff + j)
            .add(c.mul(a).add(shift))
            .intoArray(acc, accOff + j);
      }
    }

    /**
     * Widths whose vector of codes lies in one word from the vector's first byte ({@code LANES·b ≤
     * 32}: 1..4 bits with 8 lanes): lane {@code i} shifts the word right by {@code i·b}, the next
     * vector's word starts {@code b} bytes on, the last one reads {@code 4 − b} bytes past the row.
     */
    static final int ONE_WORD_BITS = 32 / LANES;

    /**
     * The word at byte {@code at} as {@link CodeWords#word} reads it, the bytes past the array's
     * end (a block's last row, when the last vector's codes end less than four bytes before it)
     * read as 0: those bits lie past every lane's code, so the codes are the same.
     */
    static int lastWord(byte[] array, int at) {
      return at + 4 <= array.length ? CodeWords.word(array, at) : tailWord(array, at);
    }

    /** {@link #lastWord} at the array's end, out of line to keep the kernels small for C2. */
    private static int tailWord(byte[] array, int at) {
      int w = 0;
      for (int i = 0; at + i < array.length; i++) {
        w |= (array[at + i] & 0xff) << (8 * i);
      }
      return w;
    }

    /**
     * A vector of one-word codes as floats: the word shifted right by each lane's shift, masked.
     */
    static jdk.incubator.vector.FloatVector cut1(
        int word, jdk.incubator.vector.IntVector shifts, int mask) {
      return (jdk.incubator.vector.FloatVector)
          jdk.incubator.vector.IntVector.broadcast(INTS, word)
              .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
              .and(mask)
              .convert(jdk.incubator.vector.VectorOperators.I2F, 0);
    }

    /** Lane numbers 0..LANES−1. */
    private static final jdk.incubator.vector.IntVector IOTA =
        jdk.incubator.vector.IntVector.zero(INTS).addIndex(1);

    /**
     * {@link #addScaled} for a width of {@link #ONE_WORD_BITS} or fewer, its shifts and step
     * computed from {@code b} rather than read from the width's {@link Cut} (the layout {@link
     * #wordLayout} gives such a width: one word, lane {@code i} at bit {@code i·b}): a row's widths
     * alternate in a block, and each row would load its width's constants.
     */
    static void addOneWord(
        byte[] array, int at, int b, float a, float shift, float[] acc, int accOff, int dim) {
      jdk.incubator.vector.IntVector shifts = IOTA.mul(b);
      int mask = (1 << b) - 1;
      int last = dim - LANES;
      for (int j = 0; j < last; j += LANES, at += b) {
        jdk.incubator.vector.FloatVector c = cut1(CodeWords.word(array, at), shifts, mask);
        jdk.incubator.vector.FloatVector.fromArray(FLOATS, acc, accOff + j)
            .add(c.mul(a).add(shift))
            .intoArray(acc, accOff + j);
      }
      jdk.incubator.vector.FloatVector c = cut1(lastWord(array, at), shifts, mask);
      jdk.incubator.vector.FloatVector.fromArray(FLOATS, acc, accOff + last)
          .add(c.mul(a).add(shift))
          .intoArray(acc, accOff + last);
    }

    /** The code of channel {@code c} of a row of {@code b}-bit codes at byte {@code at}. */
    static int codeAt(byte[] array, int at, int c, int b) {
      int bit = c * b;
      int p = at + (bit >>> 3);
      int shift = bit & 7;
      int v = array[p] & 0xff;
      if (shift + b > 8) {
        v |= (array[p + 1] & 0xff) << 8;
      }
      return (v >>> shift) & ((1 << b) - 1);
    }
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof QaqFormat f
        && f.low == low
        && f.high == high
        && f.headDim == headDim
        && Arrays.equals(f.bits, bits);
  }

  @Override
  public int hashCode() {
    return Arrays.hashCode(bits) * 31 + low * 7 + high;
  }

  @Override
  public String toString() {
    return "qaq" + Arrays.toString(bits);
  }
}
