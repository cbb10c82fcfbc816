package io.kvslim.kv.format;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * Lexico's sparse codes (Kim et al., "Lexico: Extreme KV Cache Compression via Sparse Coding over
 * Universal Dictionaries", arXiv:2412.08890; METHODS.md Q9 steps 3–4): each key or value is {@code
 * s} atoms of a dictionary of N ≤ 4096 unit-norm atoms, chosen by {@link Omp}, stored as a 12-bit
 * atom index and an fp8 e4m3 coefficient ({@link Fp8E4m3Format#fromFloat}) per atom.
 *
 * <p>Row layout: {@code s} entries of 20 bits, entry j at bit 20·j little-endian (index in the low
 * 12 bits, the coefficient's byte above): {@code ⌈20·s/8⌉} bytes per token. Unused entries (OMP
 * stopped early on a zero residual) have coefficient 0. The dictionary is a constant of the layer
 * ({@link #tableBytes}).
 *
 * <p>Fused score (METHODS.md Q9 step 4): {@link #prepareQuery} computes {@code T[a] = q·D[:, a]}
 * once per query; a key's score is {@code Σ_j c_j T[a_j]}. The attention loop sums values by atom
 * ({@link #accumulateCodes}: {@code S[a_j] += w c_j}, s additions per token) and multiplies by the
 * dictionary once per query row and head ({@link #addCodes}: {@code D·S}); {@link #accumulateBlock}
 * adds {@code (w c_j) D[:, a_j]} atom by atom. Rows are coded a chunk at a time by {@link
 * OmpEncoder} (OMP from the Gram matrix).
 */
public final class LexicoFormat extends RawQueryKeyFormat {
  private final float[] dict; // [atom][channel]
  private final int atoms;
  private final int sparsity;
  private final String tag;
  private final String origin;
  private final OmpEncoder encoder;

  /**
   * @param dict {@code atoms × d} floats, atom-major, each atom of unit norm
   * @throws IllegalArgumentException when there are more than 4096 atoms or none, or no sparsity
   */
  public LexicoFormat(float[] dict, int atoms, int sparsity, String tag) {
    this(dict, atoms, sparsity, tag, null);
  }

  /**
   * @param origin where the dictionary comes from (a profile and its model), named when it does not
   *     fit the head; or null
   */
  public LexicoFormat(float[] dict, int atoms, int sparsity, String tag, String origin) {
    if (atoms < 1 || atoms > 4096 || dict.length % atoms != 0 || sparsity < 1) {
      throw new IllegalArgumentException(
          "a lexico dictionary needs 1..4096 atoms of equal length and a sparsity >= 1");
    }
    this.dict = dict;
    this.atoms = atoms;
    this.sparsity = sparsity;
    this.tag = tag;
    this.origin = origin;
    this.encoder = new OmpEncoder(dict, atoms, dict.length / atoms);
  }

  public int sparsity() {
    return sparsity;
  }

  /** Bytes of the dictionary (f32), a constant of the layer. */
  @Override
  public long tableBytes() {
    return 4L * dict.length;
  }

  private int dim() {
    return dict.length / atoms;
  }

  @Override
  public String name() {
    return "lexico_s" + sparsity + "_n" + atoms + "_" + tag;
  }

  @Override
  public int rowBytes(int headDim) {
    return (20 * sparsity + 7) / 8;
  }

  @Override
  protected int rowScaleBytes(int headDim) {
    return 0;
  }

  @Override
  public void checkHeadDim(int headDim) {
    if (headDim != dim()) {
      throw new IllegalArgumentException(
          "format "
              + name()
              + " has atoms of "
              + dim()
              + " channels"
              + (origin == null ? "" : " (" + origin + ")")
              + ", the head has "
              + headDim);
    }
  }

  private static int entry(MemorySegment block, long offset, int j) {
    long bit = 20L * j;
    long at = offset + bit / 8;
    int v =
        (block.get(ValueLayout.JAVA_BYTE, at) & 0xFF)
            | (block.get(ValueLayout.JAVA_BYTE, at + 1) & 0xFF) << 8
            | (block.get(ValueLayout.JAVA_BYTE, at + 2) & 0xFF) << 16;
    return (v >>> (bit % 8)) & 0xFFFFF;
  }

  @Override
  protected void encodeRow(float[] src, int srcOff, MemorySegment block, long offset, int headDim) {
    int[] index = new int[sparsity];
    float[] coef = new float[sparsity];
    int[] counts = new int[1];
    encoder.encode(src, srcOff, headDim, 1, sparsity, index, coef, counts);
    writeRow(index, coef, 0, counts[0], block, offset, rowBytes(headDim));
  }

  /**
   * Codes the {@code count} rows at once ({@link OmpEncoder}: one projection on the dictionary for
   * the chunk, then OMP from the Gram matrix); each row's codes are those it gets on its own.
   */
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
    if (count <= 0) {
      return;
    }
    int[] index = new int[count * sparsity];
    float[] coef = new float[count * sparsity];
    int[] counts = new int[count];
    encoder.encode(src, srcOff, srcStride, count, sparsity, index, coef, counts);
    int rowBytes = rowBytes(headDim);
    for (int t = 0; t < count; t++) {
      writeRow(
          index, coef, t * sparsity, counts[t], block, (long) (firstSlot + t) * rowBytes, rowBytes);
    }
  }

  /**
   * Packs {@code k} atoms and coefficients from {@code [from..)} into the row at {@code offset}.
   */
  private void writeRow(
      int[] index, float[] coef, int from, int k, MemorySegment block, long offset, int bytes) {
    byte[] row = new byte[bytes + 2];
    for (int j = 0; j < sparsity; j++) {
      int v = j < k ? index[from + j] | (Fp8E4m3Format.fromFloat(coef[from + j]) & 0xFF) << 12 : 0;
      long bit = 20L * j;
      int at = (int) (bit / 8);
      int word = v << (bit % 8);
      row[at] |= (byte) word;
      row[at + 1] |= (byte) (word >>> 8);
      row[at + 2] |= (byte) (word >>> 16);
    }
    MemorySegment.copy(row, 0, block, ValueLayout.JAVA_BYTE, offset, bytes);
  }

  /** Atom of entry {@code j} and its fp8 coefficient, for tests. */
  public int atom(MemorySegment block, int slot, int headDim, int j) {
    return entry(block, (long) slot * rowBytes(headDim), j) & 0xFFF;
  }

  public float coefficient(MemorySegment block, int slot, int headDim, int j) {
    return Fp8E4m3Format.toFloat((byte) (entry(block, (long) slot * rowBytes(headDim), j) >>> 12));
  }

  @Override
  protected void decodeRow(MemorySegment block, long offset, int headDim, float[] dst, int dstOff) {
    java.util.Arrays.fill(dst, dstOff, dstOff + headDim, 0f);
    accumulateRow(block, offset, headDim, 1f, dst, dstOff, null);
  }

  /**
   * {@code T[a] = q·D[:, a]} for every atom: when the atoms fill whole pairs of vectors, a chain of
   * fused multiply-adds per atom over the transposed dictionary ({@link OmpEncoder#project}).
   */
  @Override
  public int preparedQueryLength(int headDim) {
    return atoms;
  }

  @Override
  public void prepareQuery(float[] q, int qOff, int headDim, float[] dst, int dstOff) {
    if (encoder.padded() == atoms) {
      // the table for all atoms at once, lanes over atoms (no horizontal sums): OmpEncoder#project
      OmpEncoder.project(encoder.transposed(), atoms, headDim, q, qOff, headDim, 1, dst, dstOff, 0);
      return;
    }
    for (int a = 0; a < atoms; a++) {
      dst[dstOff + a] =
          io.kvslim.kv.attention.VectorKernels.dot(q, qOff, dict, a * headDim, headDim);
    }
  }

  /** {@link #entry} from the block's array. */
  private static int entry(byte[] array, int offset, int j) {
    int bit = 20 * j;
    int at = offset + (bit >>> 3);
    int v = (array[at] & 0xFF) | (array[at + 1] & 0xFF) << 8 | (array[at + 2] & 0xFF) << 16;
    return (v >>> (bit & 7)) & 0xFFFFF;
  }

  private static final java.lang.invoke.VarHandle INT_LE =
      java.lang.invoke.MethodHandles.byteArrayViewVarHandle(
          int[].class, java.nio.ByteOrder.LITTLE_ENDIAN);

  /**
   * {@link #entry(byte[], int, int)} of a row of {@code rowBytes} bytes by one 4-byte load inside
   * the row: at the entry's first byte, or, for an entry within the row's last 3 bytes, at the
   * row's last 4 bytes (the shift grown by 8 per byte it moved back). Rows of 3 bytes ({@code s =
   * 1}) are read byte by byte.
   */
  private static int entry(byte[] array, int offset, int j, int rowBytes) {
    if (rowBytes < 4) {
      return entry(array, offset, j);
    }
    int bit = 20 * j;
    int at = bit >>> 3;
    int shift = bit & 7;
    if (at > rowBytes - 4) {
      shift += 8 * (at - (rowBytes - 4));
      at = rowBytes - 4;
    }
    return ((int) INT_LE.get(array, offset + at) >>> shift) & 0xFFFFF;
  }

  /**
   * {@link #dotRow} for each slot without its per-row calls, on the block's array, four slots at a
   * time so that their sequential sums run side by side (the same terms in the same order: the same
   * bits).
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
    int rowBytes = rowBytes(headDim);
    byte[] array = rowsOf(block, count * rowBytes, SCRATCH.get());
    int s = 0;
    for (; s + 3 < count; s += 4) {
      int o0 = s * rowBytes;
      float s0 = 0f;
      float s1 = 0f;
      float s2 = 0f;
      float s3 = 0f;
      for (int j = 0; j < sparsity; j++) {
        int e0 = entry(array, o0, j, rowBytes);
        int e1 = entry(array, o0 + rowBytes, j, rowBytes);
        int e2 = entry(array, o0 + 2 * rowBytes, j, rowBytes);
        int e3 = entry(array, o0 + 3 * rowBytes, j, rowBytes);
        float c0 = Fp8E4m3Format.toFloat((byte) (e0 >>> 12));
        float c1 = Fp8E4m3Format.toFloat((byte) (e1 >>> 12));
        float c2 = Fp8E4m3Format.toFloat((byte) (e2 >>> 12));
        float c3 = Fp8E4m3Format.toFloat((byte) (e3 >>> 12));
        if (c0 != 0f) {
          s0 += c0 * prepared[pOff + (e0 & 0xFFF)];
        }
        if (c1 != 0f) {
          s1 += c1 * prepared[pOff + (e1 & 0xFFF)];
        }
        if (c2 != 0f) {
          s2 += c2 * prepared[pOff + (e2 & 0xFFF)];
        }
        if (c3 != 0f) {
          s3 += c3 * prepared[pOff + (e3 & 0xFFF)];
        }
      }
      scores[s] = s0;
      scores[s + 1] = s1;
      scores[s + 2] = s2;
      scores[s + 3] = s3;
    }
    for (; s < count; s++) {
      float sum = 0f;
      for (int j = 0; j < sparsity; j++) {
        int e = entry(array, s * rowBytes, j, rowBytes);
        float c = Fp8E4m3Format.toFloat((byte) (e >>> 12));
        if (c != 0f) {
          sum += c * prepared[pOff + (e & 0xFFF)];
        }
      }
      scores[s] = sum;
    }
  }

  private static final VectorSpecies<Float> FLOATS = io.kvslim.kv.attention.VectorKernels.FLOATS;
  private static final int LANES = FLOATS.length();

  /** Per-thread buffers of the block kernels (a block's rows off the heap, its decoded atoms). */
  private static final class Scratch {
    byte[] rows = new byte[0];
    int[] from = new int[0];
    float[] wc = new float[0];
  }

  private static final ThreadLocal<Scratch> SCRATCH = ThreadLocal.withInitial(Scratch::new);

  /**
   * The block's heap array, or (a block off the heap) its first {@code bytes} bytes copied into the
   * thread's scratch: the kernels then read an array either way, with the same arithmetic.
   */
  private static byte[] rowsOf(MemorySegment block, int bytes, Scratch scratch) {
    byte[] array = io.kvslim.kv.attention.VectorKernels.array(block);
    if (array != null) {
      return array;
    }
    if (scratch.rows.length < bytes) {
      scratch.rows = new byte[bytes];
    }
    MemorySegment.copy(block, ValueLayout.JAVA_BYTE, 0, scratch.rows, 0, bytes);
    return scratch.rows;
  }

  /**
   * {@link #accumulateRow} for the slots with a nonzero weight, in slot order: the block's atoms
   * decoded once into (dictionary offset, {@code w·c}) pairs, then each atom added as {@code acc +
   * (w·c)·D[:, a]} lane by lane, four vectors of the head at a time held in registers over the
   * whole block (the scalar loop's operations in its order per channel: the same bits).
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
    Scratch scratch = SCRATCH.get();
    int rowBytes = rowBytes(headDim);
    byte[] array = rowsOf(block, count * rowBytes, scratch);
    if (scratch.from.length < count * sparsity) {
      scratch.from = new int[count * sparsity];
      scratch.wc = new float[count * sparsity];
    }
    int[] from = scratch.from;
    float[] wc = scratch.wc;
    int n = 0;
    for (int s = 0; s < count; s++) {
      float weight = weights[wOff + s];
      if (weight == 0f) {
        continue;
      }
      for (int j = 0; j < sparsity; j++) {
        int e = entry(array, s * rowBytes, j, rowBytes);
        float c = Fp8E4m3Format.toFloat((byte) (e >>> 12));
        if (c != 0f) {
          from[n] = (e & 0xFFF) * headDim;
          wc[n] = weight * c;
          n++;
        }
      }
    }
    addAtoms(dict, from, wc, n, headDim, acc, accOff);
  }

  /** One float per atom: the weighted sum of a row's values by atom ({@link #accumulateCodes}). */
  @Override
  public int codeSumLength(int headDim) {
    return atoms;
  }

  /**
   * {@code codeSum[cOff + a] += w·c} for each atom {@code a} of each slot with a nonzero weight, in
   * slot order: 8 additions per token instead of {@link #accumulateBlock}'s {@code 8·d}.
   */
  @Override
  public void accumulateCodes(
      MemorySegment block,
      int count,
      int capacity,
      int headDim,
      float[] weights,
      int wOff,
      float[] codeSum,
      int cOff) {
    int rowBytes = rowBytes(headDim);
    byte[] array = rowsOf(block, count * rowBytes, SCRATCH.get());
    for (int s = 0; s < count; s++) {
      float weight = weights[wOff + s];
      if (weight == 0f) {
        continue;
      }
      int o = s * rowBytes;
      for (int j = 0; j < sparsity; j++) {
        int e = entry(array, o, j, rowBytes);
        float c = Fp8E4m3Format.toFloat((byte) (e >>> 12));
        if (c != 0f) {
          codeSum[cOff + (e & 0xFFF)] += weight * c;
        }
      }
    }
  }

  /** {@code acc += D·codeSum}: the atoms with a nonzero sum, in atom order ({@link #addAtoms}). */
  @Override
  public void addCodes(float[] codeSum, int cOff, int headDim, float[] acc, int accOff) {
    Scratch scratch = SCRATCH.get();
    if (scratch.from.length < atoms) {
      scratch.from = new int[atoms];
      scratch.wc = new float[atoms];
    }
    int[] from = scratch.from;
    float[] wc = scratch.wc;
    int n = 0;
    for (int a = 0; a < atoms; a++) {
      float w = codeSum[cOff + a];
      if (w != 0f) {
        from[n] = a * headDim;
        wc[n] = w;
        n++;
      }
    }
    addAtoms(dict, from, wc, n, headDim, acc, accOff);
  }

  /**
   * {@code acc[accOff + i] += wc[t] · dict[from[t] + i]} for {@code t < n} in order, per channel
   * {@code i < headDim}: four vectors at a time, then one, then scalar channels.
   */
  static void addAtoms(
      float[] dict, int[] from, float[] wc, int n, int headDim, float[] acc, int accOff) {
    int i = 0;
    for (; i + 4 * LANES <= headDim; i += 4 * LANES) {
      FloatVector a0 = FloatVector.fromArray(FLOATS, acc, accOff + i);
      FloatVector a1 = FloatVector.fromArray(FLOATS, acc, accOff + i + LANES);
      FloatVector a2 = FloatVector.fromArray(FLOATS, acc, accOff + i + 2 * LANES);
      FloatVector a3 = FloatVector.fromArray(FLOATS, acc, accOff + i + 3 * LANES);
      for (int t = 0; t < n; t++) {
        FloatVector w = FloatVector.broadcast(FLOATS, wc[t]);
        int f = from[t] + i;
        a0 = a0.add(w.mul(FloatVector.fromArray(FLOATS, dict, f)));
        a1 = a1.add(w.mul(FloatVector.fromArray(FLOATS, dict, f + LANES)));
        a2 = a2.add(w.mul(FloatVector.fromArray(FLOATS, dict, f + 2 * LANES)));
        a3 = a3.add(w.mul(FloatVector.fromArray(FLOATS, dict, f + 3 * LANES)));
      }
      a0.intoArray(acc, accOff + i);
      a1.intoArray(acc, accOff + i + LANES);
      a2.intoArray(acc, accOff + i + 2 * LANES);
      a3.intoArray(acc, accOff + i + 3 * LANES);
    }
    for (; i + LANES <= headDim; i += LANES) {
      FloatVector a0 = FloatVector.fromArray(FLOATS, acc, accOff + i);
      for (int t = 0; t < n; t++) {
        a0 =
            a0.add(
                FloatVector.broadcast(FLOATS, wc[t])
                    .mul(FloatVector.fromArray(FLOATS, dict, from[t] + i)));
      }
      a0.intoArray(acc, accOff + i);
    }
    for (; i < headDim; i++) {
      float a = acc[accOff + i];
      for (int t = 0; t < n; t++) {
        a += wc[t] * dict[from[t] + i];
      }
      acc[accOff + i] = a;
    }
  }

  @Override
  protected float dotRow(
      MemorySegment block, long offset, int headDim, float[] q, int qOff, float[] work) {
    float sum = 0f;
    for (int j = 0; j < sparsity; j++) {
      int e = entry(block, offset, j);
      float c = Fp8E4m3Format.toFloat((byte) (e >>> 12));
      if (c != 0f) {
        sum += c * q[qOff + (e & 0xFFF)];
      }
    }
    return sum;
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
    for (int j = 0; j < sparsity; j++) {
      int e = entry(block, offset, j);
      float c = Fp8E4m3Format.toFloat((byte) (e >>> 12));
      if (c == 0f) {
        continue;
      }
      float wc = weight * c;
      int from = (e & 0xFFF) * headDim;
      for (int i = 0; i < headDim; i++) {
        acc[accOff + i] += wc * dict[from + i];
      }
    }
  }

  @Override
  public boolean equals(Object other) {
    return other instanceof LexicoFormat o && o.dict == dict && o.sparsity == sparsity;
  }

  @Override
  public int hashCode() {
    return System.identityHashCode(dict) * 31 + sparsity;
  }
}
