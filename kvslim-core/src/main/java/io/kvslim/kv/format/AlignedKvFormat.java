package io.kvslim.kv.format;

import io.kvslim.kv.attention.VectorKernels;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.atomic.LongAdder;

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
    return diff >= t3 ? 3 : diff >= t2 ? 2 : diff >= t1 ? 1 : 0;
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
    int most = Integer.MIN_VALUE;
    for (int c = 0; c < headDim; c++) {
      int e = (int) prepared[pOff + headDim + c] + block.get(ValueLayout.JAVA_BYTE, c);
      levels[c] = e;
      most = Math.max(most, e);
    }
    for (int c = 0; c < headDim; c++) {
      levels[c] = level(most - levels[c]);
    }
  }

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
    int[] levels = new int[headDim];
    keyLevels(block, headDim, prepared, pOff, levels);
    long bits = 0;
    for (int c = 0; c < headDim; c++) {
      bits += bitsAt(levels[c]);
    }
    byte[] array = Planes.applies(headDim) ? VectorKernels.array(block) : null;
    if (array != null && Planes.finite(array, 0, headDim)) {
      Planes.scores(array, count, headDim, prepared, pOff, levels, scores, work);
    } else {
      for (int s = 0; s < count; s++) {
        float sum = 0f;
        for (int c = 0; c < headDim; c++) {
          if (levels[c] < 3) {
            sum += prepared[pOff + c] * element(block, s, c, capacity, headDim, levels[c]);
          }
        }
        scores[s] = sum;
      }
    }
    read.add(8L * headDim + bits * count);
    full.add(16L * headDim * count);
  }

  /**
   * Each token's read level for weights {@code weights[wOff..+count)} over this block's values
   * (written into {@code levels[0..count)}): the value criterion of the class comment; tokens of
   * weight 0 get level 3 (not read).
   */
  public void valueLevels(
      MemorySegment block, int count, int headDim, float[] weights, int wOff, int[] levels) {
    int most = Integer.MIN_VALUE;
    for (int s = 0; s < count; s++) {
      float w = weights[wOff + s];
      if (w != 0f) {
        levels[s] = exponentOf(w) + block.get(ValueLayout.JAVA_BYTE, row(s, headDim));
        most = Math.max(most, levels[s]);
      }
    }
    for (int s = 0; s < count; s++) {
      levels[s] = weights[wOff + s] == 0f ? 3 : level(most - levels[s]);
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
    int[] levels = new int[count];
    valueLevels(block, count, headDim, weights, wOff, levels);
    long bits = 8L * count;
    long fullBits = 0;
    byte[] array = Planes.applies(headDim) ? VectorKernels.array(block) : null;
    for (int s = 0; s < count; s++) {
      float w = weights[wOff + s];
      if (w == 0f) {
        continue;
      }
      fullBits += 16L * headDim;
      bits += (long) bitsAt(levels[s]) * headDim;
      if (levels[s] == 3) {
        continue;
      }
      if (array != null && Planes.finite(array, (int) row(s, headDim), 1)) {
        Planes.addRow(array, (int) row(s, headDim), headDim, levels[s], w, acc, accOff);
        continue;
      }
      for (int c = 0; c < headDim; c++) {
        acc[accOff + c] += w * element(block, s, c, capacity, headDim, levels[s]);
      }
    }
    read.add(bits);
    full.add(fullBits);
  }

  /**
   * The planes of a block on the heap read a float vector of channels at a time, the same bits as
   * {@link #element}: the first-8 plane's bytes widened, the middle and last planes' nibbles cut
   * from 32-bit words as 4-bit {@link CodeWords} (even channel low), a nibble not read replaced by
   * {@code 0b1000}, the fp16 pattern widened to a float as {@link VectorKernels#halves} does for
   * finite halves (a block whose exponent maxima reach 15, where infinities and NaNs could be,
   * takes the scalar path). Key scores keep the scalar path's sum: each row's products {@code q_c ·
   * x_c} in channel order, a skipped channel's product replaced by {@code −0} (adding it leaves any
   * sum as it is), four rows' sequential sums side by side.
   */
  static final class Planes {
    private static final jdk.incubator.vector.VectorSpecies<Float> FLOATS = CodeWords.FLOATS;
    private static final jdk.incubator.vector.VectorSpecies<Integer> INTS = CodeWords.INTS;
    private static final int LANES = CodeWords.LANES;
    private static final jdk.incubator.vector.VectorSpecies<Byte> BYTES =
        jdk.incubator.vector.VectorSpecies.of(
            byte.class, jdk.incubator.vector.VectorShape.forBitSize(Math.max(64, LANES * 8)));
    private static final CodeWords NIBBLES = CodeWords.of(4);

    private Planes() {}

    /**
     * True when the vector path applies: 8 float lanes (AVX2), whole vectors of channels (16 lanes
     * keep the general path until the 16-lane form has run on an AVX-512 machine).
     */
    static boolean applies(int headDim) {
      return LANES == 8 && CodeWords.applies(4, headDim);
    }

    /** Whether the exponent maxima {@code array[at..+n)} leave out exponents 30 and 31. */
    static boolean finite(byte[] array, int at, int n) {
      for (int i = 0; i < n; i++) {
        if (array[at + i] >= 15) {
          return false;
        }
      }
      return true;
    }

    /** The nibbles of a vector of channels whose run starts at byte {@code at}. */
    private static jdk.incubator.vector.IntVector nibbles(byte[] array, int at) {
      return jdk.incubator.vector.IntVector.broadcast(INTS, CodeWords.word(array, at))
          .blend(
              jdk.incubator.vector.IntVector.broadcast(
                  INTS, CodeWords.word(array, at + NIBBLES.highByte)),
              NIBBLES.high)
          .lanewise(jdk.incubator.vector.VectorOperators.LSHR, NIBBLES.shifts)
          .and(15);
    }

    /**
     * The elements of channels {@code [j, j + L)} of the row at byte {@code row}: the fp16 pattern
     * {@code hi << 8 | (mid << 4 & midMask) | (lo & lowMask) | unread}, widened.
     */
    private static jdk.incubator.vector.FloatVector elements(
        byte[] array,
        int row,
        int headDim,
        int j,
        jdk.incubator.vector.IntVector midMask,
        jdk.incubator.vector.IntVector lowMask,
        jdk.incubator.vector.IntVector unread) {
      int hi = row + 1;
      int mid = hi + headDim;
      int lo = mid + headDim / 2;
      jdk.incubator.vector.IntVector h =
          ((jdk.incubator.vector.IntVector)
                  jdk.incubator.vector.ByteVector.fromArray(BYTES, array, hi + j)
                      .convertShape(jdk.incubator.vector.VectorOperators.ZERO_EXTEND_B2I, INTS, 0))
              .lanewise(jdk.incubator.vector.VectorOperators.LSHL, 8)
              .or(
                  nibbles(array, mid + j / 2)
                      .lanewise(jdk.incubator.vector.VectorOperators.LSHL, 4)
                      .and(midMask))
              .or(nibbles(array, lo + j / 2).and(lowMask))
              .or(unread);
      // sign to bit 31 (copies at 28–30 masked off), exponent and mantissa to bits 13–27, × 2^112
      return h.lanewise(jdk.incubator.vector.VectorOperators.LSHL, 16)
          .lanewise(jdk.incubator.vector.VectorOperators.ASHR, 3)
          .and(0x8fffe000)
          .reinterpretAsFloats()
          .mul(0x1p112f);
    }

    /** {@link AlignedKvFormat#scores} of every slot for channel levels {@code levels}. */
    static void scores(
        byte[] array,
        int count,
        int headDim,
        float[] prepared,
        int pOff,
        int[] levels,
        float[] scores,
        float[] work) {
      // per channel: the middle and last nibble masks, the unread nibbles, and the product's kept
      // bits and sign (−0 for a skipped channel)
      int[] sel = new int[5 * headDim];
      for (int c = 0; c < headDim; c++) {
        int level = levels[c];
        sel[c] = level <= 1 ? 0xf0 : 0;
        sel[headDim + c] = level == 0 ? 0x0f : 0;
        sel[2 * headDim + c] = (level <= 1 ? 0 : 0x80) | (level == 0 ? 0 : 0x08);
        sel[3 * headDim + c] = level < 3 ? -1 : 0;
        sel[4 * headDim + c] = level < 3 ? 0 : 0x80000000;
      }
      float[] p = work.length >= 4 * headDim ? work : new float[4 * headDim];
      int s = 0;
      for (; s + 4 <= count; s += 4) {
        for (int r = 0; r < 4; r++) {
          products(array, (int) row(s + r, headDim), headDim, prepared, pOff, sel, p, r * headDim);
        }
        float s0 = 0f;
        float s1 = 0f;
        float s2 = 0f;
        float s3 = 0f;
        for (int c = 0; c < headDim; c++) {
          s0 += p[c];
          s1 += p[headDim + c];
          s2 += p[2 * headDim + c];
          s3 += p[3 * headDim + c];
        }
        scores[s] = s0;
        scores[s + 1] = s1;
        scores[s + 2] = s2;
        scores[s + 3] = s3;
      }
      for (; s < count; s++) {
        products(array, (int) row(s, headDim), headDim, prepared, pOff, sel, p, 0);
        float sum = 0f;
        for (int c = 0; c < headDim; c++) {
          sum += p[c];
        }
        scores[s] = sum;
      }
    }

    /** The row's products {@code q_c · x_c} (−0 where skipped) into {@code out[o..+headDim)}. */
    private static void products(
        byte[] array, int row, int headDim, float[] q, int qOff, int[] sel, float[] out, int o) {
      for (int j = 0; j < headDim; j += LANES) {
        jdk.incubator.vector.FloatVector x =
            elements(
                array,
                row,
                headDim,
                j,
                jdk.incubator.vector.IntVector.fromArray(INTS, sel, j),
                jdk.incubator.vector.IntVector.fromArray(INTS, sel, headDim + j),
                jdk.incubator.vector.IntVector.fromArray(INTS, sel, 2 * headDim + j));
        jdk.incubator.vector.FloatVector.fromArray(FLOATS, q, qOff + j)
            .mul(x)
            .reinterpretAsInts()
            .and(jdk.incubator.vector.IntVector.fromArray(INTS, sel, 3 * headDim + j))
            .or(jdk.incubator.vector.IntVector.fromArray(INTS, sel, 4 * headDim + j))
            .reinterpretAsFloats()
            .intoArray(out, o + j);
      }
    }

    /** {@code acc[c] += w · x_c} for the row at byte {@code row} read at {@code level} (< 3). */
    static void addRow(
        byte[] array, int row, int headDim, int level, float w, float[] acc, int accOff) {
      jdk.incubator.vector.IntVector midMask =
          jdk.incubator.vector.IntVector.broadcast(INTS, level <= 1 ? 0xf0 : 0);
      jdk.incubator.vector.IntVector lowMask =
          jdk.incubator.vector.IntVector.broadcast(INTS, level == 0 ? 0x0f : 0);
      jdk.incubator.vector.IntVector unread =
          jdk.incubator.vector.IntVector.broadcast(
              INTS, (level <= 1 ? 0 : 0x80) | (level == 0 ? 0 : 0x08));
      for (int j = 0; j < headDim; j += LANES) {
        jdk.incubator.vector.FloatVector x =
            elements(array, row, headDim, j, midMask, lowMask, unread);
        jdk.incubator.vector.FloatVector.fromArray(FLOATS, acc, accOff + j)
            .add(x.mul(w))
            .intoArray(acc, accOff + j);
      }
    }
  }
}
