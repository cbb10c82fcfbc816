package io.kvslim.kv.attention;

import io.kvslim.kv.format.F32Format;
import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorShuffle;
import jdk.incubator.vector.VectorSpecies;

/**
 * The float arithmetic of attention that must give the same bits wherever it runs: the F32 score,
 * the softmax exponentials and sum, and the weighted sum of values. {@code DenseLayerKv} and the
 * paged cache both use these, so a paged F32 cache equals the dense one bit for bit, and a row
 * computed on any thread of the pool equals the same row computed serially.
 *
 * <p>Every result is a fixed sequence of IEEE operations: lane-wise multiply, add and fused
 * multiply-add, then a fixed pairwise tree over the lanes (never {@code reduceLanes}, whose order
 * the Vector API leaves open), then the tail elements in index order. The JIT-compiled and the
 * interpreted Vector API compute the same bits for these operations, so the results do not depend
 * on compilation state either.
 *
 * <p>Written-out SIMD kernels (Vector API): longer than ~500 lines on purpose.
 */
public final class AttentionKernels {
  private AttentionKernels() {}

  private static final VectorSpecies<Float> FLOATS = VectorKernels.FLOATS;
  private static final VectorSpecies<Byte> BYTES =
      VectorSpecies.of(byte.class, VectorShape.forBitSize(FLOATS.vectorBitSize()));
  private static final VectorShuffle<Float>[] HALVES = halves();

  @SuppressWarnings("unchecked")
  private static VectorShuffle<Float>[] halves() {
    int lanes = FLOATS.length();
    int steps = Integer.numberOfTrailingZeros(lanes);
    VectorShuffle<Float>[] out = new VectorShuffle[steps];
    for (int i = 0; i < steps; i++) {
      int step = lanes >>> (i + 1);
      out[i] = VectorShuffle.fromOp(FLOATS, lane -> (lane + step) & (lanes - 1));
    }
    return out;
  }

  /**
   * {@link #sumLanes(FloatVector)} of a vector stored at {@code a[off..off + lanes)}, in scalar
   * code: the same additions in the same tree, so the same bits (the array is overwritten). Used
   * where a kernel would otherwise pass a vector to a method C2 may not inline (the vector is then
   * boxed).
   */
  public static float sumLanes(float[] a, int off) {
    for (int h = FLOATS.length() >> 1; h >= 1; h >>= 1) {
      for (int j = 0; j < h; j++) {
        a[off + j] = a[off + j] + a[off + j + h];
      }
    }
    return a[off];
  }

  /** Rotations by 8, 4, 2 and 1 lanes (where the species has more lanes than the step). */
  public static final VectorShuffle<Float> ROTATE8 = rotation(8);

  public static final VectorShuffle<Float> ROTATE4 = rotation(4);
  public static final VectorShuffle<Float> ROTATE2 = rotation(2);
  public static final VectorShuffle<Float> ROTATE1 = rotation(1);

  private static VectorShuffle<Float> rotation(int step) {
    int lanes = FLOATS.length();
    return VectorShuffle.fromOp(FLOATS, lane -> (lane + step) & (lanes - 1));
  }

  /**
   * Sum of the lanes as a fixed pairwise tree: lanes {@code i} and {@code i + L/2}, and so on. Up
   * to 16 lanes the steps are unrolled over constant shuffles, which C2 compiles to permutes: a
   * shuffle read from an array is not a constant, and its rearrange ran on the Vector API's Java
   * fallback (a JFR allocation profile of the server showed it in the F32 key scores).
   */
  public static float sumLanes(FloatVector v) {
    int lanes = FLOATS.length();
    if (lanes > 16) {
      for (VectorShuffle<Float> s : HALVES) {
        v = v.add(v.rearrange(s));
      }
      return v.lane(0);
    }
    if (lanes == 16) {
      v = v.add(v.rearrange(ROTATE8));
    }
    if (lanes >= 8) {
      v = v.add(v.rearrange(ROTATE4));
    }
    if (lanes >= 4) {
      v = v.add(v.rearrange(ROTATE2));
    }
    if (lanes >= 2) {
      v = v.add(v.rearrange(ROTATE1));
    }
    return v.lane(0);
  }

  private static final VectorMask<Float>[] BITS = bitMasks();
  private static final VectorShuffle<Float>[] FLIPS = flips();

  @SuppressWarnings("unchecked")
  private static VectorMask<Float>[] bitMasks() {
    int lanes = FLOATS.length();
    VectorMask<Float>[] out = new VectorMask[lanes];
    for (int bit = 1; bit < lanes; bit <<= 1) {
      boolean[] m = new boolean[lanes];
      for (int i = 0; i < lanes; i++) {
        m[i] = (i & bit) != 0;
      }
      out[bit] = VectorMask.fromArray(FLOATS, m, 0);
    }
    return out;
  }

  @SuppressWarnings("unchecked")
  private static VectorShuffle<Float>[] flips() {
    int lanes = FLOATS.length();
    VectorShuffle<Float>[] out = new VectorShuffle[lanes];
    for (int bit = 1; bit < lanes; bit <<= 1) {
      int b = bit;
      out[bit] = VectorShuffle.fromOp(FLOATS, i -> (i ^ b) & (lanes - 1));
    }
    return out;
  }

  /**
   * Lanes {@code i} of {@code a} and {@code i ^ bit} of {@code b} combined pairwise (see below).
   */
  private static FloatVector combine(FloatVector a, FloatVector b, int bit) {
    // masks and shuffles from static final fields: one read from an array element is not a
    // constant to C2, which may then run blend and rearrange out of line on boxed vectors
    VectorMask<Float> m = bit == 8 ? BIT8 : bit == 4 ? BIT4 : BIT2;
    return a.blend(b, m).add(b.blend(a, m).rearrange(bit == 8 ? FLIP8 : bit == 4 ? FLIP4 : FLIP2));
  }

  private static final VectorMask<Float> BIT8 = BITS.length > 8 ? BITS[8] : null;
  private static final VectorMask<Float> BIT4 = BITS.length > 4 ? BITS[4] : null;
  private static final VectorMask<Float> BIT2 = BITS.length > 2 ? BITS[2] : null;
  private static final VectorShuffle<Float> FLIP8 = FLIPS.length > 8 ? FLIPS[8] : null;
  private static final VectorShuffle<Float> FLIP4 = FLIPS.length > 4 ? FLIPS[4] : null;
  private static final VectorShuffle<Float> FLIP2 = FLIPS.length > 2 ? FLIPS[2] : null;
  private static final VectorShuffle<Float> FLIP1 = FLIPS.length > 1 ? FLIPS[1] : null;

  /**
   * {@code out[o + i] = sumLanes(v_i)} for four vectors, bit for bit: the first two levels of the
   * tree combine two vectors into one (lanes without the level's bit keep the first vector's
   * partial sums, the others the second's), the last levels run within one vector, so every lane
   * adds exactly the operands {@link #sumLanes} adds for its own vector (addition commutes
   * exactly). About a third of the operations of four separate sums. With 8 lanes (AVX2) the same
   * with one level less (the first two levels at bits 4 and 2); with other lane counts each vector
   * is summed alone. {@code scratch[sOff..+lanes)} is overwritten.
   */
  public static void sumLanes4(
      FloatVector v0,
      FloatVector v1,
      FloatVector v2,
      FloatVector v3,
      float[] out,
      int o,
      float[] scratch,
      int sOff) {
    if (FLOATS.length() == 8) {
      FloatVector r = combine(combine(v0, v1, 4), combine(v2, v3, 4), 2);
      r = r.add(r.rearrange(FLIP1));
      out[o] = r.lane(0);
      out[o + 1] = r.lane(4);
      out[o + 2] = r.lane(2);
      out[o + 3] = r.lane(6);
      return;
    }
    if (FLOATS.length() != 16) {
      out[o] = sumLanes(v0);
      out[o + 1] = sumLanes(v1);
      out[o + 2] = sumLanes(v2);
      out[o + 3] = sumLanes(v3);
      return;
    }
    FloatVector r = combine(combine(v0, v1, 8), combine(v2, v3, 8), 4);
    r = r.add(r.rearrange(FLIP2));
    r = r.add(r.rearrange(FLIP1));
    out[o] = r.lane(0);
    out[o + 1] = r.lane(8);
    out[o + 2] = r.lane(4);
    out[o + 3] = r.lane(12);
  }

  /** {@code a[aOff..+n) · b[bOff..+n)} in the fixed order described above. */
  public static float dot(float[] a, int aOff, float[] b, int bOff, int n) {
    FloatVector sum = FloatVector.zero(FLOATS);
    int j = 0;
    for (int upper = FLOATS.loopBound(n); j < upper; j += FLOATS.length()) {
      sum =
          FloatVector.fromArray(FLOATS, a, aOff + j)
              .fma(FloatVector.fromArray(FLOATS, b, bOff + j), sum);
    }
    float result = sumLanes(sum);
    for (; j < n; j++) {
      result = Math.fma(a[aOff + j], b[bOff + j], result);
    }
    return result;
  }

  /**
   * As {@link #dot(float[], int, float[], int, int)} with {@code b} little-endian f32 at {@code
   * offset}.
   */
  public static float dot(float[] a, int aOff, MemorySegment b, long offset, int n) {
    FloatVector sum = FloatVector.zero(FLOATS);
    int j = 0;
    for (int upper = FLOATS.loopBound(n); j < upper; j += FLOATS.length()) {
      sum =
          FloatVector.fromArray(FLOATS, a, aOff + j)
              .fma(
                  FloatVector.fromMemorySegment(FLOATS, b, offset + 4L * j, VectorKernels.LE), sum);
    }
    float result = sumLanes(sum);
    for (; j < n; j++) {
      result = Math.fma(a[aOff + j], b.get(F32Format.FLOAT_LE, offset + 4L * j), result);
    }
    return result;
  }

  /**
   * {@code scores[sOff + s] = dot(a[aOff..+n), row s)} for the {@code count} little-endian f32 rows
   * at {@code offset + s·rowBytes}: each score bit for bit {@link #dot(float[], int, MemorySegment,
   * long, int)}, four rows at a time so their independent chains overlap. {@code scratch} holds at
   * least a vector's lanes of floats (overwritten).
   */
  public static void dotRows(
      float[] a,
      int aOff,
      MemorySegment rows,
      long offset,
      long rowBytes,
      int count,
      int n,
      float[] scores,
      int sOff,
      float[] scratch) {
    byte[] array = VectorKernels.array(rows);
    if (array != null) {
      dotRows(a, aOff, array, (int) offset, (int) rowBytes, count, n, scores, sOff, scratch);
      return;
    }
    int upper = FLOATS.loopBound(n);
    int s = 0;
    for (; s + 3 < count; s += 4) {
      long r0 = offset + s * rowBytes;
      long r1 = r0 + rowBytes;
      long r2 = r1 + rowBytes;
      long r3 = r2 + rowBytes;
      FloatVector sum0 = FloatVector.zero(FLOATS);
      FloatVector sum1 = sum0;
      FloatVector sum2 = sum0;
      FloatVector sum3 = sum0;
      for (int j = 0; j < upper; j += FLOATS.length()) {
        FloatVector q = FloatVector.fromArray(FLOATS, a, aOff + j);
        long at = 4L * j;
        sum0 = q.fma(FloatVector.fromMemorySegment(FLOATS, rows, r0 + at, VectorKernels.LE), sum0);
        sum1 = q.fma(FloatVector.fromMemorySegment(FLOATS, rows, r1 + at, VectorKernels.LE), sum1);
        sum2 = q.fma(FloatVector.fromMemorySegment(FLOATS, rows, r2 + at, VectorKernels.LE), sum2);
        sum3 = q.fma(FloatVector.fromMemorySegment(FLOATS, rows, r3 + at, VectorKernels.LE), sum3);
      }
      float d0 = sumLanes(sum0);
      float d1 = sumLanes(sum1);
      float d2 = sumLanes(sum2);
      float d3 = sumLanes(sum3);
      for (int j = upper; j < n; j++) {
        long at = 4L * j;
        d0 = Math.fma(a[aOff + j], rows.get(F32Format.FLOAT_LE, r0 + at), d0);
        d1 = Math.fma(a[aOff + j], rows.get(F32Format.FLOAT_LE, r1 + at), d1);
        d2 = Math.fma(a[aOff + j], rows.get(F32Format.FLOAT_LE, r2 + at), d2);
        d3 = Math.fma(a[aOff + j], rows.get(F32Format.FLOAT_LE, r3 + at), d3);
      }
      scores[sOff + s] = d0;
      scores[sOff + s + 1] = d1;
      scores[sOff + s + 2] = d2;
      scores[sOff + s + 3] = d3;
    }
    for (; s < count; s++) {
      scores[sOff + s] = dot(a, aOff, rows, offset + s * rowBytes, n);
    }
  }

  /**
   * {@code acc[accOff..+n) += weights[wOff + s] · row s} for the {@code count} little-endian f32
   * rows at {@code offset + s·rowBytes}, rows in order, zero weights skipped: bit for bit the same
   * as {@link #addWeighted(float, MemorySegment, long, float[], int, int)} row after row, with the
   * sum kept in registers across the rows.
   */
  public static void addWeightedRows(
      float[] weights,
      int wOff,
      MemorySegment rows,
      long offset,
      long rowBytes,
      int count,
      float[] acc,
      int accOff,
      int n) {
    byte[] array = VectorKernels.array(rows);
    if (array != null) {
      addWeightedRows(weights, wOff, array, (int) offset, (int) rowBytes, count, acc, accOff, n);
      return;
    }
    int j = 0;
    for (int upper = FLOATS.loopBound(n); j < upper; j += FLOATS.length()) {
      FloatVector sum = FloatVector.fromArray(FLOATS, acc, accOff + j);
      long at = offset + 4L * j;
      for (int s = 0; s < count; s++, at += rowBytes) {
        float w = weights[wOff + s];
        if (w != 0f) {
          FloatVector x = FloatVector.fromMemorySegment(FLOATS, rows, at, VectorKernels.LE);
          sum = x.fma(FloatVector.broadcast(FLOATS, w), sum);
        }
      }
      sum.intoArray(acc, accOff + j);
    }
    for (; j < n; j++) {
      float sum = acc[accOff + j];
      for (int s = 0; s < count; s++) {
        float w = weights[wOff + s];
        if (w != 0f) {
          sum = Math.fma(rows.get(F32Format.FLOAT_LE, offset + s * rowBytes + 4L * j), w, sum);
        }
      }
      acc[accOff + j] = sum;
    }
  }

  /** Floats {@code [at, at + lanes)} of a little-endian byte array, as one vector load. */
  private static FloatVector floats(byte[] rows, int at) {
    return ByteVector.fromArray(BYTES, rows, at).reinterpretAsFloats();
  }

  private static float floatAt(byte[] rows, int at) {
    return Float.intBitsToFloat(
        (rows[at] & 0xff)
            | (rows[at + 1] & 0xff) << 8
            | (rows[at + 2] & 0xff) << 16
            | (rows[at + 3] & 0xff) << 24);
  }

  /** {@link #dotRows} over the block's byte array (same operations, array loads). */
  private static void dotRows(
      float[] a,
      int aOff,
      byte[] rows,
      int offset,
      int rowBytes,
      int count,
      int n,
      float[] scores,
      int sOff,
      float[] scratch) {
    int upper = FLOATS.loopBound(n);
    int s = 0;
    for (; s + 3 < count; s += 4) {
      int r0 = offset + s * rowBytes;
      int r1 = r0 + rowBytes;
      int r2 = r1 + rowBytes;
      int r3 = r2 + rowBytes;
      FloatVector sum0 = FloatVector.zero(FLOATS);
      FloatVector sum1 = sum0;
      FloatVector sum2 = sum0;
      FloatVector sum3 = sum0;
      for (int j = 0; j < upper; j += FLOATS.length()) {
        FloatVector q = FloatVector.fromArray(FLOATS, a, aOff + j);
        int at = 4 * j;
        sum0 = q.fma(floats(rows, r0 + at), sum0);
        sum1 = q.fma(floats(rows, r1 + at), sum1);
        sum2 = q.fma(floats(rows, r2 + at), sum2);
        sum3 = q.fma(floats(rows, r3 + at), sum3);
      }
      // the four lane trees at once (sumLanes4: the same additions, a third of the shuffles)
      sumLanes4(sum0, sum1, sum2, sum3, scores, sOff + s, scratch, 0);
      for (int j = upper; j < n; j++) {
        int at = 4 * j;
        float qj = a[aOff + j];
        scores[sOff + s] = Math.fma(qj, floatAt(rows, r0 + at), scores[sOff + s]);
        scores[sOff + s + 1] = Math.fma(qj, floatAt(rows, r1 + at), scores[sOff + s + 1]);
        scores[sOff + s + 2] = Math.fma(qj, floatAt(rows, r2 + at), scores[sOff + s + 2]);
        scores[sOff + s + 3] = Math.fma(qj, floatAt(rows, r3 + at), scores[sOff + s + 3]);
      }
    }
    for (; s < count; s++) {
      int r = offset + s * rowBytes;
      FloatVector sum = FloatVector.zero(FLOATS);
      for (int j = 0; j < upper; j += FLOATS.length()) {
        sum = FloatVector.fromArray(FLOATS, a, aOff + j).fma(floats(rows, r + 4 * j), sum);
      }
      float d = sumLanes(sum);
      for (int j = upper; j < n; j++) {
        d = Math.fma(a[aOff + j], floatAt(rows, r + 4 * j), d);
      }
      scores[sOff + s] = d;
    }
  }

  /** {@link #addWeightedRows} over the block's byte array (same operations, array loads). */
  private static void addWeightedRows(
      float[] weights,
      int wOff,
      byte[] rows,
      int offset,
      int rowBytes,
      int count,
      float[] acc,
      int accOff,
      int n) {
    int lanes = FLOATS.length();
    int j = 0;
    // four vectors of channels at a time: four independent chains per slot (each lane's chain is
    // the same fused multiply-adds in slot order as one vector alone, so the same bits)
    for (; j + 4 * lanes <= n; j += 4 * lanes) {
      FloatVector sum0 = FloatVector.fromArray(FLOATS, acc, accOff + j);
      FloatVector sum1 = FloatVector.fromArray(FLOATS, acc, accOff + j + lanes);
      FloatVector sum2 = FloatVector.fromArray(FLOATS, acc, accOff + j + 2 * lanes);
      FloatVector sum3 = FloatVector.fromArray(FLOATS, acc, accOff + j + 3 * lanes);
      int at = offset + 4 * j;
      for (int s = 0; s < count; s++, at += rowBytes) {
        float w = weights[wOff + s];
        if (w != 0f) {
          FloatVector vw = FloatVector.broadcast(FLOATS, w);
          sum0 = floats(rows, at).fma(vw, sum0);
          sum1 = floats(rows, at + 4 * lanes).fma(vw, sum1);
          sum2 = floats(rows, at + 8 * lanes).fma(vw, sum2);
          sum3 = floats(rows, at + 12 * lanes).fma(vw, sum3);
        }
      }
      sum0.intoArray(acc, accOff + j);
      sum1.intoArray(acc, accOff + j + lanes);
      sum2.intoArray(acc, accOff + j + 2 * lanes);
      sum3.intoArray(acc, accOff + j + 3 * lanes);
    }
    for (int upper = FLOATS.loopBound(n); j < upper; j += lanes) {
      FloatVector sum = FloatVector.fromArray(FLOATS, acc, accOff + j);
      int at = offset + 4 * j;
      for (int s = 0; s < count; s++, at += rowBytes) {
        float w = weights[wOff + s];
        if (w != 0f) {
          sum = floats(rows, at).fma(FloatVector.broadcast(FLOATS, w), sum);
        }
      }
      sum.intoArray(acc, accOff + j);
    }
    for (; j < n; j++) {
      float sum = acc[accOff + j];
      for (int s = 0; s < count; s++) {
        float w = weights[wOff + s];
        if (w != 0f) {
          sum = Math.fma(floatAt(rows, offset + s * rowBytes + 4 * j), w, sum);
        }
      }
      acc[accOff + j] = sum;
    }
  }

  /** {@code acc[accOff..+n) = fma(weight, x[xOff..+n), acc)}, element by element. */
  public static void addWeighted(
      float weight, float[] x, int xOff, float[] acc, int accOff, int n) {
    int j = 0;
    for (int upper = FLOATS.loopBound(n); j < upper; j += FLOATS.length()) {
      FloatVector.fromArray(FLOATS, x, xOff + j)
          .fma(
              FloatVector.broadcast(FLOATS, weight), FloatVector.fromArray(FLOATS, acc, accOff + j))
          .intoArray(acc, accOff + j);
    }
    for (; j < n; j++) {
      acc[accOff + j] = Math.fma(x[xOff + j], weight, acc[accOff + j]);
    }
  }

  /**
   * As {@link #addWeighted(float, float[], int, float[], int, int)} with little-endian f32 rows.
   */
  public static void addWeighted(
      float weight, MemorySegment x, long offset, float[] acc, int accOff, int n) {
    int j = 0;
    for (int upper = FLOATS.loopBound(n); j < upper; j += FLOATS.length()) {
      FloatVector.fromMemorySegment(FLOATS, x, offset + 4L * j, VectorKernels.LE)
          .fma(
              FloatVector.broadcast(FLOATS, weight), FloatVector.fromArray(FLOATS, acc, accOff + j))
          .intoArray(acc, accOff + j);
    }
    for (; j < n; j++) {
      acc[accOff + j] =
          Math.fma(x.get(F32Format.FLOAT_LE, offset + 4L * j), weight, acc[accOff + j]);
    }
  }

  /** {@code dst[dstOff..+n) = src[srcOff..+n) · factor}, element by element. */
  public static void scale(float[] src, int srcOff, float factor, float[] dst, int dstOff, int n) {
    int j = 0;
    for (int upper = FLOATS.loopBound(n); j < upper; j += FLOATS.length()) {
      FloatVector.fromArray(FLOATS, src, srcOff + j).mul(factor).intoArray(dst, dstOff + j);
    }
    for (; j < n; j++) {
      dst[dstOff + j] = src[srcOff + j] * factor;
    }
  }

  /** The largest of {@code x[off..+n)} ({@code -∞} when empty). */
  public static float max(float[] x, int off, int n) {
    FloatVector m = FloatVector.broadcast(FLOATS, Float.NEGATIVE_INFINITY);
    int j = 0;
    for (int upper = FLOATS.loopBound(n); j < upper; j += FLOATS.length()) {
      m = m.max(FloatVector.fromArray(FLOATS, x, off + j));
    }
    float result = m.reduceLanes(VectorOperators.MAX); // max is exact in any order
    for (; j < n; j++) {
      result = Math.max(result, x[off + j]);
    }
    return result;
  }

  // exp(x) = 2^n · exp(r), n = round(x / ln 2), r = x − n·ln 2 in [−ln2/2, ln2/2] (Cody and Waite's
  // two-part ln 2), exp(r) by its Taylor series to r^7 (truncation below 4e-9 relative there).
  private static final float LOG2E = 1.44269504f;
  private static final float LN2_HIGH = 0.693145751953125f;
  private static final float LN2_LOW = 1.42860677e-6f;
  private static final float ROUNDING = 12582912f; // 1.5·2^23: adding it rounds to an integer
  private static final int ROUNDING_BITS_MINUS_BIAS = 0x4B400000 - 127;
  private static final float UNDERFLOW = -87f; // below this the result is treated as 0
  private static final float C2 = 1f / 2;
  private static final float C3 = 1f / 6;
  private static final float C4 = 1f / 24;
  private static final float C5 = 1f / 120;
  private static final float C6 = 1f / 720;
  private static final float C7 = 1f / 5040;

  /**
   * {@code e^x} for {@code x <= 0}, within about 2 ulp, and {@code 0} for {@code x < −87} (also
   * {@code −∞}); {@code exp(0) = 1} exactly. The scalar twin of the lane computation in {@link
   * #expAndSum}, operation for operation.
   */
  public static float exp(float x) {
    if (!(x >= UNDERFLOW)) {
      return 0f;
    }
    float t = Math.fma(x, LOG2E, ROUNDING);
    float n = t - ROUNDING;
    float r = Math.fma(n, -LN2_HIGH, x);
    r = Math.fma(n, -LN2_LOW, r);
    float p = Math.fma(C7, r, C6);
    p = Math.fma(p, r, C5);
    p = Math.fma(p, r, C4);
    p = Math.fma(p, r, C3);
    p = Math.fma(p, r, C2);
    p = Math.fma(p, r, 1f);
    p = Math.fma(p, r, 1f);
    float twoToN =
        Float.intBitsToFloat((Float.floatToRawIntBits(t) - ROUNDING_BITS_MINUS_BIAS) << 23);
    return p * twoToN;
  }

  private static FloatVector constant(float c) {
    return FloatVector.broadcast(FLOATS, c);
  }

  private static final ThreadLocal<float[]> LANES =
      ThreadLocal.withInitial(() -> new float[FLOATS.length()]);

  /**
   * Replaces {@code x[off..+n)} by {@code exp(x − max)} ({@link #exp(float)}) and returns their
   * sum, accumulated lane-wise, then over the lanes as a tree, then the tail in order.
   *
   * <p>The lane computation is written out in the loop with its constants broadcast once, and the
   * lanes are summed from a stored vector ({@link #sumLanes(float[], int)}, the same tree): no
   * vector crosses a method call. A JFR allocation profile of the server showed a vector {@code
   * exp} helper compiled on its own, its vectors boxed and some of its operations left to the
   * Vector API's Java fallback (gigabytes of garbage per minute).
   */
  public static float expAndSum(float[] x, int off, int n, float max) {
    FloatVector top = constant(max);
    FloatVector log2e = constant(LOG2E);
    FloatVector rounding = constant(ROUNDING);
    FloatVector ln2High = constant(-LN2_HIGH);
    FloatVector ln2Low = constant(-LN2_LOW);
    FloatVector c7 = constant(C7);
    FloatVector c6 = constant(C6);
    FloatVector c5 = constant(C5);
    FloatVector c4 = constant(C4);
    FloatVector c3 = constant(C3);
    FloatVector c2 = constant(C2);
    FloatVector one = constant(1f);
    FloatVector zero = FloatVector.zero(FLOATS);
    FloatVector sum = zero;
    int j = 0;
    for (int upper = FLOATS.loopBound(n); j < upper; j += FLOATS.length()) {
      FloatVector v = FloatVector.fromArray(FLOATS, x, off + j).sub(top);
      VectorMask<Float> underflow = v.compare(VectorOperators.GE, UNDERFLOW).not();
      FloatVector t = v.fma(log2e, rounding);
      FloatVector k = t.sub(rounding);
      FloatVector r = k.fma(ln2High, v);
      r = k.fma(ln2Low, r);
      FloatVector p = c7.fma(r, c6);
      p = p.fma(r, c5);
      p = p.fma(r, c4);
      p = p.fma(r, c3);
      p = p.fma(r, c2);
      p = p.fma(r, one);
      p = p.fma(r, one);
      FloatVector twoToN =
          ((IntVector) t.reinterpretAsInts())
              .sub(ROUNDING_BITS_MINUS_BIAS)
              .lanewise(VectorOperators.LSHL, 23)
              .reinterpretAsFloats();
      FloatVector e = p.mul(twoToN).blend(zero, underflow);
      e.intoArray(x, off + j);
      sum = sum.add(e);
    }
    float[] lanes = LANES.get();
    sum.intoArray(lanes, 0);
    float result = sumLanes(lanes, 0);
    for (; j < n; j++) {
      float e = exp(x[off + j] - max);
      x[off + j] = e;
      result += e;
    }
    return result;
  }

  /**
   * Replaces the scores {@code x[off..+n)} by their softmax weights {@code exp(x − max)} and
   * returns their sum; when every score is {@code −∞} (no visible token) the weights are all 0 and
   * so is the sum.
   */
  public static float softmaxWeights(float[] x, int off, int n) {
    float max = max(x, off, n);
    if (max == Float.NEGATIVE_INFINITY) {
      java.util.Arrays.fill(x, off, off + n, 0f);
      return 0f;
    }
    return expAndSum(x, off, n, max);
  }
}
