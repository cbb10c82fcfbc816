package io.kvslim.kv.format;

import io.kvslim.kv.attention.AttentionKernels;
import io.kvslim.kv.attention.VectorKernels;
import java.lang.foreign.MemorySegment;

/**
 * TurboQuant keys (Zandieh et al., arXiv:2504.19874; METHODS.md N1 steps 2–4), as vLLM ships them
 * (vllm-project/vllm): per token, the norm ρ = ‖k‖ as fp16 and the codes of the rotated unit vector
 * u = Π·k/(ρ + 1e-8), Π the Sylvester Hadamard/√d ({@link Hadamard}), each coordinate coded by the
 * Lloyd–Max codebook of {@code bits} for N(0, 1/d) ({@link LloydMaxCodebook}): {@code idx_j} = the
 * number of midpoints ≤ u_j ({@code vllm/v1/attention/ops/triton_turboquant_store.py}, {@code
 * triton_turboquant_store}: {@code x_hat = k / (norms + 1e-8); y = x_hat @ PiT}, and {@code
 * _tq_fused_store_mse}: binary-search bucketize, pack, fp16 norm after the codes).
 *
 * <p>Row layout: {@code ⌈d·bits/8⌉} bytes of codes ({@link PackedCodes}, little-endian), then ρ as
 * fp16: {@code ⌈d·bits/8⌉ + 2} bytes per token (no scale or zero point).
 *
 * <p>Dequantized key: k̂ = ρ·Πᵀ·ĉ with ĉ = c[idx], or with norm correction ({@code nc}) ĉ =
 * c[idx]/√(‖c[idx]‖² + 1e-16), the centroid vector renormalized to unit length before the inverse
 * rotation ({@code vllm/v1/attention/ops/triton_turboquant_decode.py}, {@code _tq_decode_stage1}
 * and {@code _tq_full_dequant_kv}, the {@code NORM_CORRECTION} branches).
 *
 * <p>Fused score without dequantizing: {@link #prepareQuery} rotates the query once, q' = Π·q (fast
 * Walsh–Hadamard transform); then {@code q·k̂ = ρ·(q'·ĉ)} since Π is orthogonal — vLLM's decode
 * score before its 1/√d attention scale, which the attention loop applies here.
 */
public final class TurboQuantKeyFormat extends RawQueryKeyFormat {
  private static final ThreadLocal<float[]> SCRATCH = ThreadLocal.withInitial(() -> new float[0]);

  private final int bits;
  private final boolean normCorrection;

  /**
   * @throws IllegalArgumentException unless {@code bits} is 2, 3 or 4
   */
  public TurboQuantKeyFormat(int bits, boolean normCorrection) {
    if (bits < 2 || bits > 4) {
      throw new IllegalArgumentException(
          "turboquant keys need 2, 3 or 4 bits per coordinate, got " + bits);
    }
    this.bits = bits;
    this.normCorrection = normCorrection;
  }

  public int bits() {
    return bits;
  }

  public boolean normCorrection() {
    return normCorrection;
  }

  @Override
  public String name() {
    return "tq_k" + bits + (normCorrection ? "_nc" : "");
  }

  /** Bytes of the codes of one row: ⌈headDim·bits/8⌉. */
  public int codeBytes(int headDim) {
    return PackedCodes.bytes(headDim, bits);
  }

  @Override
  public int rowBytes(int headDim) {
    return codeBytes(headDim) + 2;
  }

  @Override
  protected int rowScaleBytes(int headDim) {
    return 2; // the fp16 norm
  }

  @Override
  public void checkHeadDim(int headDim) {
    if (!Hadamard.fits(headDim)) {
      throw new IllegalArgumentException(
          "format "
              + name()
              + " needs a head dimension that is a power of 2 (for the Hadamard rotation), got "
              + headDim);
    }
  }

  /** The last codebook looked up (immutable; a benign race at worst looks it up again). */
  private LloydMaxCodebook book;

  /** The last codebook's centroids as vectors (eight a vector), for the register paths. */
  private record Books(
      LloydMaxCodebook book,
      jdk.incubator.vector.IntVector low,
      jdk.incubator.vector.IntVector high) {}

  private Books books;

  /** {@link #codebook}'s centroids in vectors: the first {@link CodeWords#LANES}, then the rest. */
  private Books books(int headDim) {
    Books b = books;
    if (b == null || b.book().dim() != headDim) {
      LloydMaxCodebook book = codebook(headDim);
      float[] t = book.centroidsView();
      int n = Math.min(t.length, CodeWords.LANES);
      b =
          new Books(
              book,
              CodeWords.book(java.util.Arrays.copyOfRange(t, 0, n)),
              t.length > n
                  ? CodeWords.book(java.util.Arrays.copyOfRange(t, n, Math.min(t.length, 2 * n)))
                  : null);
      books = b;
    }
    return b;
  }

  private LloydMaxCodebook codebook(int headDim) {
    LloydMaxCodebook b = book;
    if (b == null || b.dim() != headDim) {
      b = LloydMaxCodebook.of(headDim, bits); // a map lookup: once, not per row
      book = b;
    }
    return b;
  }

  private static float[] scratch(int n) {
    float[] s = SCRATCH.get();
    if (s.length < n) {
      s = new float[n];
      SCRATCH.set(s);
    }
    return s;
  }

  @Override
  protected void encodeRow(float[] src, int srcOff, MemorySegment block, long offset, int headDim) {
    LloydMaxCodebook book = codebook(headDim);
    double sumSquares = 0;
    for (int j = 0; j < headDim; j++) {
      sumSquares += (double) src[srcOff + j] * src[srcOff + j];
    }
    float norm = (float) Math.sqrt(sumSquares);
    float[] u = scratch(headDim);
    float divisor = norm + 1e-8f;
    for (int j = 0; j < headDim; j++) {
      u[j] = src[srcOff + j] / divisor;
    }
    Hadamard.rotate(u, 0, headDim);
    int[] codes = PackedCodes.scratch(headDim);
    for (int j = 0; j < headDim; j++) {
      codes[j] = book.code(u[j]);
    }
    PackedCodes.pack(codes, headDim, bits, block, offset);
    block.set(F16Format.SHORT_LE, offset + codeBytes(headDim), HalfFloats.toF16(norm));
  }

  /** ρ of the row at {@code offset}. */
  private float norm(MemorySegment block, long offset, int headDim) {
    return HalfFloats.fromF16(
        AsymmetricCodes.shortAt(block, VectorKernels.array(block), offset + codeBytes(headDim)));
  }

  /** ρ (the fp16 norm) of the token in {@code slot} (for bound checks). */
  public float norm(MemorySegment block, int slot, int headDim) {
    return norm(block, (long) slot * rowBytes(headDim), headDim);
  }

  /** The row's centroid vector c[idx] into {@code dst[dstOff..+headDim)}. */
  private void centroids(MemorySegment block, long offset, int headDim, float[] dst, int dstOff) {
    PackedCodes.lookup(
        block, offset, headDim, bits, codebook(headDim).centroidsView(), dst, dstOff);
  }

  /** 1/√(‖c‖² + 1e-16) with norm correction, else 1. */
  private float correction(float[] c, int off, int headDim) {
    if (!normCorrection) {
      return 1f;
    }
    float sumSquares = VectorKernels.dot(c, off, c, off, headDim);
    return (float) (1.0 / Math.sqrt(sumSquares + 1e-16));
  }

  @Override
  protected void decodeRow(MemorySegment block, long offset, int headDim, float[] dst, int dstOff) {
    centroids(block, offset, headDim, dst, dstOff);
    float inv = correction(dst, dstOff, headDim);
    if (inv != 1f) {
      for (int j = 0; j < headDim; j++) {
        dst[dstOff + j] *= inv;
      }
    }
    Hadamard.rotate(dst, dstOff, headDim); // Πᵀ = Π
    float norm = norm(block, offset, headDim);
    for (int j = 0; j < headDim; j++) {
      dst[dstOff + j] *= norm;
    }
  }

  /** q' = Π·q, once per query. */
  @Override
  public void prepareQuery(float[] q, int qOff, int headDim, float[] dst, int dstOff) {
    System.arraycopy(q, qOff, dst, dstOff, headDim);
    Hadamard.rotate(dst, dstOff, headDim);
  }

  /** ρ·(q'·ĉ), the centroids looked up from the codes (no inverse rotation). */
  @Override
  protected float dotRow(
      MemorySegment block, long offset, int headDim, float[] q, int qOff, float[] work) {
    centroids(block, offset, headDim, work, 0);
    float dot = VectorKernels.dot(q, qOff, work, 0, headDim);
    return norm(block, offset, headDim) * (dot * correction(work, 0, headDim));
  }

  /**
   * Row by row as {@link #dotRow}, without its per-row calls: each vector of a row's codes is cut
   * from the packed bytes in registers ({@link CodeWords}), looked up in the codebook held in one
   * vector (a permute), and multiplied into the lane-wise products with the query and with itself
   * (the same fused multiply-adds per lane as the two dot products, lanes summed by the same tree),
   * so the same bits. Without the register path (other vector widths), each row's centroids are
   * looked up into {@code work} first.
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
    float[] table = codebook(headDim).centroidsView();
    if (array != null
        && CodeWords.LANES == 8
        && table.length == 16
        && CodeWords.applies(bits, headDim)
        && work.length >= 4 + count + CodeWords.LANES) {
      scoresInRegisters16(
          array,
          count,
          headDim,
          rowBytes(headDim),
          CodeWords.of(bits),
          books(headDim).low(),
          books(headDim).high(),
          normCorrection,
          prepared,
          pOff,
          scores,
          work);
      return;
    }
    if (array != null
        && CodeWords.applies(bits, headDim)
        && table.length <= CodeWords.LANES
        && work.length >= 4 + count + CodeWords.LANES) {
      scoresInRegisters(
          array,
          count,
          headDim,
          rowBytes(headDim),
          CodeWords.of(bits),
          books(headDim).low(),
          normCorrection,
          prepared,
          pOff,
          scores,
          work);
      return;
    }
    jdk.incubator.vector.VectorSpecies<Float> species = VectorKernels.FLOATS;
    int lanes = species.length();
    if (headDim % lanes != 0 || work.length < headDim + lanes) {
      super.scores(block, count, capacity, headDim, prepared, pOff, scores, work);
      return;
    }
    int rowBytes = rowBytes(headDim);
    for (int s = 0; s < count; s++) {
      long offset = (long) s * rowBytes;
      PackedCodes.lookup(block, offset, headDim, bits, table, work, 0);
      jdk.incubator.vector.FloatVector dot = jdk.incubator.vector.FloatVector.zero(species);
      jdk.incubator.vector.FloatVector squares = dot;
      for (int j = 0; j < headDim; j += lanes) {
        jdk.incubator.vector.FloatVector c =
            jdk.incubator.vector.FloatVector.fromArray(species, work, j);
        dot = jdk.incubator.vector.FloatVector.fromArray(species, prepared, pOff + j).fma(c, dot);
        squares = c.fma(c, squares);
      }
      float qc = AttentionKernels.sumLanes(dot);
      float inverse = 1f;
      if (normCorrection) {
        inverse = (float) (1.0 / Math.sqrt(AttentionKernels.sumLanes(squares) + 1e-16));
      }
      float norm =
          HalfFloats.fromF16(AsymmetricCodes.shortAt(block, array, offset + codeBytes(headDim)));
      scores[s] = norm * (qc * inverse);
    }
  }

  /** {@link #scores}' register path: one loop body, the codebook and code constants hoisted. */
  private static void scoresInRegisters(
      byte[] array,
      int count,
      int headDim,
      int rowBytes,
      CodeWords w,
      jdk.incubator.vector.IntVector book,
      boolean normCorrection,
      float[] prepared,
      int pOff,
      float[] scores,
      float[] sums) {
    jdk.incubator.vector.VectorSpecies<Float> species = CodeWords.FLOATS;
    jdk.incubator.vector.VectorSpecies<Integer> ints = CodeWords.INTS;
    int lanes = CodeWords.LANES;
    int codeBytes = PackedCodes.bytes(headDim, w.bits);
    int vectorBytes = w.vectorBytes;
    int highByte = w.highByte;
    int mask = w.mask;
    jdk.incubator.vector.IntVector shifts = w.shifts;
    jdk.incubator.vector.VectorMask<Integer> high = w.high;
    int s = 0;
    // two rows at a time: their four lane sums (dot, squares) in one tree (sumLanes4, the same
    // bits as sumLanes each)
    for (; s + 1 < count; s += 2) {
      int offset = s * rowBytes;
      jdk.incubator.vector.FloatVector dot0 = jdk.incubator.vector.FloatVector.zero(species);
      jdk.incubator.vector.FloatVector squares0 = dot0;
      jdk.incubator.vector.FloatVector dot1 = dot0;
      jdk.incubator.vector.FloatVector squares1 = dot0;
      for (int j = 0, at = offset; j < headDim; j += lanes, at += vectorBytes) {
        jdk.incubator.vector.FloatVector q =
            jdk.incubator.vector.FloatVector.fromArray(species, prepared, pOff + j);
        jdk.incubator.vector.FloatVector c0 =
            jdk.incubator.vector.IntVector.broadcast(ints, CodeWords.word(array, at))
                .blend(
                    jdk.incubator.vector.IntVector.broadcast(
                        ints, CodeWords.word(array, at + highByte)),
                    high)
                .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
                .and(mask)
                .selectFrom(book)
                .reinterpretAsFloats();
        int at1 = at + rowBytes;
        jdk.incubator.vector.FloatVector c1 =
            jdk.incubator.vector.IntVector.broadcast(ints, CodeWords.word(array, at1))
                .blend(
                    jdk.incubator.vector.IntVector.broadcast(
                        ints, CodeWords.word(array, at1 + highByte)),
                    high)
                .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
                .and(mask)
                .selectFrom(book)
                .reinterpretAsFloats();
        dot0 = q.fma(c0, dot0);
        squares0 = c0.fma(c0, squares0);
        dot1 = q.fma(c1, dot1);
        squares1 = c1.fma(c1, squares1);
      }
      AttentionKernels.sumLanes4(dot0, squares0, dot1, squares1, sums, 0, sums, 4 + count);
      scores[s] = sums[0];
      scores[s + 1] = sums[2];
      sums[4 + s] = sums[1];
      sums[5 + s] = sums[3];
    }
    finish(array, s, rowBytes, codeBytes, normCorrection, scores, sums, 4);
    for (; s < count; s++) {
      int offset = s * rowBytes;
      jdk.incubator.vector.FloatVector dot = jdk.incubator.vector.FloatVector.zero(species);
      jdk.incubator.vector.FloatVector squares = dot;
      for (int j = 0, at = offset; j < headDim; j += lanes, at += vectorBytes) {
        jdk.incubator.vector.IntVector codes =
            jdk.incubator.vector.IntVector.broadcast(ints, CodeWords.word(array, at))
                .blend(
                    jdk.incubator.vector.IntVector.broadcast(
                        ints, CodeWords.word(array, at + highByte)),
                    high)
                .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
                .and(mask);
        jdk.incubator.vector.FloatVector c = codes.selectFrom(book).reinterpretAsFloats();
        dot = jdk.incubator.vector.FloatVector.fromArray(species, prepared, pOff + j).fma(c, dot);
        squares = c.fma(c, squares);
      }
      float qc = AttentionKernels.sumLanes(dot);
      float inverse = 1f;
      if (normCorrection) {
        inverse = (float) (1.0 / Math.sqrt(AttentionKernels.sumLanes(squares) + 1e-16));
      }
      int n = offset + codeBytes;
      float norm = HalfFloats.fromF16((short) ((array[n] & 0xff) | array[n + 1] << 8));
      scores[s] = norm * (qc * inverse);
    }
  }

  /**
   * {@link #scoresInRegisters} for a codebook of 16 entries on 8 lanes (4-bit keys on AVX2): each
   * code looks up its low three bits in both halves of the codebook (two permutes) and keeps the
   * half its fourth bit names (a blend), the same centroid as a lookup in memory.
   */
  private static void scoresInRegisters16(
      byte[] array,
      int count,
      int headDim,
      int rowBytes,
      CodeWords w,
      jdk.incubator.vector.IntVector book,
      jdk.incubator.vector.IntVector bookHigh,
      boolean normCorrection,
      float[] prepared,
      int pOff,
      float[] scores,
      float[] sums) {
    jdk.incubator.vector.VectorSpecies<Float> species = CodeWords.FLOATS;
    jdk.incubator.vector.VectorSpecies<Integer> ints = CodeWords.INTS;
    int lanes = CodeWords.LANES;
    int codeBytes = PackedCodes.bytes(headDim, w.bits);
    int vectorBytes = w.vectorBytes;
    int highByte = w.highByte;
    int mask = w.mask;
    jdk.incubator.vector.IntVector shifts = w.shifts;
    jdk.incubator.vector.VectorMask<Integer> high = w.high;
    int s = 0;
    // two rows at a time: their four lane sums (dot, squares) in one tree (sumLanes4, the same
    // bits as sumLanes each)
    for (; s + 1 < count; s += 2) {
      int offset = s * rowBytes;
      jdk.incubator.vector.FloatVector dot0 = jdk.incubator.vector.FloatVector.zero(species);
      jdk.incubator.vector.FloatVector squares0 = dot0;
      jdk.incubator.vector.FloatVector dot1 = dot0;
      jdk.incubator.vector.FloatVector squares1 = dot0;
      for (int j = 0, at = offset; j < headDim; j += lanes, at += vectorBytes) {
        jdk.incubator.vector.FloatVector q =
            jdk.incubator.vector.FloatVector.fromArray(species, prepared, pOff + j);
        jdk.incubator.vector.IntVector i0 =
            jdk.incubator.vector.IntVector.broadcast(ints, CodeWords.word(array, at))
                .blend(
                    jdk.incubator.vector.IntVector.broadcast(
                        ints, CodeWords.word(array, at + highByte)),
                    high)
                .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
                .and(mask);
        jdk.incubator.vector.IntVector l0 = i0.and(7);
        jdk.incubator.vector.FloatVector c0 =
            l0.selectFrom(book)
                .blend(
                    l0.selectFrom(bookHigh), i0.compare(jdk.incubator.vector.VectorOperators.GE, 8))
                .reinterpretAsFloats();
        int at1 = at + rowBytes;
        jdk.incubator.vector.IntVector i1 =
            jdk.incubator.vector.IntVector.broadcast(ints, CodeWords.word(array, at1))
                .blend(
                    jdk.incubator.vector.IntVector.broadcast(
                        ints, CodeWords.word(array, at1 + highByte)),
                    high)
                .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
                .and(mask);
        jdk.incubator.vector.IntVector l1 = i1.and(7);
        jdk.incubator.vector.FloatVector c1 =
            l1.selectFrom(book)
                .blend(
                    l1.selectFrom(bookHigh), i1.compare(jdk.incubator.vector.VectorOperators.GE, 8))
                .reinterpretAsFloats();
        dot0 = q.fma(c0, dot0);
        squares0 = c0.fma(c0, squares0);
        dot1 = q.fma(c1, dot1);
        squares1 = c1.fma(c1, squares1);
      }
      AttentionKernels.sumLanes4(dot0, squares0, dot1, squares1, sums, 0, sums, 4 + count);
      scores[s] = sums[0];
      scores[s + 1] = sums[2];
      sums[4 + s] = sums[1];
      sums[5 + s] = sums[3];
    }
    finish(array, s, rowBytes, codeBytes, normCorrection, scores, sums, 4);
    for (; s < count; s++) {
      int offset = s * rowBytes;
      jdk.incubator.vector.FloatVector dot = jdk.incubator.vector.FloatVector.zero(species);
      jdk.incubator.vector.FloatVector squares = dot;
      for (int j = 0, at = offset; j < headDim; j += lanes, at += vectorBytes) {
        jdk.incubator.vector.IntVector codes =
            jdk.incubator.vector.IntVector.broadcast(ints, CodeWords.word(array, at))
                .blend(
                    jdk.incubator.vector.IntVector.broadcast(
                        ints, CodeWords.word(array, at + highByte)),
                    high)
                .lanewise(jdk.incubator.vector.VectorOperators.LSHR, shifts)
                .and(mask);
        jdk.incubator.vector.IntVector low = codes.and(7);
        jdk.incubator.vector.FloatVector c =
            low.selectFrom(book)
                .blend(
                    low.selectFrom(bookHigh),
                    codes.compare(jdk.incubator.vector.VectorOperators.GE, 8))
                .reinterpretAsFloats();
        dot = jdk.incubator.vector.FloatVector.fromArray(species, prepared, pOff + j).fma(c, dot);
        squares = c.fma(c, squares);
      }
      float qc = AttentionKernels.sumLanes(dot);
      float inverse = 1f;
      if (normCorrection) {
        inverse = (float) (1.0 / Math.sqrt(AttentionKernels.sumLanes(squares) + 1e-16));
      }
      int n = offset + codeBytes;
      float norm = HalfFloats.fromF16((short) ((array[n] & 0xff) | array[n + 1] << 8));
      scores[s] = norm * (qc * inverse);
    }
  }

  /** Doubles of the preferred shape: 4 lanes on AVX2, 8 on AVX-512 (natively, both). */
  private static final jdk.incubator.vector.VectorSpecies<Double> DOUBLES =
      jdk.incubator.vector.DoubleVector.SPECIES_PREFERRED;

  private static final ThreadLocal<double[]> DOUBLE_SCRATCH =
      ThreadLocal.withInitial(() -> new double[0]);

  /**
   * Rows {@code 0..pairs)}: {@code scores[s]} holds q'·ĉ and {@code squares[sqOff + s]} ‖ĉ‖²; each
   * becomes ρ·(q'·ĉ · 1/√(‖ĉ‖² + 1e-16)) (or ρ·q'·ĉ without norm correction), the double square
   * roots and divisions a vector of doubles at a time (IEEE operations, correctly rounded in every
   * lane: the same bits as the scalar ones). The widening and narrowing are scalar: an 8-float to
   * 8-double conversion needs 512-bit doubles, which AVX2 lacks (the Vector API ran them in Java).
   */
  private static void finish(
      byte[] array,
      int rows,
      int rowBytes,
      int codeBytes,
      boolean normCorrection,
      float[] scores,
      float[] squares,
      int sqOff) {
    int s = 0;
    if (normCorrection) {
      double[] d = DOUBLE_SCRATCH.get();
      if (d.length < rows) {
        d = new double[rows];
        DOUBLE_SCRATCH.set(d);
      }
      for (int i = 0; i < rows; i++) {
        d[i] = squares[sqOff + i] + 1e-16;
      }
      for (int lanes = DOUBLES.length(); s + lanes <= rows; s += lanes) {
        jdk.incubator.vector.DoubleVector.broadcast(DOUBLES, 1.0)
            .div(
                jdk.incubator.vector.DoubleVector.fromArray(DOUBLES, d, s)
                    .lanewise(jdk.incubator.vector.VectorOperators.SQRT))
            .intoArray(d, s);
      }
      for (; s < rows; s++) {
        d[s] = 1.0 / Math.sqrt(d[s]);
      }
      for (int i = 0; i < rows; i++) {
        squares[sqOff + i] = (float) d[i];
      }
    }
    for (s = 0; s < rows; s++) {
      int n = s * rowBytes + codeBytes;
      float norm = HalfFloats.fromF16((short) ((array[n] & 0xff) | array[n + 1] << 8));
      scores[s] = norm * (scores[s] * (normCorrection ? squares[sqOff + s] : 1f));
    }
  }

  /**
   * Each key's centroids, norm and correction are read once for all rows (a prefill tile, or the
   * query heads of a KV head), then every row scores it exactly as {@link #dotRow} does.
   */
  @Override
  public void scoresRows(
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
    if (rowCount < 2 || decoded.length < count * headDim || work.length < 2 * count) {
      super.scoresRows(
          block, count, capacity, headDim, prepared, pStride, rows, rowCount, out, outStride, work,
          decoded);
      return;
    }
    int rowBytes = rowBytes(headDim);
    for (int s = 0; s < count; s++) {
      long offset = (long) s * rowBytes;
      centroids(block, offset, headDim, decoded, s * headDim);
      work[2 * s] = norm(block, offset, headDim);
      work[2 * s + 1] = correction(decoded, s * headDim, headDim);
    }
    for (int i = 0; i < rowCount; i++) {
      int pOff = rows[i] * pStride;
      int o = i * outStride;
      for (int s = 0; s < count; s++) {
        float dot = VectorKernels.dot(prepared, pOff, decoded, s * headDim, headDim);
        out[o + s] = work[2 * s] * (dot * work[2 * s + 1]);
      }
    }
  }

  @Override
  public boolean equals(Object other) {
    return other instanceof TurboQuantKeyFormat o
        && o.bits == bits
        && o.normCorrection == normCorrection;
  }

  @Override
  public int hashCode() {
    return 31 * bits + (normCorrection ? 1 : 0);
  }
}
