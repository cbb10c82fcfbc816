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
 * dequantized into a copy.
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
   * smallest and {@code high} largest entries (QAQ's {@code r_i}, reference lines 181–183).
   */
  public static float inlierRange(float[] x, int off, int d, int low, int high) {
    float[] sorted = Arrays.copyOfRange(x, off, off + d);
    Arrays.sort(sorted);
    return sorted[d - 1 - high] - sorted[low];
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
    Integer[] order = new Integer[dim];
    int[] codes = PackedCodes.scratch(dim);
    boolean[] outlier = new boolean[dim];
    for (int s = 0; s < count; s++) {
      encodeRow(src, srcOff + s * srcStride, bits[s], block, offsets[s], order, codes, outlier);
    }
  }

  private void encodeRow(
      float[] src,
      int off,
      int b,
      MemorySegment block,
      long at,
      Integer[] order,
      int[] codes,
      boolean[] outlier) {
    int d = headDim;
    for (int c = 0; c < d; c++) {
      order[c] = c;
    }
    // ascending by value, ties by channel: the first `low` and last `high` are the outliers
    Arrays.sort(order, (x, y) -> x.equals(y) ? 0 : cmp(src[off + x], src[off + y], x, y));
    Arrays.fill(outlier, false);
    long o = at + ROW_HEADER_BYTES;
    for (int i = 0; i < low + high; i++) {
      int c = i < low ? order[i] : order[d - high + (i - low)];
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

  private static int cmp(float a, float b, int x, int y) {
    int c = Float.compare(a, b);
    return c != 0 ? c : Integer.compare(x, y);
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

  /** {@code q·k̂} of slot {@code slot}; {@code work[0..d)} receives its codes. */
  private float dot(
      MemorySegment block, int slot, float[] q, int qOff, float querySum, float[] work) {
    int b = bits[slot];
    long at = offsets[slot];
    float mu = mu(block, at);
    float scale = scale(block, at);
    int half = 1 << (b - 1);
    PackedCodes.lookup(block, codesAt(slot), headDim, b, null, work, 0);
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
    for (int s = 0; s < count; s++) {
      scores[s] = dot(block, s, prepared, pOff, querySum, work);
    }
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
    PackedCodes.lookup(block, codesAt(slot), headDim, b, null, work, 0);
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
    for (int s = 0; s < count; s++) {
      float w = weights[wOff + s];
      if (w != 0f) {
        addRow(block, s, w, acc, accOff, work);
      }
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
