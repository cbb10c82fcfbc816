package io.kvslim.tensor;

import static io.kvslim.tensor.Simd.F;
import static io.kvslim.tensor.Simd.FL;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorShuffle;

/**
 * Prefill and batched-decode matmul over a panel of dequantized weights: a type decodes a chunk of
 * weight rows once into float panels of four rows (exactly the per-element weights its {@code dot}
 * multiplies, in the same order), then each panel meets the activation rows a cache-sized block at
 * a time in register-blocked F32 tiles: four weight rows by four activation rows with 16-lane
 * vectors (AVX-512), by three with 8-lane vectors (AVX2's sixteen registers). The per-element work
 * of decoding is paid once per chunk instead of once per activation tile, and the inner loop is
 * loads and fused multiply-adds only. Products are bit-identical to the type's {@code dot} when its
 * {@code dot} accumulates {@code w.fma(x, total)} element run by element run, as Q8_0 and Q4_0 do.
 */
final class PanelKernel {
  private PanelKernel() {}

  static final VectorMask<Float> M8 = bit(8);
  static final VectorMask<Float> M4 = bit(4);
  static final VectorMask<Float> M2 = bit(2);
  static final VectorMask<Float> M1 = bit(1);
  static final VectorShuffle<Float> X8 = flip(8);
  static final VectorShuffle<Float> X4 = flip(4);
  static final VectorShuffle<Float> X2 = flip(2);
  static final VectorShuffle<Float> X1 = flip(1);

  /** Lanes whose index has {@code bit} set. */
  private static VectorMask<Float> bit(int bit) {
    boolean[] m = new boolean[FL];
    for (int i = 0; i < FL; i++) {
      m[i] = (i & bit) != 0;
    }
    return VectorMask.fromArray(F, m, 0);
  }

  /** Lane i takes lane {@code i ^ bit} (within the vector). */
  private static VectorShuffle<Float> flip(int bit) {
    return VectorShuffle.fromOp(F, i -> (i ^ bit) & (FL - 1));
  }

  /**
   * Where tile4x4's transposing lane sums leave weight row {@code i}'s product with the first
   * activation row; the second, third and fourth activation rows sit 2, 1 and 3 lanes further.
   */
  static final int[] LANE_OF = {0, 8, 4, 12};

  /**
   * Floats of decoded weights {@link WeightMatrix#matmulRows} holds at a time (1 MiB): the rows of
   * a chunk are decoded once and then meet every activation block.
   */
  static final int CHUNK_FLOATS = 1 << 18;

  /** Bytes of activation rows a block holds (160 KiB), to stay in a 512 KiB L2 with the panels. */
  private static final int BLOCK_BYTES = 160 << 10;

  /**
   * Activation rows per block for rows of {@code cols} floats: {@link #BLOCK_BYTES} worth, a
   * multiple of 12 (whole tiles of three and of four rows), at least 12.
   */
  static int activationBlock(int cols) {
    return Math.max(12, BLOCK_BYTES / (4 * cols) / 12 * 12);
  }

  private static final ThreadLocal<float[]> PANELS = ThreadLocal.withInitial(() -> new float[0]);

  /** Scratch floats after a panel: one vector per accumulator of the widest partial tile. */
  private static final int SCRATCH = 12 * 16;

  /**
   * A per-thread panel of at least {@code size} floats, plus {@link #SCRATCH} floats of scratch
   * after them that {@link #tiles} uses.
   */
  static float[] panel(int size) {
    float[] p = PANELS.get();
    if (p.length < size + SCRATCH) {
      p = new float[size + SCRATCH];
      PANELS.set(p);
    }
    return p;
  }

  /**
   * For the four weight rows {@code row..row+3} held in {@code panel[p..]} (row-major, {@code cols}
   * each): {@code out[t * rows + row + i] = panel_i · x_t} for every activation row {@code t0 <= t
   * < t1}; the tiles' lane sums go through the {@link #SCRATCH} floats at {@code panel[sc..]},
   * which must not overlap a panel.
   */
  static void tiles(
      float[] panel,
      int p,
      int sc,
      int cols,
      float[] x,
      int t0,
      int t1,
      float[] out,
      int row,
      int rows) {
    // tiles of four activation rows, the last five or fewer in the widest tiles that avoid a
    // one-row tile (a one-row tile is load-bound: five loads per four multiply-adds)
    int n = t1 - t0;
    int full = n % 4 == 1 && n >= 5 ? n / 4 - 1 : n / 4;
    int t = t0;
    for (int i = 0; i < full; i++, t += 4) {
      int x0 = t * cols;
      int o0 = t * rows + row;
      tile4x4(
          panel,
          p,
          sc,
          cols,
          x,
          x0,
          x0 + cols,
          x0 + 2 * cols,
          x0 + 3 * cols,
          out,
          o0,
          o0 + rows,
          o0 + 2 * rows,
          o0 + 3 * rows);
    }
    int left = t1 - t;
    if (left >= 3) {
      tile4x3(
          panel,
          p,
          sc,
          cols,
          x,
          t * cols,
          (t + 1) * cols,
          (t + 2) * cols,
          out,
          t * rows + row,
          (t + 1) * rows + row,
          (t + 2) * rows + row);
      t += 3;
      left -= 3;
    }
    if (left >= 2) {
      tile4x2(
          panel,
          p,
          sc,
          cols,
          x,
          t * cols,
          (t + 1) * cols,
          out,
          t * rows + row,
          (t + 1) * rows + row);
      t += 2;
      left -= 2;
    }
    if (left == 1) {
      tile4x1(panel, p, sc, cols, x, t * cols, out, t * rows + row);
    }
  }

  /**
   * Where the eight-lane transposing lane sums ({@link #tile4x3by8}, {@link #tile4x2}) leave weight
   * row {@code i}'s product with the first activation row of a pair; the second sits one lane
   * further.
   */
  private static final int[] LANE8_OF = {0, 4, 2, 6};

  /**
   * The products of the {@code panelRows} weight rows {@code row..} (a multiple of four) decoded
   * row-major in {@code panel} with all {@code n} activation rows: {@code out[t * rows + row + i] =
   * panel_i · x_t}. The activation rows go a block at a time ({@link #activationBlock}), every
   * panel of four rows passing over the block while it sits in the L2 cache; a panel against all n
   * rows at once streamed the whole activation matrix from L3 or memory once per four weight rows.
   * {@code panel} holds {@link #SCRATCH} floats after the rows. Each product keeps {@code dot}'s
   * order (each accumulator's lanes sum its own elements run by run), whatever the tiling.
   */
  static void chunk(
      float[] panel, int panelRows, int cols, float[] x, int n, float[] out, int row, int rows) {
    int block = activationBlock(cols);
    int sc = panelRows * cols;
    for (int t0 = 0; t0 < n; t0 += block) {
      int t1 = Math.min(n, t0 + block);
      for (int q = 0; q < panelRows; q += 4) {
        if (FL == 8) {
          tiles8(panel, q * cols, sc, cols, x, t0, t1, out, row + q, rows);
        } else {
          tiles(panel, q * cols, sc, cols, x, t0, t1, out, row + q, rows);
        }
      }
    }
  }

  /**
   * {@link #tiles} with eight-lane vectors (AVX2, sixteen vector registers): tiles of three
   * activation rows, each loaded once per run and multiplied with the four weight rows one after
   * another, so the twelve accumulators, three activation vectors and one weight vector fit the
   * sixteen registers (a 4×4 tile's sixteen accumulators and five operands do not: C2 spills them),
   * and the lane sums are transposed in registers instead of sixteen {@link
   * Simd#sumLanes(FloatVector)} calls; the last one or two rows (or four, as two pairs) in {@link
   * #tile4x2} and {@link #tile4x1}. Each product keeps {@code dot}'s order, whatever the tile.
   */
  private static void tiles8(
      float[] panel,
      int p,
      int sc,
      int cols,
      float[] x,
      int t0,
      int t1,
      float[] out,
      int row,
      int rows) {
    int n = t1 - t0;
    int triples = n % 3 == 1 && n >= 4 ? n / 3 - 1 : n / 3;
    int t = t0;
    for (int i = 0; i < triples; i++, t += 3) {
      tile4x3by8(
          panel,
          p,
          sc,
          cols,
          x,
          t * cols,
          (t + 1) * cols,
          (t + 2) * cols,
          out,
          t * rows + row,
          (t + 1) * rows + row,
          (t + 2) * rows + row);
    }
    for (; t + 2 <= t1; t += 2) {
      tile4x2(
          panel,
          p,
          sc,
          cols,
          x,
          t * cols,
          (t + 1) * cols,
          out,
          t * rows + row,
          (t + 1) * rows + row);
    }
    if (t < t1) {
      tile4x1(panel, p, sc, cols, x, t * cols, out, t * rows + row);
    }
  }

  /**
   * Four weight rows against three activation rows with eight-lane vectors: per run of eight
   * elements the three activation vectors are loaded, then each weight vector in turn with its
   * three multiply-adds. The lanes are summed by three levels of pairwise combining, each lane
   * following exactly the tree of {@link Simd#sumLanes(FloatVector)} for its own accumulator (see
   * {@link #tile4x4}), into two vectors: the first holds the first two activation rows' products
   * (weight row {@code i} at lane {@code LANE8_OF[i]}, the second row one lane further), the second
   * the third row's, beside zeros.
   */
  private static void tile4x3by8(
      float[] panel,
      int p,
      int sc,
      int cols,
      float[] x,
      int x0,
      int x1,
      int x2,
      float[] out,
      int o0,
      int o1,
      int o2) {
    FloatVector t00 = FloatVector.zero(F);
    FloatVector t01 = FloatVector.zero(F);
    FloatVector t02 = FloatVector.zero(F);
    FloatVector t10 = FloatVector.zero(F);
    FloatVector t11 = FloatVector.zero(F);
    FloatVector t12 = FloatVector.zero(F);
    FloatVector t20 = FloatVector.zero(F);
    FloatVector t21 = FloatVector.zero(F);
    FloatVector t22 = FloatVector.zero(F);
    FloatVector t30 = FloatVector.zero(F);
    FloatVector t31 = FloatVector.zero(F);
    FloatVector t32 = FloatVector.zero(F);
    int c1 = cols;
    int c2 = 2 * cols;
    int c3 = 3 * cols;
    for (int e = 0; e < cols; e += FL) {
      FloatVector v0 = FloatVector.fromArray(F, x, x0 + e);
      FloatVector v1 = FloatVector.fromArray(F, x, x1 + e);
      FloatVector v2 = FloatVector.fromArray(F, x, x2 + e);
      FloatVector w = FloatVector.fromArray(F, panel, p + e);
      t00 = w.fma(v0, t00);
      t01 = w.fma(v1, t01);
      t02 = w.fma(v2, t02);
      w = FloatVector.fromArray(F, panel, p + c1 + e);
      t10 = w.fma(v0, t10);
      t11 = w.fma(v1, t11);
      t12 = w.fma(v2, t12);
      w = FloatVector.fromArray(F, panel, p + c2 + e);
      t20 = w.fma(v0, t20);
      t21 = w.fma(v1, t21);
      t22 = w.fma(v2, t22);
      w = FloatVector.fromArray(F, panel, p + c3 + e);
      t30 = w.fma(v0, t30);
      t31 = w.fma(v1, t31);
      t32 = w.fma(v2, t32);
    }
    FloatVector z = FloatVector.zero(F);
    FloatVector r4_0 = t00.blend(t10, M4).add(t10.blend(t00, M4).rearrange(X4));
    FloatVector r4_1 = t20.blend(t30, M4).add(t30.blend(t20, M4).rearrange(X4));
    FloatVector r4_2 = t01.blend(t11, M4).add(t11.blend(t01, M4).rearrange(X4));
    FloatVector r4_3 = t21.blend(t31, M4).add(t31.blend(t21, M4).rearrange(X4));
    FloatVector r4_4 = t02.blend(t12, M4).add(t12.blend(t02, M4).rearrange(X4));
    FloatVector r4_5 = t22.blend(t32, M4).add(t32.blend(t22, M4).rearrange(X4));
    FloatVector r2_0 = r4_0.blend(r4_1, M2).add(r4_1.blend(r4_0, M2).rearrange(X2));
    FloatVector r2_1 = r4_2.blend(r4_3, M2).add(r4_3.blend(r4_2, M2).rearrange(X2));
    FloatVector r2_2 = r4_4.blend(r4_5, M2).add(r4_5.blend(r4_4, M2).rearrange(X2));
    r2_0.blend(r2_1, M1).add(r2_1.blend(r2_0, M1).rearrange(X1)).intoArray(panel, sc);
    r2_2.blend(z, M1).add(z.blend(r2_2, M1).rearrange(X1)).intoArray(panel, sc + 8);
    for (int i = 0; i < 4; i++) {
      int lane = LANE8_OF[i];
      out[o0 + i] = panel[sc + lane];
      out[o1 + i] = panel[sc + lane + 1];
      out[o2 + i] = panel[sc + 8 + lane];
    }
  }

  /** {@link #tile4x4} for three activation rows; each product in the same order. */
  private static void tile4x3(
      float[] panel,
      int p,
      int sc,
      int cols,
      float[] x,
      int x0,
      int x1,
      int x2,
      float[] out,
      int o0,
      int o1,
      int o2) {
    FloatVector t00 = FloatVector.zero(F);
    FloatVector t01 = FloatVector.zero(F);
    FloatVector t02 = FloatVector.zero(F);
    FloatVector t10 = FloatVector.zero(F);
    FloatVector t11 = FloatVector.zero(F);
    FloatVector t12 = FloatVector.zero(F);
    FloatVector t20 = FloatVector.zero(F);
    FloatVector t21 = FloatVector.zero(F);
    FloatVector t22 = FloatVector.zero(F);
    FloatVector t30 = FloatVector.zero(F);
    FloatVector t31 = FloatVector.zero(F);
    FloatVector t32 = FloatVector.zero(F);
    int c1 = cols;
    int c2 = 2 * cols;
    int c3 = 3 * cols;
    for (int e = 0; e < cols; e += FL) {
      FloatVector w0 = FloatVector.fromArray(F, panel, p + e);
      FloatVector w1 = FloatVector.fromArray(F, panel, p + c1 + e);
      FloatVector w2 = FloatVector.fromArray(F, panel, p + c2 + e);
      FloatVector w3 = FloatVector.fromArray(F, panel, p + c3 + e);
      FloatVector v0 = FloatVector.fromArray(F, x, x0 + e);
      t00 = w0.fma(v0, t00);
      t10 = w1.fma(v0, t10);
      t20 = w2.fma(v0, t20);
      t30 = w3.fma(v0, t30);
      FloatVector v1 = FloatVector.fromArray(F, x, x1 + e);
      t01 = w0.fma(v1, t01);
      t11 = w1.fma(v1, t11);
      t21 = w2.fma(v1, t21);
      t31 = w3.fma(v1, t31);
      FloatVector v2 = FloatVector.fromArray(F, x, x2 + e);
      t02 = w0.fma(v2, t02);
      t12 = w1.fma(v2, t12);
      t22 = w2.fma(v2, t22);
      t32 = w3.fma(v2, t32);
    }
    if (FL == 16) {
      // tile4x4's transposing lane sums with a zero fourth activation row: each lane depends only
      // on its own accumulator, so the three real rows get exactly tile4x4's bits
      FloatVector z = FloatVector.zero(F);
      FloatVector r8_0 = t00.blend(t10, M8).add(t10.blend(t00, M8).rearrange(X8));
      FloatVector r8_1 = t20.blend(t30, M8).add(t30.blend(t20, M8).rearrange(X8));
      FloatVector r8_2 = t01.blend(t11, M8).add(t11.blend(t01, M8).rearrange(X8));
      FloatVector r8_3 = t21.blend(t31, M8).add(t31.blend(t21, M8).rearrange(X8));
      FloatVector r8_4 = t02.blend(t12, M8).add(t12.blend(t02, M8).rearrange(X8));
      FloatVector r8_5 = t22.blend(t32, M8).add(t32.blend(t22, M8).rearrange(X8));
      FloatVector r4_0 = r8_0.blend(r8_1, M4).add(r8_1.blend(r8_0, M4).rearrange(X4));
      FloatVector r4_1 = r8_2.blend(r8_3, M4).add(r8_3.blend(r8_2, M4).rearrange(X4));
      FloatVector r4_2 = r8_4.blend(r8_5, M4).add(r8_5.blend(r8_4, M4).rearrange(X4));
      FloatVector r2_0 = r4_0.blend(r4_1, M2).add(r4_1.blend(r4_0, M2).rearrange(X2));
      FloatVector r2_1 = r4_2.blend(z, M2).add(z.blend(r4_2, M2).rearrange(X2));
      r2_0.blend(r2_1, M1).add(r2_1.blend(r2_0, M1).rearrange(X1)).intoArray(panel, sc);
      for (int i = 0; i < 4; i++) {
        int lane = LANE_OF[i];
        out[o0 + i] = panel[sc + lane];
        out[o1 + i] = panel[sc + lane + 2];
        out[o2 + i] = panel[sc + lane + 1];
      }
      return;
    }
    // lane sums in scalar code from the scratch after the panel (see Simd.sumLanes(float[], int))
    t00.intoArray(panel, sc);
    t10.intoArray(panel, sc + FL);
    t20.intoArray(panel, sc + 2 * FL);
    t30.intoArray(panel, sc + 3 * FL);
    t01.intoArray(panel, sc + 4 * FL);
    t11.intoArray(panel, sc + 5 * FL);
    t21.intoArray(panel, sc + 6 * FL);
    t31.intoArray(panel, sc + 7 * FL);
    t02.intoArray(panel, sc + 8 * FL);
    t12.intoArray(panel, sc + 9 * FL);
    t22.intoArray(panel, sc + 10 * FL);
    t32.intoArray(panel, sc + 11 * FL);
    for (int i = 0; i < 4; i++) {
      out[o0 + i] = Simd.sumLanes(panel, sc + i * FL);
      out[o1 + i] = Simd.sumLanes(panel, sc + (4 + i) * FL);
      out[o2 + i] = Simd.sumLanes(panel, sc + (8 + i) * FL);
    }
  }

  /** {@link #tile4x4} for two activation rows; each product in the same order. */
  private static void tile4x2(
      float[] panel,
      int p,
      int sc,
      int cols,
      float[] x,
      int x0,
      int x1,
      float[] out,
      int o0,
      int o1) {
    FloatVector t00 = FloatVector.zero(F);
    FloatVector t01 = FloatVector.zero(F);
    FloatVector t10 = FloatVector.zero(F);
    FloatVector t11 = FloatVector.zero(F);
    FloatVector t20 = FloatVector.zero(F);
    FloatVector t21 = FloatVector.zero(F);
    FloatVector t30 = FloatVector.zero(F);
    FloatVector t31 = FloatVector.zero(F);
    int c1 = cols;
    int c2 = 2 * cols;
    int c3 = 3 * cols;
    for (int e = 0; e < cols; e += FL) {
      FloatVector w0 = FloatVector.fromArray(F, panel, p + e);
      FloatVector w1 = FloatVector.fromArray(F, panel, p + c1 + e);
      FloatVector w2 = FloatVector.fromArray(F, panel, p + c2 + e);
      FloatVector w3 = FloatVector.fromArray(F, panel, p + c3 + e);
      FloatVector v0 = FloatVector.fromArray(F, x, x0 + e);
      FloatVector v1 = FloatVector.fromArray(F, x, x1 + e);
      t00 = w0.fma(v0, t00);
      t10 = w1.fma(v0, t10);
      t20 = w2.fma(v0, t20);
      t30 = w3.fma(v0, t30);
      t01 = w0.fma(v1, t01);
      t11 = w1.fma(v1, t11);
      t21 = w2.fma(v1, t21);
      t31 = w3.fma(v1, t31);
    }
    if (FL == 16) {
      // tile4x4's transposing lane sums with zero third and fourth rows (see tile4x3)
      FloatVector z = FloatVector.zero(F);
      FloatVector r8_0 = t00.blend(t10, M8).add(t10.blend(t00, M8).rearrange(X8));
      FloatVector r8_1 = t20.blend(t30, M8).add(t30.blend(t20, M8).rearrange(X8));
      FloatVector r8_2 = t01.blend(t11, M8).add(t11.blend(t01, M8).rearrange(X8));
      FloatVector r8_3 = t21.blend(t31, M8).add(t31.blend(t21, M8).rearrange(X8));
      FloatVector r4_0 = r8_0.blend(r8_1, M4).add(r8_1.blend(r8_0, M4).rearrange(X4));
      FloatVector r4_1 = r8_2.blend(r8_3, M4).add(r8_3.blend(r8_2, M4).rearrange(X4));
      FloatVector r2_0 = r4_0.blend(r4_1, M2).add(r4_1.blend(r4_0, M2).rearrange(X2));
      r2_0.blend(z, M1).add(z.blend(r2_0, M1).rearrange(X1)).intoArray(panel, sc);
      for (int i = 0; i < 4; i++) {
        int lane = LANE_OF[i];
        out[o0 + i] = panel[sc + lane];
        out[o1 + i] = panel[sc + lane + 2];
      }
      return;
    }
    if (FL == 8) {
      // the eight accumulators' lane sums in one vector (see tile4x3by8)
      FloatVector r4_0 = t00.blend(t10, M4).add(t10.blend(t00, M4).rearrange(X4));
      FloatVector r4_1 = t20.blend(t30, M4).add(t30.blend(t20, M4).rearrange(X4));
      FloatVector r4_2 = t01.blend(t11, M4).add(t11.blend(t01, M4).rearrange(X4));
      FloatVector r4_3 = t21.blend(t31, M4).add(t31.blend(t21, M4).rearrange(X4));
      FloatVector r2_0 = r4_0.blend(r4_1, M2).add(r4_1.blend(r4_0, M2).rearrange(X2));
      FloatVector r2_1 = r4_2.blend(r4_3, M2).add(r4_3.blend(r4_2, M2).rearrange(X2));
      r2_0.blend(r2_1, M1).add(r2_1.blend(r2_0, M1).rearrange(X1)).intoArray(panel, sc);
      for (int i = 0; i < 4; i++) {
        int lane = LANE8_OF[i];
        out[o0 + i] = panel[sc + lane];
        out[o1 + i] = panel[sc + lane + 1];
      }
      return;
    }
    t00.intoArray(panel, sc);
    t10.intoArray(panel, sc + FL);
    t20.intoArray(panel, sc + 2 * FL);
    t30.intoArray(panel, sc + 3 * FL);
    t01.intoArray(panel, sc + 4 * FL);
    t11.intoArray(panel, sc + 5 * FL);
    t21.intoArray(panel, sc + 6 * FL);
    t31.intoArray(panel, sc + 7 * FL);
    for (int i = 0; i < 4; i++) {
      out[o0 + i] = Simd.sumLanes(panel, sc + i * FL);
      out[o1 + i] = Simd.sumLanes(panel, sc + (4 + i) * FL);
    }
  }

  /** {@link #tile4x4} for one activation row; each product in the same order. */
  private static void tile4x1(
      float[] panel, int p, int sc, int cols, float[] x, int x0, float[] out, int o0) {
    FloatVector t0 = FloatVector.zero(F);
    FloatVector t1 = FloatVector.zero(F);
    FloatVector t2 = FloatVector.zero(F);
    FloatVector t3 = FloatVector.zero(F);
    int c1 = cols;
    int c2 = 2 * cols;
    int c3 = 3 * cols;
    for (int e = 0; e < cols; e += FL) {
      FloatVector v = FloatVector.fromArray(F, x, x0 + e);
      t0 = FloatVector.fromArray(F, panel, p + e).fma(v, t0);
      t1 = FloatVector.fromArray(F, panel, p + c1 + e).fma(v, t1);
      t2 = FloatVector.fromArray(F, panel, p + c2 + e).fma(v, t2);
      t3 = FloatVector.fromArray(F, panel, p + c3 + e).fma(v, t3);
    }
    if (FL == 16) {
      // tile4x4's transposing lane sums with zero second to fourth rows (see tile4x3)
      FloatVector z = FloatVector.zero(F);
      FloatVector r8_0 = t0.blend(t1, M8).add(t1.blend(t0, M8).rearrange(X8));
      FloatVector r8_1 = t2.blend(t3, M8).add(t3.blend(t2, M8).rearrange(X8));
      FloatVector r4_0 = r8_0.blend(r8_1, M4).add(r8_1.blend(r8_0, M4).rearrange(X4));
      FloatVector r2_0 = r4_0.blend(z, M2).add(z.blend(r4_0, M2).rearrange(X2));
      r2_0.blend(z, M1).add(z.blend(r2_0, M1).rearrange(X1)).intoArray(panel, sc);
      for (int i = 0; i < 4; i++) {
        out[o0 + i] = panel[sc + LANE_OF[i]];
      }
      return;
    }
    t0.intoArray(panel, sc);
    t1.intoArray(panel, sc + FL);
    t2.intoArray(panel, sc + 2 * FL);
    t3.intoArray(panel, sc + 3 * FL);
    for (int i = 0; i < 4; i++) {
      out[o0 + i] = Simd.sumLanes(panel, sc + i * FL);
    }
  }

  private static void tile4x4(
      float[] panel,
      int p,
      int sc,
      int cols,
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
    int c1 = cols;
    int c2 = 2 * cols;
    int c3 = 3 * cols;
    for (int e = 0; e < cols; e += FL) {
      FloatVector w0 = FloatVector.fromArray(F, panel, p + e);
      FloatVector w1 = FloatVector.fromArray(F, panel, p + c1 + e);
      FloatVector w2 = FloatVector.fromArray(F, panel, p + c2 + e);
      FloatVector w3 = FloatVector.fromArray(F, panel, p + c3 + e);
      FloatVector v0 = FloatVector.fromArray(F, x, x0 + e);
      t00 = w0.fma(v0, t00);
      t10 = w1.fma(v0, t10);
      t20 = w2.fma(v0, t20);
      t30 = w3.fma(v0, t30);
      FloatVector v1 = FloatVector.fromArray(F, x, x1 + e);
      t01 = w0.fma(v1, t01);
      t11 = w1.fma(v1, t11);
      t21 = w2.fma(v1, t21);
      t31 = w3.fma(v1, t31);
      FloatVector v2 = FloatVector.fromArray(F, x, x2 + e);
      t02 = w0.fma(v2, t02);
      t12 = w1.fma(v2, t12);
      t22 = w2.fma(v2, t22);
      t32 = w3.fma(v2, t32);
      FloatVector v3 = FloatVector.fromArray(F, x, x3 + e);
      t03 = w0.fma(v3, t03);
      t13 = w1.fma(v3, t13);
      t23 = w2.fma(v3, t23);
      t33 = w3.fma(v3, t33);
    }
    if (FL == 16) {
      // the sixteen lane sums together: four levels of pairwise combining, each lane following
      // exactly the tree of Simd.sumLanes for its own accumulator (addition commutes exactly)
      int scratch = sc;
      FloatVector r8_0 = t00.blend(t10, M8).add(t10.blend(t00, M8).rearrange(X8));
      FloatVector r8_1 = t20.blend(t30, M8).add(t30.blend(t20, M8).rearrange(X8));
      FloatVector r8_2 = t01.blend(t11, M8).add(t11.blend(t01, M8).rearrange(X8));
      FloatVector r8_3 = t21.blend(t31, M8).add(t31.blend(t21, M8).rearrange(X8));
      FloatVector r8_4 = t02.blend(t12, M8).add(t12.blend(t02, M8).rearrange(X8));
      FloatVector r8_5 = t22.blend(t32, M8).add(t32.blend(t22, M8).rearrange(X8));
      FloatVector r8_6 = t03.blend(t13, M8).add(t13.blend(t03, M8).rearrange(X8));
      FloatVector r8_7 = t23.blend(t33, M8).add(t33.blend(t23, M8).rearrange(X8));
      FloatVector r4_0 = r8_0.blend(r8_1, M4).add(r8_1.blend(r8_0, M4).rearrange(X4));
      FloatVector r4_1 = r8_2.blend(r8_3, M4).add(r8_3.blend(r8_2, M4).rearrange(X4));
      FloatVector r4_2 = r8_4.blend(r8_5, M4).add(r8_5.blend(r8_4, M4).rearrange(X4));
      FloatVector r4_3 = r8_6.blend(r8_7, M4).add(r8_7.blend(r8_6, M4).rearrange(X4));
      FloatVector r2_0 = r4_0.blend(r4_1, M2).add(r4_1.blend(r4_0, M2).rearrange(X2));
      FloatVector r2_1 = r4_2.blend(r4_3, M2).add(r4_3.blend(r4_2, M2).rearrange(X2));
      FloatVector r1_0 = r2_0.blend(r2_1, M1).add(r2_1.blend(r2_0, M1).rearrange(X1));
      r1_0.intoArray(panel, scratch);
      out[o0 + 0] = panel[scratch + 0];
      out[o2 + 0] = panel[scratch + 1];
      out[o1 + 0] = panel[scratch + 2];
      out[o3 + 0] = panel[scratch + 3];
      out[o0 + 2] = panel[scratch + 4];
      out[o2 + 2] = panel[scratch + 5];
      out[o1 + 2] = panel[scratch + 6];
      out[o3 + 2] = panel[scratch + 7];
      out[o0 + 1] = panel[scratch + 8];
      out[o2 + 1] = panel[scratch + 9];
      out[o1 + 1] = panel[scratch + 10];
      out[o3 + 1] = panel[scratch + 11];
      out[o0 + 3] = panel[scratch + 12];
      out[o2 + 3] = panel[scratch + 13];
      out[o1 + 3] = panel[scratch + 14];
      out[o3 + 3] = panel[scratch + 15];
    } else {
      out[o0 + 0] = Simd.sumLanes(t00);
      out[o0 + 1] = Simd.sumLanes(t10);
      out[o0 + 2] = Simd.sumLanes(t20);
      out[o0 + 3] = Simd.sumLanes(t30);
      out[o1 + 0] = Simd.sumLanes(t01);
      out[o1 + 1] = Simd.sumLanes(t11);
      out[o1 + 2] = Simd.sumLanes(t21);
      out[o1 + 3] = Simd.sumLanes(t31);
      out[o2 + 0] = Simd.sumLanes(t02);
      out[o2 + 1] = Simd.sumLanes(t12);
      out[o2 + 2] = Simd.sumLanes(t22);
      out[o2 + 3] = Simd.sumLanes(t32);
      out[o3 + 0] = Simd.sumLanes(t03);
      out[o3 + 1] = Simd.sumLanes(t13);
      out[o3 + 2] = Simd.sumLanes(t23);
      out[o3 + 3] = Simd.sumLanes(t33);
    }
  }
}
