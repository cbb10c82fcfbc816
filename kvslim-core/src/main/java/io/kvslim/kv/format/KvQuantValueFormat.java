package io.kvslim.kv.format;

import io.kvslim.kv.attention.VectorKernels;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * KVQuant values (arXiv:2401.18079; METHODS.md Q4 step 3): per-token non-uniform quantization with
 * per-vector dense-and-sparse outliers. As the authors' per-token path does ({@code
 * quant/kvquant/simquant_module_quantizer.py} of SqueezeAILab/KVQuant, {@code
 * get_outliers_dynamic}, lines 80–113, and {@code quant_fn_nuq_recon} with {@code
 * dynamicquantization}, lines 298–362), the {@code perSide} largest and {@code perSide} smallest
 * entries of each value vector are outliers kept in fp16; the inliers' min and max give the
 * vector's offset o = (max + min)/2 and range r = (max − min)/2, each inlier is normalized to u =
 * (x − o)/r ∈ [−1, 1] and coded as the nearest of the layer's 2^bits calibrated centroids.
 *
 * <p>Row layout: ⌈d·bits/8⌉ bytes of codes ({@link PackedCodes}), o and r as fp16 (r rounded up so
 * every inlier stays in [−1, 1] after o's rounding), then 2·{@code perSide} outlier entries (u8
 * index, fp16 value). Per-element bound: an inlier's error is at most r·E ({@link #inlierError}),
 * an outlier's is its fp16 rounding.
 *
 * <p>Fused accumulation: the centroids are looked up from the codes and added as {@code (w·r)·cent
 * + w·o}; an outlier's channel adds {@code w·v} instead (the decoded row's term, with no dense term
 * added and taken back: the kernels keep {@code acc + w·v} from before the row's dense pass and
 * store it after, so they need neither the code under the outlier nor its centroid).
 */
public final class KvQuantValueFormat extends RowFormat {
  private final int bits;
  private final int perSide;
  private final float[] centroids;
  private final float[] midpoints;
  // the codebook in one vector, or its first LANES centroids with the rest in upper (4 bits on 8
  // lanes); null without 8 or 16 float lanes
  private final jdk.incubator.vector.IntVector book;
  private final jdk.incubator.vector.IntVector upper;

  /**
   * @param perSide outliers per vector at each end (largest and smallest)
   * @throws IllegalArgumentException on a bad codebook, bits or outlier count
   */
  public KvQuantValueFormat(int bits, float[] centroids, int perSide) {
    if (bits < 2 || bits > 4) {
      throw new IllegalArgumentException("kvquant values need 2, 3 or 4 bits, got " + bits);
    }
    if (perSide < 0 || perSide > 64) {
      throw new IllegalArgumentException(
          "kvquant values keep 0..64 outliers per side, got " + perSide);
    }
    this.bits = bits;
    this.perSide = perSide;
    this.centroids = KvQuantRows.checkCodebook("kvquant value", centroids, bits);
    this.midpoints = KvQuantRows.midpoints(this.centroids);
    boolean vectors = CodeWords.LANES == 8 || CodeWords.LANES == 16;
    int lanes = CodeWords.LANES;
    this.book =
        vectors
            ? CodeWords.book(Arrays.copyOf(this.centroids, Math.min(this.centroids.length, lanes)))
            : null;
    this.upper =
        vectors && this.centroids.length > lanes
            ? CodeWords.book(Arrays.copyOfRange(this.centroids, lanes, this.centroids.length))
            : null;
  }

  /** The layer's 2^bits centroids as f32 (the midpoints are derived from them). */
  @Override
  public long tableBytes() {
    return 4L * centroids.length;
  }

  public int bits() {
    return bits;
  }

  @Override
  public String name() {
    return "kvquant_v" + bits;
  }

  private int slots() {
    return 2 * perSide;
  }

  public int codeBytes(int headDim) {
    return PackedCodes.bytes(headDim, bits);
  }

  @Override
  public int rowBytes(int headDim) {
    return codeBytes(headDim) + 4 + KvQuantRows.OUTLIER_BYTES * slots();
  }

  /** The fp16 offset and range and the sparse outlier entries. */
  @Override
  protected int rowScaleBytes(int headDim) {
    return 4 + KvQuantRows.OUTLIER_BYTES * slots();
  }

  @Override
  public void checkHeadDim(int headDim) {
    if (headDim <= slots() || headDim > 255) {
      throw new IllegalArgumentException(
          "format "
              + name()
              + " needs a head dimension above its "
              + slots()
              + " outliers and at most 255, got "
              + headDim);
    }
  }

  /** E: the largest normalized inlier error of the codebook ({@code |x − x̂| ≤ r·E}). */
  public float inlierError() {
    return KvQuantRows.maxError(centroids);
  }

  /** The fp16 range r of the token in {@code slot} (for bound checks). */
  public float range(MemorySegment block, int slot, int headDim) {
    long at = (long) slot * rowBytes(headDim) + codeBytes(headDim) + 2;
    return HalfFloats.fromF16(AsymmetricCodes.shortAt(block, VectorKernels.array(block), at));
  }

  @Override
  protected void encodeRow(float[] src, int srcOff, MemorySegment block, long offset, int headDim) {
    int slots = slots();
    int[] chosen = new int[Math.max(1, slots)];
    float[] key = new float[headDim];
    for (int j = 0; j < headDim; j++) {
      key[j] = src[srcOff + j];
    }
    int up = KvQuantRows.pickLargest(key, headDim, Float.NEGATIVE_INFINITY, perSide, chosen);
    boolean[] out = new boolean[headDim];
    for (int i = 0; i < up; i++) {
      out[chosen[i]] = true;
    }
    for (int j = 0; j < headDim; j++) {
      key[j] = out[j] ? Float.NEGATIVE_INFINITY : -src[srcOff + j];
    }
    int[] low = new int[Math.max(1, perSide)];
    int down = KvQuantRows.pickLargest(key, headDim, Float.NEGATIVE_INFINITY, perSide, low);
    System.arraycopy(low, 0, chosen, up, down);
    int count = up + down;
    for (int i = up; i < count; i++) {
      out[chosen[i]] = true;
    }
    float min = Float.POSITIVE_INFINITY;
    float max = Float.NEGATIVE_INFINITY;
    for (int j = 0; j < headDim; j++) {
      if (!out[j]) {
        min = Math.min(min, src[srcOff + j]);
        max = Math.max(max, src[srcOff + j]);
      }
    }
    short o16 = HalfFloats.toF16((max + min) / 2f);
    float o = HalfFloats.fromF16(o16);
    float need = Math.max(max - o, o - min);
    short r16 = HalfFloats.toF16RoundedUp(need);
    float r = HalfFloats.fromF16(r16);
    int[] codes = PackedCodes.scratch(headDim);
    for (int j = 0; j < headDim; j++) {
      float u = r > 0f ? (src[srcOff + j] - o) / r : 0f;
      codes[j] = KvQuantRows.nearest(midpoints, Math.max(-1f, Math.min(1f, u)));
    }
    float[] values = new float[chosen.length];
    for (int i = 0; i < count; i++) {
      values[i] = src[srcOff + chosen[i]];
    }
    PackedCodes.pack(codes, headDim, bits, block, offset);
    long at = offset + codeBytes(headDim);
    block.set(F16Format.SHORT_LE, at, o16);
    block.set(F16Format.SHORT_LE, at + 2, r16);
    KvQuantRows.writeOutliers(chosen, values, count, slots, block, at + 4);
  }

  @Override
  protected void decodeRow(MemorySegment block, long offset, int headDim, float[] dst, int dstOff) {
    PackedCodes.lookup(block, offset, headDim, bits, centroids, dst, dstOff);
    long at = offset + codeBytes(headDim);
    byte[] array = VectorKernels.array(block);
    float o = HalfFloats.fromF16(AsymmetricCodes.shortAt(block, array, at));
    float r = HalfFloats.fromF16(AsymmetricCodes.shortAt(block, array, at + 2));
    for (int j = 0; j < headDim; j++) {
      dst[dstOff + j] = dst[dstOff + j] * r + o;
    }
    KvQuantRows.applyOutliers(block, at + 4, slots(), dst, dstOff);
  }

  /** Dequantize, then the dot product (values are never scored; part of the contract). */
  @Override
  protected float dotRow(
      MemorySegment block, long offset, int headDim, float[] q, int qOff, float[] work) {
    decodeRow(block, offset, headDim, work, 0);
    return VectorKernels.dot(q, qOff, work, 0, headDim);
  }

  /**
   * {@link #accumulateRow} for the block's slots with a nonzero weight, in slot order, without its
   * per-row calls: each vector of a row's codes is cut from the packed bytes in registers ({@link
   * CodeWords}), looked up in the codebook held in one vector (a permute) and added lane by lane as
   * {@code acc + ((w·r)·cent + w·o)} (the scalar loop's roundings), and each outlier's channel
   * takes {@code acc + w·v} as there (summed before the dense pass, stored after it): the same
   * bits. (Keeping the sum of a vector of channels in a register over the block's slots, with each
   * outlier's term as a one-lane masked add, measured 3–5x slower: C2 did not keep the vector in a
   * register across the outlier loop.)
   */
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
    byte[] array = VectorKernels.array(block);
    if (array == null
        || !CodeWords.applies(bits, headDim)
        || book == null
        || work.length < slots()) {
      super.accumulateBlock(block, count, capacity, headDim, weights, wOff, acc, accOff, work);
      return;
    }
    if (CodeWords.LANES == 8) {
      addScaledBook(
          array,
          count,
          headDim,
          rowBytes(headDim),
          codeBytes(headDim),
          slots(),
          CodeWords.of(bits),
          book,
          upper,
          weights,
          wOff,
          acc,
          accOff,
          work);
      return;
    }
    addInRegisters(
        array,
        count,
        headDim,
        rowBytes(headDim),
        codeBytes(headDim),
        slots(),
        CodeWords.of(bits),
        book,
        upper,
        weights,
        wOff,
        acc,
        accOff,
        work);
  }

  /**
   * {@link #accumulateBlock} for several query rows (a prefill tile's), slot by slot: each slot's
   * codes are looked up once, in registers, into {@code work}, then each row with a nonzero weight
   * adds them and replaces the slot's outliers with {@link #accumulateBlock}'s operations, in slot
   * order: each row's bits are {@link #accumulateBlock}'s.
   */
  @Override
  public void accumulateBlockRows(
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
    byte[] array = VectorKernels.array(block);
    if (rowCount < 2
        || array == null
        || !CodeWords.applies(bits, headDim)
        || book == null
        || work.length < headDim + slots()) {
      super.accumulateBlockRows(
          block, count, capacity, headDim, weights, wOff, wStride, rows, rowCount, acc, accStride,
          work);
      return;
    }
    addRowsInRegisters(
        array,
        count,
        headDim,
        rowBytes(headDim),
        codeBytes(headDim),
        slots(),
        CodeWords.of(bits),
        book,
        upper,
        weights,
        wOff,
        wStride,
        rows,
        rowCount,
        acc,
        accStride,
        work);
  }

  private static void addRowsInRegisters(
      byte[] array,
      int count,
      int headDim,
      int rowBytes,
      int codeBytes,
      int slots,
      CodeWords w,
      jdk.incubator.vector.IntVector book,
      jdk.incubator.vector.IntVector upper,
      float[] weights,
      int wOff,
      int wStride,
      int[] rows,
      int rowCount,
      float[] acc,
      int accStride,
      float[] cents) {
    jdk.incubator.vector.VectorSpecies<Float> species = CodeWords.FLOATS;
    jdk.incubator.vector.VectorSpecies<Integer> ints = CodeWords.INTS;
    int lanes = CodeWords.LANES;
    int highByte = w.highByte;
    int mask = w.mask;
    jdk.incubator.vector.IntVector shifts = w.shifts;
    jdk.incubator.vector.VectorMask<Integer> high = w.high;
    jdk.incubator.vector.IntVector second = upper == null ? book : upper;
    for (int s = 0; s < count; s++) {
      boolean any = false;
      for (int i = 0; i < rowCount && !any; i++) {
        any = weights[wOff + rows[i] * wStride + s] != 0f;
      }
      if (!any) {
        continue;
      }
      int offset = s * rowBytes;
      // selectFrom wraps each index to the vector: code mod LANES, the entry in either half
      for (int j = 0, c = offset; j < headDim; j += lanes, c += w.vectorBytes) {
        jdk.incubator.vector.IntVector code =
            jdk.incubator.vector.IntVector.broadcast(ints, CodeWords.word(array, c))
                .blend(
                    jdk.incubator.vector.IntVector.broadcast(
                        ints, CodeWords.word(array, c + highByte)),
                    high)
                .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
                .and(mask);
        code.selectFrom(book)
            .blend(
                code.selectFrom(second),
                code.compare(jdk.incubator.vector.VectorOperators.GT, lanes - 1))
            .reinterpretAsFloats()
            .intoArray(cents, j);
      }
      int at = offset + codeBytes;
      float o = HalfFloats.fromF16((short) ((array[at] & 0xff) | array[at + 1] << 8));
      float r = HalfFloats.fromF16((short) ((array[at + 2] & 0xff) | array[at + 3] << 8));
      int sparse = at + 4;
      for (int i = 0; i < rowCount; i++) {
        int row = rows[i];
        float weight = weights[wOff + row * wStride + s];
        if (weight == 0f) {
          continue;
        }
        int accOff = row * accStride;
        float a = weight * r;
        float b = weight * o;
        jdk.incubator.vector.FloatVector va =
            jdk.incubator.vector.FloatVector.broadcast(species, a);
        jdk.incubator.vector.FloatVector vb =
            jdk.incubator.vector.FloatVector.broadcast(species, b);
        outliersBefore(array, sparse, slots, weight, acc, accOff, cents, headDim);
        for (int j = 0; j < headDim; j += lanes) {
          jdk.incubator.vector.FloatVector cent =
              jdk.incubator.vector.FloatVector.fromArray(species, cents, j);
          jdk.incubator.vector.FloatVector.fromArray(species, acc, accOff + j)
              .add(cent.mul(va).add(vb))
              .intoArray(acc, accOff + j);
        }
        outliersAfter(array, sparse, slots, acc, accOff, cents, headDim);
      }
    }
  }

  /**
   * {@link #addInRegisters} on 8 lanes with fewer operations and the same bits: every width's codes
   * of a vector of 8 channels lie in one word ({@link CodeWords#highByte} 0: no blend), and the
   * codebook (its two halves at 4 bits) is multiplied by the row's {@code w·r} once per row, so a
   * lookup gives {@code (w·r)·cent} (the same product per lane) and each vector of channels adds
   * {@code acc + ((w·r)·cent + w·o)} as there.
   */
  private static void addScaledBook(
      byte[] array,
      int count,
      int headDim,
      int rowBytes,
      int codeBytes,
      int slots,
      CodeWords w,
      jdk.incubator.vector.IntVector book,
      jdk.incubator.vector.IntVector upper,
      float[] weights,
      int wOff,
      float[] acc,
      int accOff,
      float[] work) {
    jdk.incubator.vector.VectorSpecies<Float> species = CodeWords.FLOATS;
    jdk.incubator.vector.VectorSpecies<Integer> ints = CodeWords.INTS;
    int mask = w.mask;
    int vectorBytes = w.vectorBytes;
    jdk.incubator.vector.IntVector shifts = w.shifts;
    jdk.incubator.vector.FloatVector lowBook = book.reinterpretAsFloats();
    boolean two = upper != null; // 16 centroids: the codebook's two halves
    jdk.incubator.vector.FloatVector highBook = (two ? upper : book).reinterpretAsFloats();
    for (int s = 0; s < count; s++) {
      float weight = weights[wOff + s];
      if (weight == 0f) {
        continue;
      }
      int offset = s * rowBytes;
      int at = offset + codeBytes;
      float o = HalfFloats.fromF16((short) ((array[at] & 0xff) | array[at + 1] << 8));
      float r = HalfFloats.fromF16((short) ((array[at + 2] & 0xff) | array[at + 3] << 8));
      float a = weight * r;
      float b = weight * o;
      jdk.incubator.vector.FloatVector vb = jdk.incubator.vector.FloatVector.broadcast(species, b);
      jdk.incubator.vector.IntVector lowA = lowBook.mul(a).reinterpretAsInts();
      jdk.incubator.vector.IntVector highA = two ? highBook.mul(a).reinterpretAsInts() : lowA;
      int sparse = at + 4;
      outliersBefore(array, sparse, slots, weight, acc, accOff, work, 0);
      for (int j = 0, c = offset; j < headDim; j += 8, c += vectorBytes) {
        jdk.incubator.vector.IntVector code =
            jdk.incubator.vector.IntVector.broadcast(ints, CodeWords.word(array, c))
                .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
                .and(mask);
        // selectFrom wraps each index to the 8 lanes; codes above 7 take the second half's entry
        jdk.incubator.vector.IntVector found = code.selectFrom(lowA);
        if (two) {
          found =
              found.blend(
                  code.selectFrom(highA), code.compare(jdk.incubator.vector.VectorOperators.GT, 7));
        }
        jdk.incubator.vector.FloatVector scaled = found.reinterpretAsFloats();
        jdk.incubator.vector.FloatVector.fromArray(species, acc, accOff + j)
            .add(scaled.add(vb))
            .intoArray(acc, accOff + j);
      }
      outliersAfter(array, sparse, slots, acc, accOff, work, 0);
    }
  }

  /**
   * Before a row's dense terms are added: each used outlier's sum {@code acc + w·v} (its channel's
   * sum before this row plus the outlier's term) into {@code sums[at + entry]}.
   */
  private static void outliersBefore(
      byte[] array,
      int sparse,
      int slots,
      float weight,
      float[] acc,
      int accOff,
      float[] sums,
      int at) {
    for (int i = 0; i < slots; i++) {
      int idx = KvQuantRows.outlierIndex(null, array, sparse, i);
      if (idx != KvQuantRows.UNUSED) {
        sums[at + i] =
            acc[accOff + idx] + weight * KvQuantRows.outlierValue(null, array, sparse, i);
      }
    }
  }

  /** After the row's dense terms: each used outlier's channel takes its sum from before. */
  private static void outliersAfter(
      byte[] array, int sparse, int slots, float[] acc, int accOff, float[] sums, int at) {
    for (int i = 0; i < slots; i++) {
      int idx = KvQuantRows.outlierIndex(null, array, sparse, i);
      if (idx != KvQuantRows.UNUSED) {
        acc[accOff + idx] = sums[at + i];
      }
    }
  }

  private static void addInRegisters(
      byte[] array,
      int count,
      int headDim,
      int rowBytes,
      int codeBytes,
      int slots,
      CodeWords w,
      jdk.incubator.vector.IntVector book,
      jdk.incubator.vector.IntVector upper,
      float[] weights,
      int wOff,
      float[] acc,
      int accOff,
      float[] work) {
    jdk.incubator.vector.VectorSpecies<Float> species = CodeWords.FLOATS;
    jdk.incubator.vector.VectorSpecies<Integer> ints = CodeWords.INTS;
    int lanes = CodeWords.LANES;
    int highByte = w.highByte;
    int mask = w.mask;
    jdk.incubator.vector.IntVector shifts = w.shifts;
    jdk.incubator.vector.VectorMask<Integer> high = w.high;
    for (int s = 0; s < count; s++) {
      float weight = weights[wOff + s];
      if (weight == 0f) {
        continue;
      }
      int offset = s * rowBytes;
      int at = offset + codeBytes;
      float o = HalfFloats.fromF16((short) ((array[at] & 0xff) | array[at + 1] << 8));
      float r = HalfFloats.fromF16((short) ((array[at + 2] & 0xff) | array[at + 3] << 8));
      float a = weight * r;
      float b = weight * o;
      jdk.incubator.vector.FloatVector va = jdk.incubator.vector.FloatVector.broadcast(species, a);
      jdk.incubator.vector.FloatVector vb = jdk.incubator.vector.FloatVector.broadcast(species, b);
      int sparse = at + 4;
      outliersBefore(array, sparse, slots, weight, acc, accOff, work, 0);
      if (upper == null) {
        for (int j = 0, c = offset; j < headDim; j += lanes, c += w.vectorBytes) {
          jdk.incubator.vector.FloatVector cent =
              jdk.incubator.vector.IntVector.broadcast(ints, CodeWords.word(array, c))
                  .blend(
                      jdk.incubator.vector.IntVector.broadcast(
                          ints, CodeWords.word(array, c + highByte)),
                      high)
                  .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
                  .and(mask)
                  .selectFrom(book)
                  .reinterpretAsFloats();
          jdk.incubator.vector.FloatVector.fromArray(species, acc, accOff + j)
              .add(cent.mul(va).add(vb))
              .intoArray(acc, accOff + j);
        }
      } else {
        // more centroids than lanes (4 bits on 8 lanes): the codebook's two halves, each one
        // permute, and the lanes whose code is past the first half take the second
        int lowMask = lanes - 1;
        for (int j = 0, c = offset; j < headDim; j += lanes, c += w.vectorBytes) {
          jdk.incubator.vector.IntVector code =
              jdk.incubator.vector.IntVector.broadcast(ints, CodeWords.word(array, c))
                  .blend(
                      jdk.incubator.vector.IntVector.broadcast(
                          ints, CodeWords.word(array, c + highByte)),
                      high)
                  .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
                  .and(mask);
          // selectFrom wraps each index to the vector: code mod LANES, the entry in either half
          jdk.incubator.vector.FloatVector cent =
              code.selectFrom(book)
                  .blend(
                      code.selectFrom(upper),
                      code.compare(jdk.incubator.vector.VectorOperators.GT, lowMask))
                  .reinterpretAsFloats();
          jdk.incubator.vector.FloatVector.fromArray(species, acc, accOff + j)
              .add(cent.mul(va).add(vb))
              .intoArray(acc, accOff + j);
        }
      }
      outliersAfter(array, sparse, slots, acc, accOff, work, 0);
    }
  }

  @Override
  protected void accumulateRow(
      MemorySegment block,
      long offset,
      int headDim,
      float weight,
      float[] acc,
      int accOff,
      float[] work) {
    PackedCodes.lookup(block, offset, headDim, bits, centroids, work, 0);
    long at = offset + codeBytes(headDim);
    byte[] array = VectorKernels.array(block);
    float o = HalfFloats.fromF16(AsymmetricCodes.shortAt(block, array, at));
    float r = HalfFloats.fromF16(AsymmetricCodes.shortAt(block, array, at + 2));
    float a = weight * r;
    float b = weight * o;
    for (int j = 0; j < headDim; j++) {
      work[j] = a * work[j] + b;
    }
    // an outlier's channel adds its own term instead of the dense one (the row decoded, weighted)
    long sparse = at + 4;
    for (int i = 0, slots = slots(); i < slots; i++) {
      int idx = KvQuantRows.outlierIndex(block, array, sparse, i);
      if (idx != KvQuantRows.UNUSED) {
        work[idx] = weight * KvQuantRows.outlierValue(block, array, sparse, i);
      }
    }
    for (int j = 0; j < headDim; j++) {
      acc[accOff + j] += work[j];
    }
  }
}
