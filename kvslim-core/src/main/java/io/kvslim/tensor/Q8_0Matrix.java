package io.kvslim.tensor;

import static io.kvslim.ggml.Q8_0Codec.BLOCK;
import static io.kvslim.ggml.Q8_0Codec.BYTES;
import static io.kvslim.ggml.Q8_0Codec.QS;
import static io.kvslim.tensor.PanelKernel.LANE_OF;
import static io.kvslim.tensor.PanelKernel.M1;
import static io.kvslim.tensor.PanelKernel.M2;
import static io.kvslim.tensor.PanelKernel.M4;
import static io.kvslim.tensor.PanelKernel.M8;
import static io.kvslim.tensor.PanelKernel.X1;
import static io.kvslim.tensor.PanelKernel.X2;
import static io.kvslim.tensor.PanelKernel.X4;
import static io.kvslim.tensor.PanelKernel.X8;
import static io.kvslim.tensor.Simd.B;
import static io.kvslim.tensor.Simd.BL;
import static io.kvslim.tensor.Simd.F;
import static io.kvslim.tensor.Simd.FL;
import static io.kvslim.tensor.Simd.LE;
import static io.kvslim.tensor.Simd.PARTS;
import static io.kvslim.tensor.Simd.SHORT_LE;

import io.kvslim.ggml.Q8_0Codec;
import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;

/**
 * Q8_0 weights: blocks of 32 elements in 34 bytes, an fp16 scale {@code d} then 32 signed bytes;
 * element {@code j} is {@code d·q_j}. The layout's offsets, the dequantization and the scalar
 * reference come from {@link Q8_0Codec}; this class holds the Vector API kernels.
 *
 * <p>Written-out SIMD kernels (Vector API): longer than ~500 lines on purpose.
 */
public final class Q8_0Matrix extends WeightMatrix {
  /** Per-thread scratch for the sixteen lane sums of a tile. */
  private static final ThreadLocal<float[]> LANES = ThreadLocal.withInitial(() -> new float[32]);

  public Q8_0Matrix(MemorySegment data, int rows, int cols) {
    super(data, rows, cols, GgmlType.Q8_0);
  }

  @Override
  public GgmlType type() {
    return GgmlType.Q8_0;
  }

  /**
   * Every kernel of this type computes a row's product in the same order, so results are
   * bit-identical whichever kernel runs: for each block, each run of {@code FL} weights is widened,
   * multiplied by the block scale, and fused-multiply-added into one lane-wise total; the lanes are
   * summed last ({@link Simd#sumLanes}).
   */
  @Override
  public float dot(int row, float[] x, int xOffset) {
    MemorySegment r = rowSlice(row);
    FloatVector total = FloatVector.zero(F);
    int blocks = cols / BLOCK;
    for (int b = 0; b < blocks; b++) {
      int block = b * BYTES;
      int xo = xOffset + b * BLOCK;
      FloatVector d = FloatVector.broadcast(F, Float.float16ToFloat(r.get(SHORT_LE, block)));
      for (int j = 0; j < BLOCK; j += BL) {
        ByteVector q = ByteVector.fromMemorySegment(B, r, block + QS + j, LE);
        for (int p = 0; p < PARTS; p++) {
          FloatVector w = ((FloatVector) q.castShape(F, p)).mul(d);
          total = w.fma(FloatVector.fromArray(F, x, xo + j + p * FL), total);
        }
      }
    }
    return Simd.sumLanes(total);
  }

  @Override
  public void dotTile(
      int row,
      float[] x,
      int xOffset,
      int xStride,
      int n,
      float[] out,
      int outOffset,
      int outStride) {
    dotTileBy4(row, x, xOffset, xStride, n, out, outOffset, outStride);
  }

  /**
   * Decode: eight weight rows per pass over x, each row in exactly {@link #dot}'s order. The eight
   * rows lie {@code count / 8} rows apart, so the pass reads eight distant memory streams at once:
   * the hardware prefetcher follows each one, which doubles the bandwidth drawn from memory
   * compared with adjacent rows (one stream).
   */
  @Override
  public void dotRows(int row, int count, float[] x, float[] out) {
    int q = count / 8;
    rows(row, count, x, 0, out, 0);
  }

  /** {@link #dotRows} for the activation row at {@code x[xo..]}, results to {@code out[oo + r]}. */
  private void rows(int row, int count, float[] x, int xo, float[] out, int oo) {
    if (FL == 8) {
      int q4 = count / 4;
      for (int r = row; r < row + q4; r++) {
        rows4(r, q4, x, xo, out, oo);
      }
      for (int r = row + 4 * q4; r < row + count; r++) {
        out[oo + r] = dot(r, x, xo);
      }
      return;
    }
    int q = count / 8;
    for (int r = row; r < row + q; r++) {
      rows8(r, q, x, xo, out, oo);
    }
    for (int r = row + 8 * q; r < row + count; r++) {
      out[oo + r] = dot(r, x, xo);
    }
  }

  /**
   * Two or three activation rows (a batched decode step of a few sequences): the activation rows go
   * in pairs, each pair in one pass of eight weight rows {@code count / 8} apart (eight memory
   * streams, as {@link #dotRows}); a last single row takes {@link #dotRows}'s kernel. Three rows
   * (with 16-lane vectors) go in one pass of four weight rows {@code count / 4} apart instead of a
   * pair pass and a single pass over the weights. Four, five and six rows (16-lane vectors) go in
   * one pass of four weight rows decoded in registers ({@link #rows4x4}, {@link #rows4x5}, {@link
   * #rows4x6}); more rows take the panel kernel, whose decoding pass then pays off (one thread,
   * five rows: 768×2048 321 → 192 µs, 2048×768 250 → 216 µs; six rows 400 → 307 and 316 → 305 µs).
   * Each product keeps {@link #dot}'s order.
   */
  @Override
  public void matmulRows(int row, int count, float[] x, int n, float[] out) {
    if (n == 4 && FL == 16) {
      int q = count / 4;
      for (int r = row; r < row + q; r++) {
        rows4x4(r, q, x, out);
      }
      for (int r = row + 4 * q; r < row + count; r++) {
        for (int t = 0; t < 4; t++) {
          out[t * rows + r] = dot(r, x, t * cols);
        }
      }
      return;
    }
    if ((n == 5 || n == 6) && FL == 16) {
      int q = count / 4;
      for (int r = row; r < row + q; r++) {
        if (n == 5) {
          rows4x5(r, q, x, out);
        } else {
          rows4x6(r, q, x, out);
        }
      }
      for (int r = row + 4 * q; r < row + count; r++) {
        for (int t = 0; t < n; t++) {
          out[t * rows + r] = dot(r, x, t * cols);
        }
      }
      return;
    }
    if (n >= 4) {
      super.matmulRows(row, count, x, n, out);
      return;
    }
    if (n == 3 && FL == 16) {
      int q = count / 4;
      for (int r = row; r < row + q; r++) {
        rows4x3(r, q, x, out);
      }
      for (int r = row + 4 * q; r < row + count; r++) {
        for (int t = 0; t < 3; t++) {
          out[t * rows + r] = dot(r, x, t * cols);
        }
      }
      return;
    }
    int t = 0;
    for (; FL == 8 && t + 2 <= n; t += 2) {
      int q = count / 4;
      for (int r = row; r < row + q; r++) {
        rows4x2(r, q, x, t * cols, (t + 1) * cols, out, t * rows, (t + 1) * rows);
      }
      for (int r = row + 4 * q; r < row + count; r++) {
        out[t * rows + r] = dot(r, x, t * cols);
        out[(t + 1) * rows + r] = dot(r, x, (t + 1) * cols);
      }
    }
    for (; t + 2 <= n; t += 2) {
      int q = count / 8;
      for (int r = row; r < row + q; r++) {
        rows8x2(r, q, x, t * cols, (t + 1) * cols, out, t * rows, (t + 1) * rows);
      }
      for (int r = row + 8 * q; r < row + count; r++) {
        out[t * rows + r] = dot(r, x, t * cols);
        out[(t + 1) * rows + r] = dot(r, x, (t + 1) * cols);
      }
    }
    if (t < n) {
      rows(row, count, x, t * cols, out, t * rows);
    }
  }

  /**
   * {@link #rows8x2} with four weight rows for 8-lane vectors (AVX2), whose sixteen registers do
   * not hold sixteen accumulators (see {@link #rows4}); each product in {@link #dot}'s order.
   */
  private void rows4x2(int row, int q, float[] x, int xa, int xb, float[] out, int oa, int ob) {
    MemorySegment r0 = rowSlice(row);
    MemorySegment r1 = rowSlice(row + q);
    MemorySegment r2 = rowSlice(row + 2L * q);
    MemorySegment r3 = rowSlice(row + 3L * q);
    FloatVector a0 = FloatVector.zero(F);
    FloatVector a1 = a0;
    FloatVector a2 = a0;
    FloatVector a3 = a0;
    FloatVector c0 = a0;
    FloatVector c1 = a0;
    FloatVector c2 = a0;
    FloatVector c3 = a0;
    int blocks = cols / BLOCK;
    for (int b = 0; b < blocks; b++) {
      int o = b * BYTES;
      int xo = b * BLOCK;
      float d0 = Float.float16ToFloat(r0.get(SHORT_LE, o));
      float d1 = Float.float16ToFloat(r1.get(SHORT_LE, o));
      float d2 = Float.float16ToFloat(r2.get(SHORT_LE, o));
      float d3 = Float.float16ToFloat(r3.get(SHORT_LE, o));
      for (int j = 0; j < BLOCK; j += BL) {
        ByteVector q0 = ByteVector.fromMemorySegment(B, r0, o + QS + j, LE);
        ByteVector q1 = ByteVector.fromMemorySegment(B, r1, o + QS + j, LE);
        ByteVector q2 = ByteVector.fromMemorySegment(B, r2, o + QS + j, LE);
        ByteVector q3 = ByteVector.fromMemorySegment(B, r3, o + QS + j, LE);
        for (int p = 0; p < PARTS; p++) {
          FloatVector xv = FloatVector.fromArray(F, x, xa + xo + j + p * FL);
          FloatVector yv = FloatVector.fromArray(F, x, xb + xo + j + p * FL);
          FloatVector w = ((FloatVector) q0.castShape(F, p)).mul(d0);
          a0 = w.fma(xv, a0);
          c0 = w.fma(yv, c0);
          w = ((FloatVector) q1.castShape(F, p)).mul(d1);
          a1 = w.fma(xv, a1);
          c1 = w.fma(yv, c1);
          w = ((FloatVector) q2.castShape(F, p)).mul(d2);
          a2 = w.fma(xv, a2);
          c2 = w.fma(yv, c2);
          w = ((FloatVector) q3.castShape(F, p)).mul(d3);
          a3 = w.fma(xv, a3);
          c3 = w.fma(yv, c3);
        }
      }
    }
    out[oa + row] = Simd.sumLanes(a0);
    out[oa + row + q] = Simd.sumLanes(a1);
    out[oa + row + 2 * q] = Simd.sumLanes(a2);
    out[oa + row + 3 * q] = Simd.sumLanes(a3);
    out[ob + row] = Simd.sumLanes(c0);
    out[ob + row + q] = Simd.sumLanes(c1);
    out[ob + row + 2 * q] = Simd.sumLanes(c2);
    out[ob + row + 3 * q] = Simd.sumLanes(c3);
  }

  private void rows8x2(int row, int q, float[] x, int xa, int xb, float[] out, int oa, int ob) {
    MemorySegment r0 = rowSlice(row);
    MemorySegment r1 = rowSlice(row + q);
    MemorySegment r2 = rowSlice(row + 2L * q);
    MemorySegment r3 = rowSlice(row + 3L * q);
    MemorySegment r4 = rowSlice(row + 4L * q);
    MemorySegment r5 = rowSlice(row + 5L * q);
    MemorySegment r6 = rowSlice(row + 6L * q);
    MemorySegment r7 = rowSlice(row + 7L * q);
    FloatVector a0 = FloatVector.zero(F);
    FloatVector a1 = a0;
    FloatVector a2 = a0;
    FloatVector a3 = a0;
    FloatVector a4 = a0;
    FloatVector a5 = a0;
    FloatVector a6 = a0;
    FloatVector a7 = a0;
    FloatVector c0 = a0;
    FloatVector c1 = a0;
    FloatVector c2 = a0;
    FloatVector c3 = a0;
    FloatVector c4 = a0;
    FloatVector c5 = a0;
    FloatVector c6 = a0;
    FloatVector c7 = a0;
    int blocks = cols / BLOCK;
    for (int b = 0; b < blocks; b++) {
      int o = b * BYTES;
      int xo = b * BLOCK;
      float d0 = Float.float16ToFloat(r0.get(SHORT_LE, o));
      float d1 = Float.float16ToFloat(r1.get(SHORT_LE, o));
      float d2 = Float.float16ToFloat(r2.get(SHORT_LE, o));
      float d3 = Float.float16ToFloat(r3.get(SHORT_LE, o));
      float d4 = Float.float16ToFloat(r4.get(SHORT_LE, o));
      float d5 = Float.float16ToFloat(r5.get(SHORT_LE, o));
      float d6 = Float.float16ToFloat(r6.get(SHORT_LE, o));
      float d7 = Float.float16ToFloat(r7.get(SHORT_LE, o));
      for (int j = 0; j < BLOCK; j += BL) {
        ByteVector q0 = ByteVector.fromMemorySegment(B, r0, o + QS + j, LE);
        ByteVector q1 = ByteVector.fromMemorySegment(B, r1, o + QS + j, LE);
        ByteVector q2 = ByteVector.fromMemorySegment(B, r2, o + QS + j, LE);
        ByteVector q3 = ByteVector.fromMemorySegment(B, r3, o + QS + j, LE);
        ByteVector q4 = ByteVector.fromMemorySegment(B, r4, o + QS + j, LE);
        ByteVector q5 = ByteVector.fromMemorySegment(B, r5, o + QS + j, LE);
        ByteVector q6 = ByteVector.fromMemorySegment(B, r6, o + QS + j, LE);
        ByteVector q7 = ByteVector.fromMemorySegment(B, r7, o + QS + j, LE);
        for (int p = 0; p < PARTS; p++) {
          FloatVector xv = FloatVector.fromArray(F, x, xa + xo + j + p * FL);
          FloatVector yv = FloatVector.fromArray(F, x, xb + xo + j + p * FL);
          FloatVector w = ((FloatVector) q0.castShape(F, p)).mul(d0);
          a0 = w.fma(xv, a0);
          c0 = w.fma(yv, c0);
          w = ((FloatVector) q1.castShape(F, p)).mul(d1);
          a1 = w.fma(xv, a1);
          c1 = w.fma(yv, c1);
          w = ((FloatVector) q2.castShape(F, p)).mul(d2);
          a2 = w.fma(xv, a2);
          c2 = w.fma(yv, c2);
          w = ((FloatVector) q3.castShape(F, p)).mul(d3);
          a3 = w.fma(xv, a3);
          c3 = w.fma(yv, c3);
          w = ((FloatVector) q4.castShape(F, p)).mul(d4);
          a4 = w.fma(xv, a4);
          c4 = w.fma(yv, c4);
          w = ((FloatVector) q5.castShape(F, p)).mul(d5);
          a5 = w.fma(xv, a5);
          c5 = w.fma(yv, c5);
          w = ((FloatVector) q6.castShape(F, p)).mul(d6);
          a6 = w.fma(xv, a6);
          c6 = w.fma(yv, c6);
          w = ((FloatVector) q7.castShape(F, p)).mul(d7);
          a7 = w.fma(xv, a7);
          c7 = w.fma(yv, c7);
        }
      }
    }
    if (FL == 16) {
      // PanelKernel.tile4x4's transposing lane sums, written out here (no vector crosses a call
      // that C2 might not inline, where it would be boxed): each lane follows Simd.sumLanes's tree
      // for its own accumulator; a0..a3 sit where tile4x4 has t00..t30, c0..c3 at t01..t31, a4..a7
      // at t02..t32 and c4..c7 at t03..t33
      float[] lanes = LANES.get();
      FloatVector r80 = a0.blend(a1, M8).add(a1.blend(a0, M8).rearrange(X8));
      FloatVector r81 = a2.blend(a3, M8).add(a3.blend(a2, M8).rearrange(X8));
      FloatVector r82 = c0.blend(c1, M8).add(c1.blend(c0, M8).rearrange(X8));
      FloatVector r83 = c2.blend(c3, M8).add(c3.blend(c2, M8).rearrange(X8));
      FloatVector r84 = a4.blend(a5, M8).add(a5.blend(a4, M8).rearrange(X8));
      FloatVector r85 = a6.blend(a7, M8).add(a7.blend(a6, M8).rearrange(X8));
      FloatVector r86 = c4.blend(c5, M8).add(c5.blend(c4, M8).rearrange(X8));
      FloatVector r87 = c6.blend(c7, M8).add(c7.blend(c6, M8).rearrange(X8));
      FloatVector r40 = r80.blend(r81, M4).add(r81.blend(r80, M4).rearrange(X4));
      FloatVector r41 = r82.blend(r83, M4).add(r83.blend(r82, M4).rearrange(X4));
      FloatVector r42 = r84.blend(r85, M4).add(r85.blend(r84, M4).rearrange(X4));
      FloatVector r43 = r86.blend(r87, M4).add(r87.blend(r86, M4).rearrange(X4));
      FloatVector r20 = r40.blend(r41, M2).add(r41.blend(r40, M2).rearrange(X2));
      FloatVector r21 = r42.blend(r43, M2).add(r43.blend(r42, M2).rearrange(X2));
      r20.blend(r21, M1).add(r21.blend(r20, M1).rearrange(X1)).intoArray(lanes, 0);
      for (int i = 0; i < 4; i++) {
        int lane = LANE_OF[i];
        out[oa + row + i * q] = lanes[lane];
        out[ob + row + i * q] = lanes[lane + 2];
        out[oa + row + (4 + i) * q] = lanes[lane + 1];
        out[ob + row + (4 + i) * q] = lanes[lane + 3];
      }
      return;
    }
    out[oa + row] = Simd.sumLanes(a0);
    out[oa + row + q] = Simd.sumLanes(a1);
    out[oa + row + 2 * q] = Simd.sumLanes(a2);
    out[oa + row + 3 * q] = Simd.sumLanes(a3);
    out[oa + row + 4 * q] = Simd.sumLanes(a4);
    out[oa + row + 5 * q] = Simd.sumLanes(a5);
    out[oa + row + 6 * q] = Simd.sumLanes(a6);
    out[oa + row + 7 * q] = Simd.sumLanes(a7);
    out[ob + row] = Simd.sumLanes(c0);
    out[ob + row + q] = Simd.sumLanes(c1);
    out[ob + row + 2 * q] = Simd.sumLanes(c2);
    out[ob + row + 3 * q] = Simd.sumLanes(c3);
    out[ob + row + 4 * q] = Simd.sumLanes(c4);
    out[ob + row + 5 * q] = Simd.sumLanes(c5);
    out[ob + row + 6 * q] = Simd.sumLanes(c6);
    out[ob + row + 7 * q] = Simd.sumLanes(c7);
  }

  /**
   * Weight rows {@code row + i·q} (i &lt; 4) against the three activation rows: twelve
   * accumulators, each {@link #dot}'s sequence of {@code w.fma(x, acc)}; their lanes summed with
   * the panel tile's transposing reduction over a zero fourth row (see {@link #rows8x2}). Needs 16
   * lanes.
   */
  private void rows4x3(int row, int q, float[] x, float[] out) {
    MemorySegment r0 = rowSlice(row);
    MemorySegment r1 = rowSlice(row + q);
    MemorySegment r2 = rowSlice(row + 2L * q);
    MemorySegment r3 = rowSlice(row + 3L * q);
    int x1 = cols;
    int x2 = 2 * cols;
    FloatVector a0 = FloatVector.zero(F);
    FloatVector a1 = a0;
    FloatVector a2 = a0;
    FloatVector a3 = a0;
    FloatVector b0v = a0;
    FloatVector b1 = a0;
    FloatVector b2 = a0;
    FloatVector b3 = a0;
    FloatVector c0 = a0;
    FloatVector c1 = a0;
    FloatVector c2 = a0;
    FloatVector c3 = a0;
    int blocks = cols / BLOCK;
    for (int b = 0; b < blocks; b++) {
      int o = b * BYTES;
      int xo = b * BLOCK;
      float d0 = Float.float16ToFloat(r0.get(SHORT_LE, o));
      float d1 = Float.float16ToFloat(r1.get(SHORT_LE, o));
      float d2 = Float.float16ToFloat(r2.get(SHORT_LE, o));
      float d3 = Float.float16ToFloat(r3.get(SHORT_LE, o));
      for (int j = 0; j < BLOCK; j += BL) {
        FloatVector u = FloatVector.fromArray(F, x, xo + j);
        FloatVector v = FloatVector.fromArray(F, x, x1 + xo + j);
        FloatVector y = FloatVector.fromArray(F, x, x2 + xo + j);
        FloatVector w =
            ((FloatVector) ByteVector.fromMemorySegment(B, r0, o + QS + j, LE).castShape(F, 0))
                .mul(d0);
        a0 = w.fma(u, a0);
        b0v = w.fma(v, b0v);
        c0 = w.fma(y, c0);
        w =
            ((FloatVector) ByteVector.fromMemorySegment(B, r1, o + QS + j, LE).castShape(F, 0))
                .mul(d1);
        a1 = w.fma(u, a1);
        b1 = w.fma(v, b1);
        c1 = w.fma(y, c1);
        w =
            ((FloatVector) ByteVector.fromMemorySegment(B, r2, o + QS + j, LE).castShape(F, 0))
                .mul(d2);
        a2 = w.fma(u, a2);
        b2 = w.fma(v, b2);
        c2 = w.fma(y, c2);
        w =
            ((FloatVector) ByteVector.fromMemorySegment(B, r3, o + QS + j, LE).castShape(F, 0))
                .mul(d3);
        a3 = w.fma(u, a3);
        b3 = w.fma(v, b3);
        c3 = w.fma(y, c3);
      }
    }
    // weight row i, activation row t sits where tile4x4 has t_it
    float[] lanes = LANES.get();
    FloatVector z = FloatVector.zero(F);
    FloatVector r80 = a0.blend(a1, M8).add(a1.blend(a0, M8).rearrange(X8));
    FloatVector r81 = a2.blend(a3, M8).add(a3.blend(a2, M8).rearrange(X8));
    FloatVector r82 = b0v.blend(b1, M8).add(b1.blend(b0v, M8).rearrange(X8));
    FloatVector r83 = b2.blend(b3, M8).add(b3.blend(b2, M8).rearrange(X8));
    FloatVector r84 = c0.blend(c1, M8).add(c1.blend(c0, M8).rearrange(X8));
    FloatVector r85 = c2.blend(c3, M8).add(c3.blend(c2, M8).rearrange(X8));
    FloatVector r40 = r80.blend(r81, M4).add(r81.blend(r80, M4).rearrange(X4));
    FloatVector r41 = r82.blend(r83, M4).add(r83.blend(r82, M4).rearrange(X4));
    FloatVector r42 = r84.blend(r85, M4).add(r85.blend(r84, M4).rearrange(X4));
    FloatVector r20 = r40.blend(r41, M2).add(r41.blend(r40, M2).rearrange(X2));
    FloatVector r21 = r42.blend(z, M2).add(z.blend(r42, M2).rearrange(X2));
    r20.blend(r21, M1).add(r21.blend(r20, M1).rearrange(X1)).intoArray(lanes, 0);
    for (int i = 0; i < 4; i++) {
      int lane = LANE_OF[i];
      int r = row + i * q;
      out[r] = lanes[lane];
      out[rows + r] = lanes[lane + 2];
      out[2 * rows + r] = lanes[lane + 1];
    }
  }

  /**
   * Four activation rows (four streams) in one pass of four weight rows {@code q} apart, decoded in
   * registers: sixteen accumulators, summed by {@link PanelKernel}'s 4×4 transposing tree. Where
   * the panel kernel would decode the four rows to memory and read them back for a single tile,
   * this reads each weight once.
   */
  private void rows4x4(int row, int q, float[] x, float[] out) {
    MemorySegment r0 = rowSlice(row);
    MemorySegment r1 = rowSlice(row + q);
    MemorySegment r2 = rowSlice(row + 2L * q);
    MemorySegment r3 = rowSlice(row + 3L * q);
    int x1 = cols;
    int x2 = 2 * cols;
    int x3 = 3 * cols;
    FloatVector a0 = FloatVector.zero(F);
    FloatVector a1 = a0;
    FloatVector a2 = a0;
    FloatVector a3 = a0;
    FloatVector b0v = a0;
    FloatVector b1 = a0;
    FloatVector b2 = a0;
    FloatVector b3 = a0;
    FloatVector c0 = a0;
    FloatVector c1 = a0;
    FloatVector c2 = a0;
    FloatVector c3 = a0;
    FloatVector e0 = a0;
    FloatVector e1 = a0;
    FloatVector e2 = a0;
    FloatVector e3 = a0;
    int blocks = cols / BLOCK;
    for (int b = 0; b < blocks; b++) {
      int o = b * BYTES;
      int xo = b * BLOCK;
      float d0 = Float.float16ToFloat(r0.get(SHORT_LE, o));
      float d1 = Float.float16ToFloat(r1.get(SHORT_LE, o));
      float d2 = Float.float16ToFloat(r2.get(SHORT_LE, o));
      float d3 = Float.float16ToFloat(r3.get(SHORT_LE, o));
      for (int j = 0; j < BLOCK; j += BL) {
        FloatVector u = FloatVector.fromArray(F, x, xo + j);
        FloatVector v = FloatVector.fromArray(F, x, x1 + xo + j);
        FloatVector y = FloatVector.fromArray(F, x, x2 + xo + j);
        FloatVector z = FloatVector.fromArray(F, x, x3 + xo + j);
        FloatVector w =
            ((FloatVector) ByteVector.fromMemorySegment(B, r0, o + QS + j, LE).castShape(F, 0))
                .mul(d0);
        a0 = w.fma(u, a0);
        b0v = w.fma(v, b0v);
        c0 = w.fma(y, c0);
        e0 = w.fma(z, e0);
        w =
            ((FloatVector) ByteVector.fromMemorySegment(B, r1, o + QS + j, LE).castShape(F, 0))
                .mul(d1);
        a1 = w.fma(u, a1);
        b1 = w.fma(v, b1);
        c1 = w.fma(y, c1);
        e1 = w.fma(z, e1);
        w =
            ((FloatVector) ByteVector.fromMemorySegment(B, r2, o + QS + j, LE).castShape(F, 0))
                .mul(d2);
        a2 = w.fma(u, a2);
        b2 = w.fma(v, b2);
        c2 = w.fma(y, c2);
        e2 = w.fma(z, e2);
        w =
            ((FloatVector) ByteVector.fromMemorySegment(B, r3, o + QS + j, LE).castShape(F, 0))
                .mul(d3);
        a3 = w.fma(u, a3);
        b3 = w.fma(v, b3);
        c3 = w.fma(y, c3);
        e3 = w.fma(z, e3);
      }
    }
    // weight row i, activation row t sits where tile4x4 has t_it
    float[] lanes = LANES.get();
    FloatVector r80 = a0.blend(a1, M8).add(a1.blend(a0, M8).rearrange(X8));
    FloatVector r81 = a2.blend(a3, M8).add(a3.blend(a2, M8).rearrange(X8));
    FloatVector r82 = b0v.blend(b1, M8).add(b1.blend(b0v, M8).rearrange(X8));
    FloatVector r83 = b2.blend(b3, M8).add(b3.blend(b2, M8).rearrange(X8));
    FloatVector r84 = c0.blend(c1, M8).add(c1.blend(c0, M8).rearrange(X8));
    FloatVector r85 = c2.blend(c3, M8).add(c3.blend(c2, M8).rearrange(X8));
    FloatVector r86 = e0.blend(e1, M8).add(e1.blend(e0, M8).rearrange(X8));
    FloatVector r87 = e2.blend(e3, M8).add(e3.blend(e2, M8).rearrange(X8));
    FloatVector r40 = r80.blend(r81, M4).add(r81.blend(r80, M4).rearrange(X4));
    FloatVector r41 = r82.blend(r83, M4).add(r83.blend(r82, M4).rearrange(X4));
    FloatVector r42 = r84.blend(r85, M4).add(r85.blend(r84, M4).rearrange(X4));
    FloatVector r43 = r86.blend(r87, M4).add(r87.blend(r86, M4).rearrange(X4));
    FloatVector r20 = r40.blend(r41, M2).add(r41.blend(r40, M2).rearrange(X2));
    FloatVector r21 = r42.blend(r43, M2).add(r43.blend(r42, M2).rearrange(X2));
    r20.blend(r21, M1).add(r21.blend(r20, M1).rearrange(X1)).intoArray(lanes, 0);
    for (int i = 0; i < 4; i++) {
      int lane = LANE_OF[i];
      int r = row + i * q;
      out[r] = lanes[lane];
      out[rows + r] = lanes[lane + 2];
      out[2 * rows + r] = lanes[lane + 1];
      out[3 * rows + r] = lanes[lane + 3];
    }
  }

  /**
   * Five activation rows in one pass of four weight rows {@code q} apart, decoded in registers
   * ({@link #rows4x4}'s kernel with 20 accumulators): the four weight vectors of a step are decoded
   * first, then each activation vector is loaded once for four multiply-adds. Rows 0–3 are summed
   * by the 4×4 transposing tree, rows 4 by the same tree with zero rows in place of the rest, so
   * every product has {@link #dot}'s bits.
   */
  private void rows4x5(int row, int q, float[] x, float[] out) {
    MemorySegment r0 = rowSlice(row);
    MemorySegment r1 = rowSlice(row + q);
    MemorySegment r2 = rowSlice(row + 2L * q);
    MemorySegment r3 = rowSlice(row + 3L * q);
    FloatVector t00 = FloatVector.zero(F);
    FloatVector t01 = FloatVector.zero(F);
    FloatVector t02 = FloatVector.zero(F);
    FloatVector t03 = FloatVector.zero(F);
    FloatVector t10 = FloatVector.zero(F);
    FloatVector t11 = FloatVector.zero(F);
    FloatVector t12 = FloatVector.zero(F);
    FloatVector t13 = FloatVector.zero(F);
    FloatVector t20 = FloatVector.zero(F);
    FloatVector t21 = FloatVector.zero(F);
    FloatVector t22 = FloatVector.zero(F);
    FloatVector t23 = FloatVector.zero(F);
    FloatVector t30 = FloatVector.zero(F);
    FloatVector t31 = FloatVector.zero(F);
    FloatVector t32 = FloatVector.zero(F);
    FloatVector t33 = FloatVector.zero(F);
    FloatVector t40 = FloatVector.zero(F);
    FloatVector t41 = FloatVector.zero(F);
    FloatVector t42 = FloatVector.zero(F);
    FloatVector t43 = FloatVector.zero(F);
    int blocks = cols / BLOCK;
    for (int b = 0; b < blocks; b++) {
      int o = b * BYTES;
      int xo = b * BLOCK;
      float d0 = Float.float16ToFloat(r0.get(SHORT_LE, o));
      float d1 = Float.float16ToFloat(r1.get(SHORT_LE, o));
      float d2 = Float.float16ToFloat(r2.get(SHORT_LE, o));
      float d3 = Float.float16ToFloat(r3.get(SHORT_LE, o));
      for (int j = 0; j < BLOCK; j += BL) {
        FloatVector w0 =
            ((FloatVector) ByteVector.fromMemorySegment(B, r0, o + QS + j, LE).castShape(F, 0))
                .mul(d0);
        FloatVector w1 =
            ((FloatVector) ByteVector.fromMemorySegment(B, r1, o + QS + j, LE).castShape(F, 0))
                .mul(d1);
        FloatVector w2 =
            ((FloatVector) ByteVector.fromMemorySegment(B, r2, o + QS + j, LE).castShape(F, 0))
                .mul(d2);
        FloatVector w3 =
            ((FloatVector) ByteVector.fromMemorySegment(B, r3, o + QS + j, LE).castShape(F, 0))
                .mul(d3);
        FloatVector x0 = FloatVector.fromArray(F, x, 0 * cols + xo + j);
        t00 = w0.fma(x0, t00);
        t01 = w1.fma(x0, t01);
        t02 = w2.fma(x0, t02);
        t03 = w3.fma(x0, t03);
        FloatVector x1 = FloatVector.fromArray(F, x, 1 * cols + xo + j);
        t10 = w0.fma(x1, t10);
        t11 = w1.fma(x1, t11);
        t12 = w2.fma(x1, t12);
        t13 = w3.fma(x1, t13);
        FloatVector x2 = FloatVector.fromArray(F, x, 2 * cols + xo + j);
        t20 = w0.fma(x2, t20);
        t21 = w1.fma(x2, t21);
        t22 = w2.fma(x2, t22);
        t23 = w3.fma(x2, t23);
        FloatVector x3 = FloatVector.fromArray(F, x, 3 * cols + xo + j);
        t30 = w0.fma(x3, t30);
        t31 = w1.fma(x3, t31);
        t32 = w2.fma(x3, t32);
        t33 = w3.fma(x3, t33);
        FloatVector x4 = FloatVector.fromArray(F, x, 4 * cols + xo + j);
        t40 = w0.fma(x4, t40);
        t41 = w1.fma(x4, t41);
        t42 = w2.fma(x4, t42);
        t43 = w3.fma(x4, t43);
      }
    }
    float[] lanes = LANES.get();
    FloatVector z = FloatVector.zero(F);
    FloatVector r800 = t00.blend(t01, M8).add(t01.blend(t00, M8).rearrange(X8));
    FloatVector r801 = t02.blend(t03, M8).add(t03.blend(t02, M8).rearrange(X8));
    FloatVector r802 = t10.blend(t11, M8).add(t11.blend(t10, M8).rearrange(X8));
    FloatVector r803 = t12.blend(t13, M8).add(t13.blend(t12, M8).rearrange(X8));
    FloatVector r804 = t20.blend(t21, M8).add(t21.blend(t20, M8).rearrange(X8));
    FloatVector r805 = t22.blend(t23, M8).add(t23.blend(t22, M8).rearrange(X8));
    FloatVector r806 = t30.blend(t31, M8).add(t31.blend(t30, M8).rearrange(X8));
    FloatVector r807 = t32.blend(t33, M8).add(t33.blend(t32, M8).rearrange(X8));
    FloatVector r400 = r800.blend(r801, M4).add(r801.blend(r800, M4).rearrange(X4));
    FloatVector r401 = r802.blend(r803, M4).add(r803.blend(r802, M4).rearrange(X4));
    FloatVector r402 = r804.blend(r805, M4).add(r805.blend(r804, M4).rearrange(X4));
    FloatVector r403 = r806.blend(r807, M4).add(r807.blend(r806, M4).rearrange(X4));
    FloatVector r200 = r400.blend(r401, M2).add(r401.blend(r400, M2).rearrange(X2));
    FloatVector r201 = r402.blend(r403, M2).add(r403.blend(r402, M2).rearrange(X2));
    r200.blend(r201, M1).add(r201.blend(r200, M1).rearrange(X1)).intoArray(lanes, 0);
    FloatVector r810 = t40.blend(t41, M8).add(t41.blend(t40, M8).rearrange(X8));
    FloatVector r811 = t42.blend(t43, M8).add(t43.blend(t42, M8).rearrange(X8));
    FloatVector r812 = z.blend(z, M8).add(z.blend(z, M8).rearrange(X8));
    FloatVector r813 = z.blend(z, M8).add(z.blend(z, M8).rearrange(X8));
    FloatVector r814 = z.blend(z, M8).add(z.blend(z, M8).rearrange(X8));
    FloatVector r815 = z.blend(z, M8).add(z.blend(z, M8).rearrange(X8));
    FloatVector r816 = z.blend(z, M8).add(z.blend(z, M8).rearrange(X8));
    FloatVector r817 = z.blend(z, M8).add(z.blend(z, M8).rearrange(X8));
    FloatVector r410 = r810.blend(r811, M4).add(r811.blend(r810, M4).rearrange(X4));
    FloatVector r411 = r812.blend(r813, M4).add(r813.blend(r812, M4).rearrange(X4));
    FloatVector r412 = r814.blend(r815, M4).add(r815.blend(r814, M4).rearrange(X4));
    FloatVector r413 = r816.blend(r817, M4).add(r817.blend(r816, M4).rearrange(X4));
    FloatVector r210 = r410.blend(r411, M2).add(r411.blend(r410, M2).rearrange(X2));
    FloatVector r211 = r412.blend(r413, M2).add(r413.blend(r412, M2).rearrange(X2));
    r210.blend(r211, M1).add(r211.blend(r210, M1).rearrange(X1)).intoArray(lanes, 16);
    for (int i = 0; i < 4; i++) {
      int lane = LANE_OF[i];
      int r = row + i * q;
      out[r] = lanes[lane];
      out[rows + r] = lanes[lane + 2];
      out[2 * rows + r] = lanes[lane + 1];
      out[3 * rows + r] = lanes[lane + 3];
      out[4 * rows + r] = lanes[16 + lane];
    }
  }

  /**
   * Six activation rows in one pass of four weight rows {@code q} apart, decoded in registers
   * ({@link #rows4x4}'s kernel with 24 accumulators): the four weight vectors of a step are decoded
   * first, then each activation vector is loaded once for four multiply-adds. Rows 0–3 are summed
   * by the 4×4 transposing tree, rows 4–5 by the same tree with zero rows in place of the rest, so
   * every product has {@link #dot}'s bits.
   */
  private void rows4x6(int row, int q, float[] x, float[] out) {
    MemorySegment r0 = rowSlice(row);
    MemorySegment r1 = rowSlice(row + q);
    MemorySegment r2 = rowSlice(row + 2L * q);
    MemorySegment r3 = rowSlice(row + 3L * q);
    FloatVector t00 = FloatVector.zero(F);
    FloatVector t01 = FloatVector.zero(F);
    FloatVector t02 = FloatVector.zero(F);
    FloatVector t03 = FloatVector.zero(F);
    FloatVector t10 = FloatVector.zero(F);
    FloatVector t11 = FloatVector.zero(F);
    FloatVector t12 = FloatVector.zero(F);
    FloatVector t13 = FloatVector.zero(F);
    FloatVector t20 = FloatVector.zero(F);
    FloatVector t21 = FloatVector.zero(F);
    FloatVector t22 = FloatVector.zero(F);
    FloatVector t23 = FloatVector.zero(F);
    FloatVector t30 = FloatVector.zero(F);
    FloatVector t31 = FloatVector.zero(F);
    FloatVector t32 = FloatVector.zero(F);
    FloatVector t33 = FloatVector.zero(F);
    FloatVector t40 = FloatVector.zero(F);
    FloatVector t41 = FloatVector.zero(F);
    FloatVector t42 = FloatVector.zero(F);
    FloatVector t43 = FloatVector.zero(F);
    FloatVector t50 = FloatVector.zero(F);
    FloatVector t51 = FloatVector.zero(F);
    FloatVector t52 = FloatVector.zero(F);
    FloatVector t53 = FloatVector.zero(F);
    int blocks = cols / BLOCK;
    for (int b = 0; b < blocks; b++) {
      int o = b * BYTES;
      int xo = b * BLOCK;
      float d0 = Float.float16ToFloat(r0.get(SHORT_LE, o));
      float d1 = Float.float16ToFloat(r1.get(SHORT_LE, o));
      float d2 = Float.float16ToFloat(r2.get(SHORT_LE, o));
      float d3 = Float.float16ToFloat(r3.get(SHORT_LE, o));
      for (int j = 0; j < BLOCK; j += BL) {
        FloatVector w0 =
            ((FloatVector) ByteVector.fromMemorySegment(B, r0, o + QS + j, LE).castShape(F, 0))
                .mul(d0);
        FloatVector w1 =
            ((FloatVector) ByteVector.fromMemorySegment(B, r1, o + QS + j, LE).castShape(F, 0))
                .mul(d1);
        FloatVector w2 =
            ((FloatVector) ByteVector.fromMemorySegment(B, r2, o + QS + j, LE).castShape(F, 0))
                .mul(d2);
        FloatVector w3 =
            ((FloatVector) ByteVector.fromMemorySegment(B, r3, o + QS + j, LE).castShape(F, 0))
                .mul(d3);
        FloatVector x0 = FloatVector.fromArray(F, x, 0 * cols + xo + j);
        t00 = w0.fma(x0, t00);
        t01 = w1.fma(x0, t01);
        t02 = w2.fma(x0, t02);
        t03 = w3.fma(x0, t03);
        FloatVector x1 = FloatVector.fromArray(F, x, 1 * cols + xo + j);
        t10 = w0.fma(x1, t10);
        t11 = w1.fma(x1, t11);
        t12 = w2.fma(x1, t12);
        t13 = w3.fma(x1, t13);
        FloatVector x2 = FloatVector.fromArray(F, x, 2 * cols + xo + j);
        t20 = w0.fma(x2, t20);
        t21 = w1.fma(x2, t21);
        t22 = w2.fma(x2, t22);
        t23 = w3.fma(x2, t23);
        FloatVector x3 = FloatVector.fromArray(F, x, 3 * cols + xo + j);
        t30 = w0.fma(x3, t30);
        t31 = w1.fma(x3, t31);
        t32 = w2.fma(x3, t32);
        t33 = w3.fma(x3, t33);
        FloatVector x4 = FloatVector.fromArray(F, x, 4 * cols + xo + j);
        t40 = w0.fma(x4, t40);
        t41 = w1.fma(x4, t41);
        t42 = w2.fma(x4, t42);
        t43 = w3.fma(x4, t43);
        FloatVector x5 = FloatVector.fromArray(F, x, 5 * cols + xo + j);
        t50 = w0.fma(x5, t50);
        t51 = w1.fma(x5, t51);
        t52 = w2.fma(x5, t52);
        t53 = w3.fma(x5, t53);
      }
    }
    float[] lanes = LANES.get();
    FloatVector z = FloatVector.zero(F);
    FloatVector r800 = t00.blend(t01, M8).add(t01.blend(t00, M8).rearrange(X8));
    FloatVector r801 = t02.blend(t03, M8).add(t03.blend(t02, M8).rearrange(X8));
    FloatVector r802 = t10.blend(t11, M8).add(t11.blend(t10, M8).rearrange(X8));
    FloatVector r803 = t12.blend(t13, M8).add(t13.blend(t12, M8).rearrange(X8));
    FloatVector r804 = t20.blend(t21, M8).add(t21.blend(t20, M8).rearrange(X8));
    FloatVector r805 = t22.blend(t23, M8).add(t23.blend(t22, M8).rearrange(X8));
    FloatVector r806 = t30.blend(t31, M8).add(t31.blend(t30, M8).rearrange(X8));
    FloatVector r807 = t32.blend(t33, M8).add(t33.blend(t32, M8).rearrange(X8));
    FloatVector r400 = r800.blend(r801, M4).add(r801.blend(r800, M4).rearrange(X4));
    FloatVector r401 = r802.blend(r803, M4).add(r803.blend(r802, M4).rearrange(X4));
    FloatVector r402 = r804.blend(r805, M4).add(r805.blend(r804, M4).rearrange(X4));
    FloatVector r403 = r806.blend(r807, M4).add(r807.blend(r806, M4).rearrange(X4));
    FloatVector r200 = r400.blend(r401, M2).add(r401.blend(r400, M2).rearrange(X2));
    FloatVector r201 = r402.blend(r403, M2).add(r403.blend(r402, M2).rearrange(X2));
    r200.blend(r201, M1).add(r201.blend(r200, M1).rearrange(X1)).intoArray(lanes, 0);
    FloatVector r810 = t40.blend(t41, M8).add(t41.blend(t40, M8).rearrange(X8));
    FloatVector r811 = t42.blend(t43, M8).add(t43.blend(t42, M8).rearrange(X8));
    FloatVector r812 = t50.blend(t51, M8).add(t51.blend(t50, M8).rearrange(X8));
    FloatVector r813 = t52.blend(t53, M8).add(t53.blend(t52, M8).rearrange(X8));
    FloatVector r814 = z.blend(z, M8).add(z.blend(z, M8).rearrange(X8));
    FloatVector r815 = z.blend(z, M8).add(z.blend(z, M8).rearrange(X8));
    FloatVector r816 = z.blend(z, M8).add(z.blend(z, M8).rearrange(X8));
    FloatVector r817 = z.blend(z, M8).add(z.blend(z, M8).rearrange(X8));
    FloatVector r410 = r810.blend(r811, M4).add(r811.blend(r810, M4).rearrange(X4));
    FloatVector r411 = r812.blend(r813, M4).add(r813.blend(r812, M4).rearrange(X4));
    FloatVector r412 = r814.blend(r815, M4).add(r815.blend(r814, M4).rearrange(X4));
    FloatVector r413 = r816.blend(r817, M4).add(r817.blend(r816, M4).rearrange(X4));
    FloatVector r210 = r410.blend(r411, M2).add(r411.blend(r410, M2).rearrange(X2));
    FloatVector r211 = r412.blend(r413, M2).add(r413.blend(r412, M2).rearrange(X2));
    r210.blend(r211, M1).add(r211.blend(r210, M1).rearrange(X1)).intoArray(lanes, 16);
    for (int i = 0; i < 4; i++) {
      int lane = LANE_OF[i];
      int r = row + i * q;
      out[r] = lanes[lane];
      out[rows + r] = lanes[lane + 2];
      out[2 * rows + r] = lanes[lane + 1];
      out[3 * rows + r] = lanes[lane + 3];
      out[4 * rows + r] = lanes[16 + lane];
      out[5 * rows + r] = lanes[16 + lane + 2];
    }
  }

  private void rows8(int row, int q, float[] x, int xb, float[] out, int ob) {
    MemorySegment r0 = rowSlice(row);
    MemorySegment r1 = rowSlice(row + q);
    MemorySegment r2 = rowSlice(row + 2L * q);
    MemorySegment r3 = rowSlice(row + 3L * q);
    MemorySegment r4 = rowSlice(row + 4L * q);
    MemorySegment r5 = rowSlice(row + 5L * q);
    MemorySegment r6 = rowSlice(row + 6L * q);
    MemorySegment r7 = rowSlice(row + 7L * q);
    FloatVector t0 = FloatVector.zero(F);
    FloatVector t1 = t0;
    FloatVector t2 = t0;
    FloatVector t3 = t0;
    FloatVector t4 = t0;
    FloatVector t5 = t0;
    FloatVector t6 = t0;
    FloatVector t7 = t0;
    int blocks = cols / BLOCK;
    for (int b = 0; b < blocks; b++) {
      int o = b * BYTES;
      int xo = xb + b * BLOCK;
      FloatVector d0 = FloatVector.broadcast(F, Float.float16ToFloat(r0.get(SHORT_LE, o)));
      FloatVector d1 = FloatVector.broadcast(F, Float.float16ToFloat(r1.get(SHORT_LE, o)));
      FloatVector d2 = FloatVector.broadcast(F, Float.float16ToFloat(r2.get(SHORT_LE, o)));
      FloatVector d3 = FloatVector.broadcast(F, Float.float16ToFloat(r3.get(SHORT_LE, o)));
      FloatVector d4 = FloatVector.broadcast(F, Float.float16ToFloat(r4.get(SHORT_LE, o)));
      FloatVector d5 = FloatVector.broadcast(F, Float.float16ToFloat(r5.get(SHORT_LE, o)));
      FloatVector d6 = FloatVector.broadcast(F, Float.float16ToFloat(r6.get(SHORT_LE, o)));
      FloatVector d7 = FloatVector.broadcast(F, Float.float16ToFloat(r7.get(SHORT_LE, o)));
      for (int j = 0; j < BLOCK; j += BL) {
        ByteVector q0 = ByteVector.fromMemorySegment(B, r0, o + QS + j, LE);
        ByteVector q1 = ByteVector.fromMemorySegment(B, r1, o + QS + j, LE);
        ByteVector q2 = ByteVector.fromMemorySegment(B, r2, o + QS + j, LE);
        ByteVector q3 = ByteVector.fromMemorySegment(B, r3, o + QS + j, LE);
        ByteVector q4 = ByteVector.fromMemorySegment(B, r4, o + QS + j, LE);
        ByteVector q5 = ByteVector.fromMemorySegment(B, r5, o + QS + j, LE);
        ByteVector q6 = ByteVector.fromMemorySegment(B, r6, o + QS + j, LE);
        ByteVector q7 = ByteVector.fromMemorySegment(B, r7, o + QS + j, LE);
        for (int p = 0; p < PARTS; p++) {
          FloatVector xv = FloatVector.fromArray(F, x, xo + j + p * FL);
          t0 = ((FloatVector) q0.castShape(F, p)).mul(d0).fma(xv, t0);
          t1 = ((FloatVector) q1.castShape(F, p)).mul(d1).fma(xv, t1);
          t2 = ((FloatVector) q2.castShape(F, p)).mul(d2).fma(xv, t2);
          t3 = ((FloatVector) q3.castShape(F, p)).mul(d3).fma(xv, t3);
          t4 = ((FloatVector) q4.castShape(F, p)).mul(d4).fma(xv, t4);
          t5 = ((FloatVector) q5.castShape(F, p)).mul(d5).fma(xv, t5);
          t6 = ((FloatVector) q6.castShape(F, p)).mul(d6).fma(xv, t6);
          t7 = ((FloatVector) q7.castShape(F, p)).mul(d7).fma(xv, t7);
        }
      }
    }
    if (FL == 16) {
      // as rows8x2, t0..t3 where tile4x4 has t00..t30 and t4..t7 at t02..t32, zeros elsewhere
      float[] lanes = LANES.get();
      FloatVector z = FloatVector.zero(F);
      FloatVector r80 = t0.blend(t1, M8).add(t1.blend(t0, M8).rearrange(X8));
      FloatVector r81 = t2.blend(t3, M8).add(t3.blend(t2, M8).rearrange(X8));
      FloatVector r84 = t4.blend(t5, M8).add(t5.blend(t4, M8).rearrange(X8));
      FloatVector r85 = t6.blend(t7, M8).add(t7.blend(t6, M8).rearrange(X8));
      FloatVector r40 = r80.blend(r81, M4).add(r81.blend(r80, M4).rearrange(X4));
      FloatVector r42 = r84.blend(r85, M4).add(r85.blend(r84, M4).rearrange(X4));
      FloatVector r20 = r40.blend(z, M2).add(z.blend(r40, M2).rearrange(X2));
      FloatVector r21 = r42.blend(z, M2).add(z.blend(r42, M2).rearrange(X2));
      r20.blend(r21, M1).add(r21.blend(r20, M1).rearrange(X1)).intoArray(lanes, 0);
      for (int i = 0; i < 4; i++) {
        int lane = LANE_OF[i];
        out[ob + row + i * q] = lanes[lane];
        out[ob + row + (4 + i) * q] = lanes[lane + 1];
      }
      return;
    }
    out[ob + row] = Simd.sumLanes(t0);
    out[ob + row + 1 * q] = Simd.sumLanes(t1);
    out[ob + row + 2 * q] = Simd.sumLanes(t2);
    out[ob + row + 3 * q] = Simd.sumLanes(t3);
    out[ob + row + 4 * q] = Simd.sumLanes(t4);
    out[ob + row + 5 * q] = Simd.sumLanes(t5);
    out[ob + row + 6 * q] = Simd.sumLanes(t6);
    out[ob + row + 7 * q] = Simd.sumLanes(t7);
  }

  /**
   * {@link #rows8} with four weight rows {@code q} rows apart, for 8-lane vectors (AVX2): eight
   * rows' accumulators and scales do not fit AVX2's sixteen vector registers with the activations
   * and the widened weights, and the spilled kernel cost 18-25% more CPU time per decode token than
   * four rows (one thread, all of the 110m model's matrices from memory, `DecodeMatvecCpuMain`).
   * Four streams still run in parallel for the prefetcher. Each row in exactly {@link #dot}'s
   * order.
   */
  private void rows4(int row, int q, float[] x, int xb, float[] out, int ob) {
    MemorySegment r0 = rowSlice(row);
    MemorySegment r1 = rowSlice(row + q);
    MemorySegment r2 = rowSlice(row + 2L * q);
    MemorySegment r3 = rowSlice(row + 3L * q);
    FloatVector t0 = FloatVector.zero(F);
    FloatVector t1 = t0;
    FloatVector t2 = t0;
    FloatVector t3 = t0;
    int blocks = cols / BLOCK;
    for (int b = 0; b < blocks; b++) {
      int o = b * BYTES;
      int xo = xb + b * BLOCK;
      FloatVector d0 = FloatVector.broadcast(F, Float.float16ToFloat(r0.get(SHORT_LE, o)));
      FloatVector d1 = FloatVector.broadcast(F, Float.float16ToFloat(r1.get(SHORT_LE, o)));
      FloatVector d2 = FloatVector.broadcast(F, Float.float16ToFloat(r2.get(SHORT_LE, o)));
      FloatVector d3 = FloatVector.broadcast(F, Float.float16ToFloat(r3.get(SHORT_LE, o)));
      for (int j = 0; j < BLOCK; j += BL) {
        ByteVector q0 = ByteVector.fromMemorySegment(B, r0, o + QS + j, LE);
        ByteVector q1 = ByteVector.fromMemorySegment(B, r1, o + QS + j, LE);
        ByteVector q2 = ByteVector.fromMemorySegment(B, r2, o + QS + j, LE);
        ByteVector q3 = ByteVector.fromMemorySegment(B, r3, o + QS + j, LE);
        for (int p = 0; p < PARTS; p++) {
          FloatVector xv = FloatVector.fromArray(F, x, xo + j + p * FL);
          t0 = ((FloatVector) q0.castShape(F, p)).mul(d0).fma(xv, t0);
          t1 = ((FloatVector) q1.castShape(F, p)).mul(d1).fma(xv, t1);
          t2 = ((FloatVector) q2.castShape(F, p)).mul(d2).fma(xv, t2);
          t3 = ((FloatVector) q3.castShape(F, p)).mul(d3).fma(xv, t3);
        }
      }
    }
    out[ob + row] = Simd.sumLanes(t0);
    out[ob + row + q] = Simd.sumLanes(t1);
    out[ob + row + 2 * q] = Simd.sumLanes(t2);
    out[ob + row + 3 * q] = Simd.sumLanes(t3);
  }

  @Override
  protected boolean hasPanel() {
    return true;
  }

  @Override
  protected void decodeRow(int row, float[] out, int off) {
    MemorySegment r = rowSlice(row);
    int blocks = cols / BLOCK;
    for (int b = 0; b < blocks; b++) {
      int block = b * BYTES;
      int xo = off + b * BLOCK;
      FloatVector d = FloatVector.broadcast(F, Float.float16ToFloat(r.get(SHORT_LE, block)));
      for (int j = 0; j < BLOCK; j += BL) {
        ByteVector q = ByteVector.fromMemorySegment(B, r, block + QS + j, LE);
        for (int p = 0; p < PARTS; p++) {
          ((FloatVector) q.castShape(F, p)).mul(d).intoArray(out, xo + j + p * FL);
        }
      }
    }
  }

  @Override
  protected void dot4(
      int row,
      float[] x,
      int x0,
      int x1,
      int x2,
      int x3,
      float[] out,
      int o0,
      int o1,
      int o2,
      int o3) {
    MemorySegment r = rowSlice(row);
    FloatVector total0 = FloatVector.zero(F);
    FloatVector total1 = FloatVector.zero(F);
    FloatVector total2 = FloatVector.zero(F);
    FloatVector total3 = FloatVector.zero(F);
    int blocks = cols / BLOCK;
    for (int b = 0; b < blocks; b++) {
      int block = b * BYTES;
      int xo = b * BLOCK;
      FloatVector d = FloatVector.broadcast(F, Float.float16ToFloat(r.get(SHORT_LE, block)));
      for (int j = 0; j < BLOCK; j += BL) {
        ByteVector q = ByteVector.fromMemorySegment(B, r, block + QS + j, LE);
        for (int p = 0; p < PARTS; p++) {
          FloatVector w = ((FloatVector) q.castShape(F, p)).mul(d);
          int i = xo + j + p * FL;
          total0 = w.fma(FloatVector.fromArray(F, x, x0 + i), total0);
          total1 = w.fma(FloatVector.fromArray(F, x, x1 + i), total1);
          total2 = w.fma(FloatVector.fromArray(F, x, x2 + i), total2);
          total3 = w.fma(FloatVector.fromArray(F, x, x3 + i), total3);
        }
      }
    }
    out[o0] = Simd.sumLanes(total0);
    out[o1] = Simd.sumLanes(total1);
    out[o2] = Simd.sumLanes(total2);
    out[o3] = Simd.sumLanes(total3);
  }
}
