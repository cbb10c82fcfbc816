package io.kvslim.kv.format;

import io.kvslim.kv.attention.AttentionKernels;
import io.kvslim.kv.attention.VectorKernels;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.atomic.LongAdder;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * AlignedKV's bit-plane fp16 rows ("AlignedKV: Reducing Memory Access of KV-Cache with
 * Precision-Aligned Quantization", arXiv:2409.16546; METHODS.md Q8). Every element is stored as
 * fp16, split into three planes that can be read separately: the first 8 bits (sign, 5 exponent
 * bits, top 2 mantissa bits), the middle 4 and the last 4 mantissa bits (the authors' {@code
 * k_cache_first_8}, {@code k_cache_mid_4}, {@code k_cache_last_4}, {@code
 * new_extension/util_kcache.py} lines 9–11 of AlignedQuant/AlignedKV). Storage is fp16's, plus the
 * exponent maxima; what the fused kernels save is bytes <em>read</em>.
 *
 * <p>Precision criterion, with {@code e(x) = (f16 bits of |x|) >> 11} (the top 4 exponent bits, the
 * authors' {@code view(torch.int16) >> 11}):
 *
 * <ul>
 *   <li>keys ({@link #scores}): per channel {@code c}, {@code diff_c = E − (e(q_c) + e_K[c])} with
 *       {@code e_K[c]} the largest exponent of channel {@code c} over the block's keys and {@code E
 *       = max_c (e(q_c) + e_K[c])} ({@code util_kcache.py} lines 41–43 and 74–78, where {@code e_K}
 *       spans the whole cache; here one block, so {@code E} is the block's largest product);
 *   <li>values ({@link #accumulateBlock}): per token {@code t}, {@code diff_t = E − (e(p_t) +
 *       e_V[t])} with {@code e_V[t]} the exponent of the row's largest {@code |v|} ({@code
 *       util_vcache.py} lines 50–52) and {@code E} the block's largest {@code e(p) + e_V}. The
 *       authors compare with the exponent of recent outputs instead ({@code util_vcache.py} lines
 *       93–104, the minimum channel of the max over the last 8 outputs, plus the fp16 bias 15); a
 *       fused block kernel sees no outputs, so this deviation uses the block's largest term.
 * </ul>
 *
 * Read level from {@code diff} (METHODS.md Q8 step 4): below {@code t1} all 16 bits; from {@code
 * t1} the last 4 are skipped; from {@code t2} the middle 4 too; from {@code t3} the element is
 * skipped (read as 0). A skipped nibble reads as {@code 0b1000}, the midpoint.
 *
 * <p>Layout for {@code C} slots of {@code d}: {@code d} bytes of {@code e_K}, then row after row
 * its {@code e_V} byte, its first-8 plane ({@code d} bytes), its middle plane ({@code d/2}, two
 * nibbles a byte, even channel low) and its last plane ({@code d/2}); a read takes only the planes
 * it needs. Every kernel call adds the bits it read (planes read, plus the exponent maxima it
 * consulted) and the bits a full fp16 read of the same elements would take to this format's
 * counters ({@link #bitsRead}, {@link #fullBits}). A block on the heap is read a vector of channels
 * at a time ({@link Planes}), the same bits as the scalar reads a block off the heap takes.
 */
public final class AlignedKvFormat implements KvFormat {
  private final boolean keys;
  private final int t1;
  private final int t2;
  private final int t3;
  private final LongAdder read = new LongAdder();
  private final LongAdder full = new LongAdder();

  /** Keys ({@code keys}) or values, with the read thresholds {@code t1 ≤ t2 ≤ t3}. */
  public AlignedKvFormat(boolean keys, int t1, int t2, int t3) {
    if (t1 < 0 || t2 < t1 || t3 < t2) {
      throw new IllegalArgumentException(
          "alignedkv thresholds must satisfy 0 <= t1 <= t2 <= t3, got " + t1 + "," + t2 + "," + t3);
    }
    this.keys = keys;
    this.t1 = t1;
    this.t2 = t2;
    this.t3 = t3;
  }

  /** Bits the kernels read so far (planes and exponent maxima). */
  public long bitsRead() {
    return read.sum();
  }

  /** Bits a full fp16 read of the same elements would have taken. */
  public long fullBits() {
    return full.sum();
  }

  @Override
  public String name() {
    return keys ? "alignedkv_k" : "alignedkv_v";
  }

  /**
   * False: a block's exponent maxima cover all its rows, so a block is encoded at once, when the fp
   * tail before it holds a block's worth of tokens (the authors' {@code save_rest}, {@code
   * util_kcache.py} lines 29–44).
   */
  @Override
  public boolean perToken() {
    return false;
  }

  @Override
  public long blockBytes(int capacity, int headDim) {
    return headDim + capacity + 2L * capacity * headDim;
  }

  /** The exponent maxima. */
  @Override
  public long scaleBytes(int capacity, int headDim) {
    return headDim + capacity;
  }

  @Override
  public void checkHeadDim(int headDim) {
    if (headDim < 2 || headDim % 2 != 0) {
      throw new IllegalArgumentException(
          "alignedkv needs an even head size (two nibbles a byte), got " + headDim);
    }
  }

  /** Where row {@code slot} starts (its e_V byte); rows do not depend on the capacity. */
  private static long row(int slot, int headDim) {
    return headDim + (long) slot * (1 + 2L * headDim);
  }

  private static long high(int slot, int headDim) {
    return row(slot, headDim) + 1;
  }

  private static long mid(int slot, int headDim) {
    return high(slot, headDim) + headDim;
  }

  private static long low(int slot, int headDim) {
    return mid(slot, headDim) + headDim / 2;
  }

  /** The exponent code {@code (f16 bits of |x|) >> 11} of an fp16 pattern. */
  static int exponent(short h) {
    return (h & 0x7fff) >>> 11;
  }

  /** The exponent code of a float, through fp16. */
  public static int exponentOf(float x) {
    return exponent(HalfFloats.toF16(x));
  }

  /** Read level from an exponent difference: 0 all bits, 1 no last 4, 2 first 8 only, 3 none. */
  public int level(int diff) {
    // t1 <= t2 <= t3: the count of thresholds reached, without branches
    return (diff >= t1 ? 1 : 0) + (diff >= t2 ? 1 : 0) + (diff >= t3 ? 1 : 0);
  }

  /** Bits read at a level. */
  static int bitsAt(int level) {
    return switch (level) {
      case 0 -> 16;
      case 1 -> 12;
      case 2 -> 8;
      default -> 0;
    };
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
      throw new IllegalArgumentException("an alignedkv block is encoded at once, from slot 0");
    }
    block.asSlice(0, headDim).fill((byte) 0); // the column maxima of this encoding only
    for (int t = 0; t < count; t++) {
      int off = srcOff + t * srcStride;
      short[] row = new short[headDim];
      for (int c = 0; c < headDim; c++) {
        row[c] = HalfFloats.toF16(src[off + c]);
      }
      writeRow(row, block, firstSlot + t, capacity, headDim);
    }
  }

  private static void writeRow(short[] row, MemorySegment block, int slot, int cap, int d) {
    int rowMax = 0;
    long hi = high(slot, d);
    long mi = mid(slot, d);
    long lo = low(slot, d);
    for (int c = 0; c < d; c += 2) {
      int a = row[c] & 0xffff;
      int b = row[c + 1] & 0xffff;
      block.set(ValueLayout.JAVA_BYTE, hi + c, (byte) (a >>> 8));
      block.set(ValueLayout.JAVA_BYTE, hi + c + 1, (byte) (b >>> 8));
      block.set(
          ValueLayout.JAVA_BYTE, mi + c / 2, (byte) (((a >>> 4) & 15) | (((b >>> 4) & 15) << 4)));
      block.set(ValueLayout.JAVA_BYTE, lo + c / 2, (byte) ((a & 15) | ((b & 15) << 4)));
    }
    for (int c = 0; c < d; c++) {
      int e = exponent(row[c]);
      rowMax = Math.max(rowMax, e);
      int col = block.get(ValueLayout.JAVA_BYTE, c);
      if (e > col) {
        block.set(ValueLayout.JAVA_BYTE, c, (byte) e);
      }
    }
    block.set(ValueLayout.JAVA_BYTE, row(slot, d), (byte) rowMax);
  }

  /** The fp16 pattern of element {@code c} of {@code slot} read at {@code level}. */
  static short readElement(MemorySegment block, int slot, int c, int cap, int d, int level) {
    int hi = block.get(ValueLayout.JAVA_BYTE, high(slot, d) + c) & 0xff;
    int mid = 8;
    int lo = 8;
    if (level <= 1) {
      int m = block.get(ValueLayout.JAVA_BYTE, mid(slot, d) + c / 2) & 0xff;
      mid = (c & 1) == 0 ? m & 15 : m >>> 4;
    }
    if (level == 0) {
      int l = block.get(ValueLayout.JAVA_BYTE, low(slot, d) + c / 2) & 0xff;
      lo = (c & 1) == 0 ? l & 15 : l >>> 4;
    }
    return (short) ((hi << 8) | (mid << 4) | lo);
  }

  /** Element {@code c} of {@code slot} read at {@code level} as a float (0 when skipped). */
  public static float element(MemorySegment block, int slot, int c, int cap, int d, int level) {
    return level == 3 ? 0f : HalfFloats.fromF16(readElement(block, slot, c, cap, d, level));
  }

  @Override
  public void decode(
      MemorySegment block, int slot, int capacity, int headDim, float[] dst, int off) {
    for (int c = 0; c < headDim; c++) {
      dst[off + c] = element(block, slot, c, capacity, headDim, 0);
    }
  }

  /** The query and its exponent codes. */
  @Override
  public int preparedQueryLength(int headDim) {
    return 2 * headDim;
  }

  @Override
  public void prepareQuery(float[] q, int qOff, int headDim, float[] dst, int dstOff) {
    for (int c = 0; c < headDim; c++) {
      dst[dstOff + c] = q[qOff + c];
      dst[dstOff + headDim + c] = exponentOf(q[qOff + c]);
    }
  }

  /**
   * Each channel's read level for a prepared query over this block's keys (written into {@code
   * levels[0..d)}): the key criterion of the class comment.
   */
  public void keyLevels(
      MemorySegment block, int headDim, float[] prepared, int pOff, int[] levels) {
    byte[] array = VectorKernels.array(block);
    int most = Integer.MIN_VALUE;
    for (int c = 0; c < headDim; c++) {
      int eK = array != null ? array[c] : block.get(ValueLayout.JAVA_BYTE, c);
      int e = (int) prepared[pOff + headDim + c] + eK;
      levels[c] = e;
      most = Math.max(most, e);
    }
    for (int c = 0; c < headDim; c++) {
      levels[c] = level(most - levels[c]);
    }
  }

  /**
   * Scores in the order of the fp16 cache's kernels ({@link F16Format#scores}): channel {@code c}'s
   * product is fused into lane {@code c mod L} ({@code L} float lanes), {@code fma(q_c, x_c, lane)}
   * in channel order, then the lanes summed by {@link AttentionKernels#sumLanes}'s tree; a skipped
   * channel adds {@code fma(+0, +0, lane)}. With every bit read this is the fp16 attention's dot
   * product of the same elements (METHODS.md Q8's test). On the heap with 8 lanes the planes are
   * read a vector of channels at a time ({@link Planes#scores}), the same bits.
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
    Scratch scratch = Scratch.get(headDim, count);
    int[] levels = scratch.levels;
    byte[] array = Planes.applies(headDim) ? VectorKernels.array(block) : null;
    long bits =
        array == null
            ? -1
            : Planes.scores(
                array, count, headDim, prepared, pOff, t1, t2, t3, levels, scores, scratch);
    if (bits < 0) {
      keyLevels(block, headDim, prepared, pOff, levels);
      bits = 0;
      for (int c = 0; c < headDim; c++) {
        bits += BITS[levels[c]];
      }
      int lanes = VectorKernels.FLOATS.length();
      float[] sums = scratch.lanes;
      for (int s = 0; s < count; s++) {
        java.util.Arrays.fill(sums, 0, lanes, 0f);
        for (int c = 0; c < headDim; c++) {
          int l = c % lanes;
          sums[l] =
              levels[c] < 3
                  ? Math.fma(
                      prepared[pOff + c],
                      element(block, s, c, capacity, headDim, levels[c]),
                      sums[l])
                  : Math.fma(0f, 0f, sums[l]);
        }
        scores[s] = AttentionKernels.sumLanes(sums, 0);
      }
    }
    read.add(8L * headDim + bits * count);
    full.add(16L * headDim * count);
  }

  /** {@link #bitsAt} by level. */
  private static final int[] BITS = {16, 12, 8, 0};

  /**
   * Each token's read level for weights {@code weights[wOff..+count)} over this block's values
   * (written into {@code levels[0..count)}): the value criterion of the class comment; tokens of
   * weight 0 get level 3 (not read).
   */
  public void valueLevels(
      MemorySegment block, int count, int headDim, float[] weights, int wOff, int[] levels) {
    byte[] array = VectorKernels.array(block);
    int most = Integer.MIN_VALUE / 4; // all weights 0: every token at level 3
    for (int s = 0; s < count; s++) {
      float w = weights[wOff + s];
      long at = row(s, headDim);
      int eV = array != null ? array[(int) at] : block.get(ValueLayout.JAVA_BYTE, at);
      // a weight of 0 takes no part in the largest term and is not read (level 3)
      int e = w != 0f ? exponentCode(w) + eV : Integer.MIN_VALUE / 2;
      levels[s] = e;
      most = Math.max(most, e);
    }
    for (int s = 0; s < count; s++) {
      levels[s] = level(most - levels[s]);
    }
  }

  /**
   * {@link #exponentOf} from the float's bits, without converting: the fp16 exponent after rounding
   * to nearest even is the float's biased exponent plus a carry (a mantissa from {@code 0x7ff000}
   * rounds up into the next binade), less 112; fp16 subnormals (and zero) have codes 0, infinities
   * and NaNs 15.
   */
  static int exponentCode(float x) {
    int e = (((Float.floatToRawIntBits(x) & 0x7fffffff) + 0x1000) >>> 23) - 112;
    return Math.min(Math.max(e, 0), 31) >> 1;
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
    for (int c = 0; c < headDim; c++) {
      acc[c] += weight * element(block, slot, c, capacity, headDim, 0);
    }
    read.add(16L * headDim);
    full.add(16L * headDim);
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
    Scratch scratch = Scratch.get(headDim, count);
    int[] levels = scratch.levels;
    valueLevels(block, count, headDim, weights, wOff, levels);
    long bits = 8L * count;
    long fullBits = 0;
    for (int s = 0; s < count; s++) {
      if (weights[wOff + s] != 0f) {
        fullBits += 16L * headDim;
        bits += (long) BITS[levels[s]] * headDim;
      }
    }
    read.add(bits);
    full.add(fullBits);
    byte[] array = Planes.applies(headDim) ? VectorKernels.array(block) : null;
    if (array != null
        && Planes.addRows(array, count, headDim, weights, wOff, levels, acc, accOff, scratch)) {
      return;
    }
    for (int s = 0; s < count; s++) {
      float w = weights[wOff + s];
      if (w == 0f || levels[s] == 3) {
        continue;
      }
      for (int c = 0; c < headDim; c++) {
        acc[accOff + c] += w * element(block, s, c, capacity, headDim, levels[s]);
      }
    }
  }

  /** Per-thread scratch of the kernels (no allocation per block). */
  static final class Scratch {
    private static final ThreadLocal<Scratch> LOCAL = ThreadLocal.withInitial(Scratch::new);

    int[] levels = new int[0];
    float[] lanes = new float[VectorKernels.FLOATS.length()];

    /** Per channel: the scaled query and the float bits kept (none for a skipped channel). */
    float[] query = new float[0];

    int[] keep = new int[0];

    /** Per channel: the nibble masks of the low bytes ({@link Planes#lowBytes}). */
    byte[] masks = new byte[0];

    float[] weights = new float[0];

    /** The low bytes of a block's rows as read, {@code d} a row. */
    byte[] low = new byte[0];

    static Scratch get(int headDim, int count) {
      Scratch s = LOCAL.get();
      int n = Math.max(headDim, count);
      if (s.levels.length < n) {
        s.levels = new int[n];
        s.weights = new float[n];
      }
      if (s.query.length < headDim) {
        s.query = new float[headDim];
        s.keep = new int[headDim];
        s.masks = new byte[3 * headDim];
      }
      if (s.low.length < count * headDim) {
        s.low = new byte[count * headDim];
      }
      return s;
    }
  }

  /**
   * The planes of a block on the heap read a float vector of channels (8 lanes) at a time, the same
   * bits as {@link #element}. First the low byte of each element's fp16 pattern as its level reads
   * it ({@code mid << 4 | last}, a nibble not read {@code 0b1000}) is cut from the two nibble
   * planes for all the block's rows into scratch ({@link #lowBytes}: a plane byte holds a channel
   * pair, so 16-bit lanes of widened plane bytes give both channels' low bytes by shifts and masks,
   * with no per-lane shifts; the keys' per-channel masks are loaded once a block, the values' are
   * their row's level's). Then a vector of channels is the first-8 plane sign-extended and shifted
   * to bit 21, or the low bytes shifted to bit 13, masked: the fp16 pattern placed in float bits as
   * {@link F16Format#scores} does ({@code (h << 13) & 0x8fffe000}, the element times {@code
   * 2^-112}), with the {@code 2^112} folded into the query or weight once (exact for {@code |q|,
   * |w| < 2^15}; otherwise, and for a block whose exponent maxima reach 15, where infinities and
   * NaNs could be, the scalar path). Key scores: the fused multiply-adds and lane tree of {@link
   * AlignedKvFormat#scores}, four rows at once sharing the query's loads ({@link
   * AttentionKernels#sumLanes}'s additions written out); a skipped channel's query and element are
   * {@code +0}. Values: {@code acc += w · x} per slot in order, as the scalar path, the output held
   * in registers eight vectors at a time (then four, then one, for the channels left); a token the
   * level skips is not read. The levels, query, masks and bit counts of a key block are set a
   * vector of channels at a time.
   */
  static final class Planes {
    private static final VectorSpecies<Float> FLOATS = VectorKernels.FLOATS;
    private static final VectorSpecies<Integer> INTS = VectorKernels.INTS;
    private static final VectorSpecies<Byte> BYTES = ByteVector.SPECIES_64;

    /** Sixteen plane bytes: sixteen channel pairs. */
    private static final VectorSpecies<Byte> PAIR_BYTES = ByteVector.SPECIES_128;

    private static final VectorSpecies<Short> PAIRS = ShortVector.SPECIES_256;

    /** The masks of sixteen channel pairs. */
    private static final VectorSpecies<Byte> MASK_BYTES = ByteVector.SPECIES_256;

    private static final int LANES = 8;

    /** The float bits a widened half keeps: the sign and bits 13–27. */
    private static final int KEEP = 0x8fffe000;

    private static final float SCALE = 0x1p112f;

    /** Largest |q| or |w| whose product with {@link #SCALE} is exact and finite (with margin). */
    private static final float LIMIT = 0x1p15f;

    /**
     * By level, the bits of a channel pair's two low bytes (the pair's first channel in the low
     * byte) that come from the middle plane, from the last plane, and the unread nibbles.
     */
    private static final short[] MID = {(short) 0xf0f0, (short) 0xf0f0, 0, 0};

    private static final short[] LAST = {0x0f0f, 0, 0, 0};
    private static final short[] UNREAD = {0, 0x0808, (short) 0x8888, 0};

    private Planes() {}

    /**
     * True when the vector path applies: 8 float lanes (AVX2), whole vectors of channels (16 lanes
     * keep the scalar path until the 16-lane form has run on an AVX-512 machine).
     */
    static boolean applies(int headDim) {
      return FLOATS.length() == LANES && headDim % LANES == 0;
    }

    /**
     * The low bytes of one row's {@code d} elements as read into {@code low[at..+d)}, from its
     * middle plane at {@code mid} and last plane after it: channel {@code c} takes, of its pair's
     * plane bytes {@code m} and {@code l} (plane byte {@code c/2}, channels {@code 2b} and {@code
     * 2b + 1}, the first in the low nibble), the bits {@code masks[c]} of its byte of {@code (m <<
     * 4 | m << 8)}, {@code masks[d + c]} of its byte of {@code (l | l << 4)}, and {@code masks[2d +
     * c]}: in 16-bit lanes a pair's two low bytes at once; pairs from {@code from} on.
     */
    static void lowBytes(byte[] array, int mid, int d, byte[] masks, byte[] low, int at, int from) {
      int half = d >> 1;
      int b = from;
      for (; b + PAIRS.length() <= half; b += PAIRS.length()) {
        ShortVector m =
            (ShortVector)
                ByteVector.fromArray(PAIR_BYTES, array, mid + b)
                    .convertShape(VectorOperators.ZERO_EXTEND_B2S, PAIRS, 0);
        ShortVector l =
            (ShortVector)
                ByteVector.fromArray(PAIR_BYTES, array, mid + half + b)
                    .convertShape(VectorOperators.ZERO_EXTEND_B2S, PAIRS, 0);
        m.lanewise(VectorOperators.LSHL, 4)
            .or(m.lanewise(VectorOperators.LSHL, 8))
            .and(ByteVector.fromArray(MASK_BYTES, masks, 2 * b).reinterpretAsShorts())
            .or(
                l.lanewise(VectorOperators.LSHL, 4)
                    .or(l)
                    .and(ByteVector.fromArray(MASK_BYTES, masks, d + 2 * b).reinterpretAsShorts()))
            .or(ByteVector.fromArray(MASK_BYTES, masks, 2 * d + 2 * b).reinterpretAsShorts())
            .reinterpretAsBytes()
            .intoArray(low, at + 2 * b);
      }
      for (; b < half; b++) {
        int m = array[mid + b] & 0xff;
        int l = array[mid + half + b] & 0xff;
        int c = 2 * b;
        int p =
            ((m << 4 | m << 8) & pair(masks, c))
                | ((l << 4 | l) & pair(masks, d + c))
                | pair(masks, 2 * d + c);
        low[at + c] = (byte) p;
        low[at + c + 1] = (byte) (p >>> 8);
      }
    }

    private static int pair(byte[] masks, int at) {
      return (masks[at] & 0xff) | (masks[at + 1] & 0xff) << 8;
    }

    /**
     * {@link #lowBytes} with the same masks for every pair (a row read at one level), pairs from
     * {@code from} on.
     */
    static void lowBytes(
        byte[] array,
        int mid,
        int d,
        short midMask,
        short lastMask,
        short unread,
        byte[] low,
        int at,
        int from) {
      int half = d >> 1;
      int b = from;
      for (; b + PAIRS.length() <= half; b += PAIRS.length()) {
        ShortVector m =
            (ShortVector)
                ByteVector.fromArray(PAIR_BYTES, array, mid + b)
                    .convertShape(VectorOperators.ZERO_EXTEND_B2S, PAIRS, 0);
        ShortVector l =
            (ShortVector)
                ByteVector.fromArray(PAIR_BYTES, array, mid + half + b)
                    .convertShape(VectorOperators.ZERO_EXTEND_B2S, PAIRS, 0);
        m.lanewise(VectorOperators.LSHL, 4)
            .or(m.lanewise(VectorOperators.LSHL, 8))
            .and(midMask)
            .or(l.lanewise(VectorOperators.LSHL, 4).or(l).and(lastMask))
            .or(unread)
            .reinterpretAsBytes()
            .intoArray(low, at + 2 * b);
      }
      for (; b < half; b++) {
        int m = array[mid + b] & 0xff;
        int l = array[mid + half + b] & 0xff;
        int p = ((m << 4 | m << 8) & midMask) | ((l << 4 | l) & lastMask) | unread;
        low[at + 2 * b] = (byte) p;
        low[at + 2 * b + 1] = (byte) (p >>> 8);
      }
    }

    /**
     * {@link AlignedKvFormat#scores} of every slot, the channel levels written into {@code levels};
     * returns the bits a row reads, or -1 (no score written) when the query is too large for the
     * folded scale or an exponent maximum reaches 15. Written out without helpers that take or
     * return vectors (a vector crossing a call C2 does not inline is boxed).
     */
    static long scores(
        byte[] array,
        int count,
        int headDim,
        float[] prepared,
        int pOff,
        int t1,
        int t2,
        int t3,
        int[] levels,
        float[] scores,
        Scratch scratch) {
      float[] q = scratch.query;
      int[] keep = scratch.keep;
      byte[] masks = scratch.masks;
      byte[] low = scratch.low;
      int d = headDim;
      // the levels of AlignedKvFormat#keyLevels, a vector of channels at a time
      IntVector most = IntVector.broadcast(INTS, Integer.MIN_VALUE);
      for (int c = 0; c < d; c += LANES) {
        IntVector eK =
            (IntVector)
                ByteVector.fromArray(BYTES, array, c).convertShape(VectorOperators.B2I, INTS, 0);
        if (eK.compare(VectorOperators.GE, 15).anyTrue()) {
          return -1;
        }
        IntVector e =
            ((IntVector)
                    FloatVector.fromArray(FLOATS, prepared, pOff + d + c)
                        .convertShape(VectorOperators.F2I, INTS, 0))
                .add(eK);
        e.intoArray(levels, c);
        most = most.max(e);
      }
      IntVector top = IntVector.broadcast(INTS, most.reduceLanes(VectorOperators.MAX));
      IntVector bits = IntVector.zero(INTS);
      for (int c = 0; c < d; c += LANES) {
        IntVector diff = top.sub(IntVector.fromArray(INTS, levels, c));
        VectorMask<Integer> m1 = diff.compare(VectorOperators.GE, t1);
        VectorMask<Integer> m2 = diff.compare(VectorOperators.GE, t2);
        VectorMask<Integer> m3 = diff.compare(VectorOperators.GE, t3);
        IntVector level =
            IntVector.zero(INTS).blend(1, m1).blend(2, m2).blend(3, m3); // t1 <= t2 <= t3
        level.intoArray(levels, c);
        FloatVector qc = FloatVector.fromArray(FLOATS, prepared, pOff + c);
        VectorMask<Float> read = m3.not().cast(FLOATS);
        if (qc.abs().compare(VectorOperators.LT, LIMIT).not().and(read).anyTrue()) {
          return -1;
        }
        // a skipped channel's query and element are +0
        FloatVector.zero(FLOATS).blend(qc.mul(SCALE), read).intoArray(q, c);
        IntVector.broadcast(INTS, KEEP).blend(0, m3).intoArray(keep, c);
        ((ByteVector)
                IntVector.broadcast(INTS, 0xf0)
                    .blend(0, m2)
                    .convertShape(VectorOperators.I2B, BYTES, 0))
            .intoArray(masks, c);
        ((ByteVector)
                IntVector.broadcast(INTS, 0x0f)
                    .blend(0, m1)
                    .convertShape(VectorOperators.I2B, BYTES, 0))
            .intoArray(masks, d + c);
        ((ByteVector)
                IntVector.zero(INTS)
                    .blend(0x08, m1)
                    .blend(0x88, m2)
                    .blend(0, m3)
                    .convertShape(VectorOperators.I2B, BYTES, 0))
            .intoArray(masks, 2 * d + c);
        bits =
            bits.add(
                IntVector.broadcast(INTS, 16)
                    .sub(level.lanewise(VectorOperators.LSHL, 2))
                    .blend(0, m3));
      }
      int rowBytes = 1 + 2 * d;
      // lowBytes written out with the rows inside: a chunk's masks loaded once for the block
      int half = d >> 1;
      int b = 0;
      for (; b + PAIRS.length() <= half; b += PAIRS.length()) {
        ShortVector midMask = ByteVector.fromArray(MASK_BYTES, masks, 2 * b).reinterpretAsShorts();
        ShortVector lastMask =
            ByteVector.fromArray(MASK_BYTES, masks, d + 2 * b).reinterpretAsShorts();
        ShortVector unread =
            ByteVector.fromArray(MASK_BYTES, masks, 2 * d + 2 * b).reinterpretAsShorts();
        for (int s = 0, mid = 2 * d + 1 + b; s < count; s++, mid += rowBytes) {
          ShortVector m =
              (ShortVector)
                  ByteVector.fromArray(PAIR_BYTES, array, mid)
                      .convertShape(VectorOperators.ZERO_EXTEND_B2S, PAIRS, 0);
          ShortVector l =
              (ShortVector)
                  ByteVector.fromArray(PAIR_BYTES, array, mid + half)
                      .convertShape(VectorOperators.ZERO_EXTEND_B2S, PAIRS, 0);
          m.lanewise(VectorOperators.LSHL, 4)
              .or(m.lanewise(VectorOperators.LSHL, 8))
              .and(midMask)
              .or(l.lanewise(VectorOperators.LSHL, 4).or(l).and(lastMask))
              .or(unread)
              .reinterpretAsBytes()
              .intoArray(low, s * d + 2 * b);
        }
      }
      if (b < half) {
        for (int s = 0, r = d + 1; s < count; s++, r += rowBytes) {
          lowBytes(array, r + d, d, masks, low, s * d, b);
        }
      }
      long rowBits = bits.reduceLanes(VectorOperators.ADD);
      int s = 0;
      for (; s + 4 <= count; s += 4) {
        int h0 = (int) row(s, d) + 1;
        int h1 = h0 + rowBytes;
        int h2 = h1 + rowBytes;
        int h3 = h2 + rowBytes;
        int p0 = s * d;
        int p1 = p0 + d;
        int p2 = p1 + d;
        int p3 = p2 + d;
        FloatVector a0 = FloatVector.zero(FLOATS);
        FloatVector a1 = a0;
        FloatVector a2 = a0;
        FloatVector a3 = a0;
        for (int j = 0; j < d; j += LANES) {
          FloatVector qj = FloatVector.fromArray(FLOATS, q, j);
          IntVector kj = IntVector.fromArray(INTS, keep, j);
          a0 =
              qj.fma(
                  ((IntVector)
                          ByteVector.fromArray(BYTES, array, h0 + j)
                              .convertShape(VectorOperators.B2I, INTS, 0))
                      .lanewise(VectorOperators.LSHL, 21)
                      .or(
                          ((IntVector)
                                  ByteVector.fromArray(BYTES, low, p0 + j)
                                      .convertShape(VectorOperators.ZERO_EXTEND_B2I, INTS, 0))
                              .lanewise(VectorOperators.LSHL, 13))
                      .and(kj)
                      .reinterpretAsFloats(),
                  a0);
          a1 =
              qj.fma(
                  ((IntVector)
                          ByteVector.fromArray(BYTES, array, h1 + j)
                              .convertShape(VectorOperators.B2I, INTS, 0))
                      .lanewise(VectorOperators.LSHL, 21)
                      .or(
                          ((IntVector)
                                  ByteVector.fromArray(BYTES, low, p1 + j)
                                      .convertShape(VectorOperators.ZERO_EXTEND_B2I, INTS, 0))
                              .lanewise(VectorOperators.LSHL, 13))
                      .and(kj)
                      .reinterpretAsFloats(),
                  a1);
          a2 =
              qj.fma(
                  ((IntVector)
                          ByteVector.fromArray(BYTES, array, h2 + j)
                              .convertShape(VectorOperators.B2I, INTS, 0))
                      .lanewise(VectorOperators.LSHL, 21)
                      .or(
                          ((IntVector)
                                  ByteVector.fromArray(BYTES, low, p2 + j)
                                      .convertShape(VectorOperators.ZERO_EXTEND_B2I, INTS, 0))
                              .lanewise(VectorOperators.LSHL, 13))
                      .and(kj)
                      .reinterpretAsFloats(),
                  a2);
          a3 =
              qj.fma(
                  ((IntVector)
                          ByteVector.fromArray(BYTES, array, h3 + j)
                              .convertShape(VectorOperators.B2I, INTS, 0))
                      .lanewise(VectorOperators.LSHL, 21)
                      .or(
                          ((IntVector)
                                  ByteVector.fromArray(BYTES, low, p3 + j)
                                      .convertShape(VectorOperators.ZERO_EXTEND_B2I, INTS, 0))
                              .lanewise(VectorOperators.LSHL, 13))
                      .and(kj)
                      .reinterpretAsFloats(),
                  a3);
        }
        // AttentionKernels.sumLanes' tree written out: the same additions
        a0 = a0.add(a0.rearrange(AttentionKernels.ROTATE4));
        a0 = a0.add(a0.rearrange(AttentionKernels.ROTATE2));
        scores[s] = a0.add(a0.rearrange(AttentionKernels.ROTATE1)).lane(0);
        a1 = a1.add(a1.rearrange(AttentionKernels.ROTATE4));
        a1 = a1.add(a1.rearrange(AttentionKernels.ROTATE2));
        scores[s + 1] = a1.add(a1.rearrange(AttentionKernels.ROTATE1)).lane(0);
        a2 = a2.add(a2.rearrange(AttentionKernels.ROTATE4));
        a2 = a2.add(a2.rearrange(AttentionKernels.ROTATE2));
        scores[s + 2] = a2.add(a2.rearrange(AttentionKernels.ROTATE1)).lane(0);
        a3 = a3.add(a3.rearrange(AttentionKernels.ROTATE4));
        a3 = a3.add(a3.rearrange(AttentionKernels.ROTATE2));
        scores[s + 3] = a3.add(a3.rearrange(AttentionKernels.ROTATE1)).lane(0);
      }
      for (; s < count; s++) {
        int h0 = (int) row(s, d) + 1;
        int p0 = s * d;
        FloatVector a0 = FloatVector.zero(FLOATS);
        for (int j = 0; j < d; j += LANES) {
          a0 =
              FloatVector.fromArray(FLOATS, q, j)
                  .fma(
                      ((IntVector)
                              ByteVector.fromArray(BYTES, array, h0 + j)
                                  .convertShape(VectorOperators.B2I, INTS, 0))
                          .lanewise(VectorOperators.LSHL, 21)
                          .or(
                              ((IntVector)
                                      ByteVector.fromArray(BYTES, low, p0 + j)
                                          .convertShape(VectorOperators.ZERO_EXTEND_B2I, INTS, 0))
                                  .lanewise(VectorOperators.LSHL, 13))
                          .and(IntVector.fromArray(INTS, keep, j))
                          .reinterpretAsFloats(),
                      a0);
        }
        a0 = a0.add(a0.rearrange(AttentionKernels.ROTATE4));
        a0 = a0.add(a0.rearrange(AttentionKernels.ROTATE2));
        scores[s] = a0.add(a0.rearrange(AttentionKernels.ROTATE1)).lane(0);
      }
      return rowBits;
    }

    /**
     * {@link AlignedKvFormat#accumulateBlock}'s sums for token levels {@code levels}; false
     * (nothing added) when a weight is too large for the folded scale or a row's exponent maximum
     * reaches 15.
     */
    static boolean addRows(
        byte[] array,
        int count,
        int headDim,
        float[] weights,
        int wOff,
        int[] levels,
        float[] acc,
        int accOff,
        Scratch scratch) {
      float[] w = scratch.weights;
      byte[] low = scratch.low;
      int d = headDim;
      int rowBytes = 1 + 2 * d;
      for (int s = 0, r = d; s < count; s++, r += rowBytes) {
        int level = levels[s];
        if (level == 3) {
          continue;
        }
        float ws = weights[wOff + s];
        if (!(Math.abs(ws) < LIMIT) || array[r] >= 15) {
          return false;
        }
        w[s] = ws * SCALE;
      }
      // lowBytes written out with the rows inside, each row's masks by its level
      int half = d >> 1;
      int b = 0;
      for (; b + PAIRS.length() <= half; b += PAIRS.length()) {
        for (int s = 0, mid = 2 * d + 1 + b; s < count; s++, mid += rowBytes) {
          int level = levels[s];
          if (level == 3) {
            continue;
          }
          ShortVector m =
              (ShortVector)
                  ByteVector.fromArray(PAIR_BYTES, array, mid)
                      .convertShape(VectorOperators.ZERO_EXTEND_B2S, PAIRS, 0);
          ShortVector l =
              (ShortVector)
                  ByteVector.fromArray(PAIR_BYTES, array, mid + half)
                      .convertShape(VectorOperators.ZERO_EXTEND_B2S, PAIRS, 0);
          m.lanewise(VectorOperators.LSHL, 4)
              .or(m.lanewise(VectorOperators.LSHL, 8))
              .and(MID[level])
              .or(l.lanewise(VectorOperators.LSHL, 4).or(l).and(LAST[level]))
              .or(UNREAD[level])
              .reinterpretAsBytes()
              .intoArray(low, s * d + 2 * b);
        }
      }
      if (b < half) {
        for (int s = 0, r = d; s < count; s++, r += rowBytes) {
          int level = levels[s];
          if (level != 3) {
            lowBytes(array, r + 1 + d, d, MID[level], LAST[level], UNREAD[level], low, s * d, b);
          }
        }
      }
      int j = 0;
      // four registers of channels a call: a body of eight did not fit C2's inlining budget
      // inside this method, and its stores fell back to the Vector API's Java code
      for (; j + 4 * LANES <= d; j += 4 * LANES) {
        addChannels(array, low, count, d, levels, w, acc, accOff, j);
      }
      for (; j < d; j += LANES) {
        FloatVector a0 = FloatVector.fromArray(FLOATS, acc, accOff + j);
        for (int s = 0, h = d + 1, p = 0; s < count; s++, h += rowBytes, p += d) {
          if (levels[s] == 3) {
            continue;
          }
          a0 =
              a0.add(
                  ((IntVector)
                          ByteVector.fromArray(BYTES, array, h + j)
                              .convertShape(VectorOperators.B2I, INTS, 0))
                      .lanewise(VectorOperators.LSHL, 21)
                      .or(
                          ((IntVector)
                                  ByteVector.fromArray(BYTES, low, p + j)
                                      .convertShape(VectorOperators.ZERO_EXTEND_B2I, INTS, 0))
                              .lanewise(VectorOperators.LSHL, 13))
                      .and(KEEP)
                      .reinterpretAsFloats()
                      .mul(w[s]));
        }
        a0.intoArray(acc, accOff + j);
      }
      return true;
    }

    /**
     * Adds the rows' weighted values of the {@code 4 * LANES} channels from {@code j} to {@code
     * acc}: each element's high byte from the block and its masked low byte from {@code low}.
     */
    private static void addChannels(
        byte[] array,
        byte[] low,
        int count,
        int d,
        int[] levels,
        float[] w,
        float[] acc,
        int accOff,
        int j) {
      int rowBytes = 1 + 2 * d;
      int j1 = j + LANES;
      int j2 = j1 + LANES;
      int j3 = j2 + LANES;
      FloatVector a0 = FloatVector.fromArray(FLOATS, acc, accOff + j);
      FloatVector a1 = FloatVector.fromArray(FLOATS, acc, accOff + j1);
      FloatVector a2 = FloatVector.fromArray(FLOATS, acc, accOff + j2);
      FloatVector a3 = FloatVector.fromArray(FLOATS, acc, accOff + j3);
      for (int s = 0, h = d + 1, p = 0; s < count; s++, h += rowBytes, p += d) {
        if (levels[s] == 3) {
          continue;
        }
        float ws = w[s];
        a0 =
            a0.add(
                ((IntVector)
                        ByteVector.fromArray(BYTES, array, h + j)
                            .convertShape(VectorOperators.B2I, INTS, 0))
                    .lanewise(VectorOperators.LSHL, 21)
                    .or(
                        ((IntVector)
                                ByteVector.fromArray(BYTES, low, p + j)
                                    .convertShape(VectorOperators.ZERO_EXTEND_B2I, INTS, 0))
                            .lanewise(VectorOperators.LSHL, 13))
                    .and(KEEP)
                    .reinterpretAsFloats()
                    .mul(ws));
        a1 =
            a1.add(
                ((IntVector)
                        ByteVector.fromArray(BYTES, array, h + j1)
                            .convertShape(VectorOperators.B2I, INTS, 0))
                    .lanewise(VectorOperators.LSHL, 21)
                    .or(
                        ((IntVector)
                                ByteVector.fromArray(BYTES, low, p + j1)
                                    .convertShape(VectorOperators.ZERO_EXTEND_B2I, INTS, 0))
                            .lanewise(VectorOperators.LSHL, 13))
                    .and(KEEP)
                    .reinterpretAsFloats()
                    .mul(ws));
        a2 =
            a2.add(
                ((IntVector)
                        ByteVector.fromArray(BYTES, array, h + j2)
                            .convertShape(VectorOperators.B2I, INTS, 0))
                    .lanewise(VectorOperators.LSHL, 21)
                    .or(
                        ((IntVector)
                                ByteVector.fromArray(BYTES, low, p + j2)
                                    .convertShape(VectorOperators.ZERO_EXTEND_B2I, INTS, 0))
                            .lanewise(VectorOperators.LSHL, 13))
                    .and(KEEP)
                    .reinterpretAsFloats()
                    .mul(ws));
        a3 =
            a3.add(
                ((IntVector)
                        ByteVector.fromArray(BYTES, array, h + j3)
                            .convertShape(VectorOperators.B2I, INTS, 0))
                    .lanewise(VectorOperators.LSHL, 21)
                    .or(
                        ((IntVector)
                                ByteVector.fromArray(BYTES, low, p + j3)
                                    .convertShape(VectorOperators.ZERO_EXTEND_B2I, INTS, 0))
                            .lanewise(VectorOperators.LSHL, 13))
                    .and(KEEP)
                    .reinterpretAsFloats()
                    .mul(ws));
      }
      a0.intoArray(acc, accOff + j);
      a1.intoArray(acc, accOff + j1);
      a2.intoArray(acc, accOff + j2);
      a3.intoArray(acc, accOff + j3);
    }
  }
}
