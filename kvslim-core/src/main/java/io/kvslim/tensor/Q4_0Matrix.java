package io.kvslim.tensor;

import static io.kvslim.ggml.Q4_0Codec.BLOCK;
import static io.kvslim.ggml.Q4_0Codec.BYTES;
import static io.kvslim.ggml.Q4_0Codec.QS;
import static io.kvslim.tensor.Simd.B;
import static io.kvslim.tensor.Simd.BL;
import static io.kvslim.tensor.Simd.F;
import static io.kvslim.tensor.Simd.FL;
import static io.kvslim.tensor.Simd.I;
import static io.kvslim.tensor.Simd.LE;
import static io.kvslim.tensor.Simd.PARTS;
import static io.kvslim.tensor.Simd.SHORT_LE;

import io.kvslim.ggml.Q4_0Codec;
import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;

/**
 * Q4_0 weights: blocks of 32 elements in 18 bytes, an fp16 scale {@code d} then 16 bytes of
 * nibbles; element {@code j} is {@code d·(q_j − 8)}. The layout's offsets, the dequantization and
 * the scalar reference come from {@link Q4_0Codec}; this class holds the Vector API kernels.
 */
public final class Q4_0Matrix extends WeightMatrix {
  /**
   * With at least eight float lanes a nibble becomes its float by a table lookup: the two vectors
   * {@link #TABLE1} and {@link #TABLE2} hold {@code k - 8} for k = 0..15 (scaled by the block's d),
   * and a two-vector {@code selectFrom} wraps its index modulo twice the lane count, so the low
   * nibble needs no mask. Narrower vectors mask, subtract and widen instead; both give {@code (k -
   * 8) * d}, so every width computes the same products.
   */
  private static final boolean LUT = FL >= 8;

  private static final FloatVector TABLE1 = table(0);
  private static final FloatVector TABLE2 = table(FL);

  private static FloatVector table(int first) {
    float[] t = new float[FL];
    for (int i = 0; i < FL; i++) {
      t[i] = ((first + i) % 16) - 8;
    }
    return FloatVector.fromArray(F, t, 0);
  }

  public Q4_0Matrix(MemorySegment data, int rows, int cols) {
    super(data, rows, cols, GgmlType.Q4_0);
  }

  @Override
  public GgmlType type() {
    return GgmlType.Q4_0;
  }

  /**
   * Every kernel of this type computes a row's product in the same order, so results are
   * bit-identical whichever kernel runs: per block, the low-nibble run then the high-nibble run of
   * each {@code BL} bytes, each as {@code (k - 8) * d} fused-multiply-added into one lane-wise
   * total; the lanes are summed last ({@link Simd#sumLanes}).
   */
  @Override
  public float dot(int row, float[] x, int xOffset) {
    long b0 = row * rowBytes;
    int x0 = xOffset;
    FloatVector t00 = FloatVector.zero(F);
    int blocks = cols / BLOCK;
    for (int b = 0; b < blocks; b++) {
      long r0 = b0 + (long) b * BYTES;
      int xo = b * BLOCK;
      float d0 = Float.float16ToFloat(data.get(SHORT_LE, r0));
      if (LUT) {
        IntVector u0 = TABLE1.mul(d0).reinterpretAsInts();
        IntVector v0 = TABLE2.mul(d0).reinterpretAsInts();
        for (int j = 0; j < BLOCK / 2; j += BL) {
          IntVector q0 =
              (IntVector)
                  ByteVector.fromMemorySegment(B, data, r0 + QS + j, LE)
                      .convertShape(VectorOperators.ZERO_EXTEND_B2I, I, 0);
          FloatVector l0 = q0.selectFrom(u0, v0).reinterpretAsFloats();
          FloatVector h0 =
              q0.lanewise(VectorOperators.LSHR, 4).selectFrom(u0, v0).reinterpretAsFloats();
          FloatVector xl0 = FloatVector.fromArray(F, x, x0 + xo + j);
          FloatVector xh0 = FloatVector.fromArray(F, x, x0 + xo + BLOCK / 2 + j);
          t00 = l0.fma(xl0, t00);
          t00 = h0.fma(xh0, t00);
        }
      } else {
        FloatVector e0 = FloatVector.broadcast(F, d0);
        for (int j = 0; j < BLOCK / 2; j += BL) {
          ByteVector q0 = ByteVector.fromMemorySegment(B, data, r0 + QS + j, LE);
          ByteVector l0 = q0.and((byte) 0x0F).sub((byte) 8);
          ByteVector h0 =
              q0.reinterpretAsShorts()
                  .lanewise(VectorOperators.LSHR, 4)
                  .reinterpretAsBytes()
                  .and((byte) 0x0F)
                  .sub((byte) 8);
          for (int p = 0; p < PARTS; p++) {
            FloatVector fl0 = ((FloatVector) l0.castShape(F, p)).mul(e0);
            FloatVector fh0 = ((FloatVector) h0.castShape(F, p)).mul(e0);
            FloatVector xl0 = FloatVector.fromArray(F, x, x0 + xo + j + p * FL);
            FloatVector xh0 = FloatVector.fromArray(F, x, x0 + xo + BLOCK / 2 + j + p * FL);
            t00 = fl0.fma(xl0, t00);
            t00 = fh0.fma(xh0, t00);
          }
        }
      }
    }
    return Simd.sumLanes(t00);
  }

  /**
   * With 16 float lanes one byte load holds a block's whole low-nibble run, so {@link #dot}
   * accumulates elements in index order, as the panel kernel does; narrower widths interleave the
   * low and high runs.
   */
  @Override
  protected boolean hasPanel() {
    return FL == 16;
  }

  @Override
  protected void decodeRow(int row, float[] out, int off) {
    long base = row * rowBytes;
    int blocks = cols / BLOCK;
    for (int b = 0; b < blocks; b++) {
      long block = base + (long) b * BYTES;
      int o = off + b * BLOCK;
      float d = Float.float16ToFloat(data.get(SHORT_LE, block));
      IntVector u = TABLE1.mul(d).reinterpretAsInts();
      IntVector v = TABLE2.mul(d).reinterpretAsInts();
      for (int j = 0; j < BLOCK / 2; j += BL) {
        IntVector q =
            (IntVector)
                ByteVector.fromMemorySegment(B, data, block + QS + j, LE)
                    .convertShape(VectorOperators.ZERO_EXTEND_B2I, I, 0);
        q.selectFrom(u, v).reinterpretAsFloats().intoArray(out, o + j);
        q.lanewise(VectorOperators.LSHR, 4)
            .selectFrom(u, v)
            .reinterpretAsFloats()
            .intoArray(out, o + BLOCK / 2 + j);
      }
    }
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
   * Decode: four weight rows {@code count / 4} apart per pass over x (four memory streams for the
   * hardware prefetcher, see {@link Q8_0Matrix#dotRows}), each row in exactly {@link #dot}'s order.
   */
  @Override
  public void dotRows(int row, int count, float[] x, float[] out) {
    dotRowsBy4(row, count, x, out);
  }

  @Override
  protected void rows4(int row, int q, float[] x, float[] out) {
    long b0 = row * rowBytes;
    long st = q * rowBytes;
    int x0 = 0;
    FloatVector t00 = FloatVector.zero(F);
    FloatVector t10 = FloatVector.zero(F);
    FloatVector t20 = FloatVector.zero(F);
    FloatVector t30 = FloatVector.zero(F);
    int blocks = cols / BLOCK;
    for (int b = 0; b < blocks; b++) {
      long r0 = b0 + (long) b * BYTES;
      long r1 = r0 + st;
      long r2 = r1 + st;
      long r3 = r2 + st;
      int xo = b * BLOCK;
      float d0 = Float.float16ToFloat(data.get(SHORT_LE, r0));
      float d1 = Float.float16ToFloat(data.get(SHORT_LE, r1));
      float d2 = Float.float16ToFloat(data.get(SHORT_LE, r2));
      float d3 = Float.float16ToFloat(data.get(SHORT_LE, r3));
      if (LUT) {
        IntVector u0 = TABLE1.mul(d0).reinterpretAsInts();
        IntVector v0 = TABLE2.mul(d0).reinterpretAsInts();
        IntVector u1 = TABLE1.mul(d1).reinterpretAsInts();
        IntVector v1 = TABLE2.mul(d1).reinterpretAsInts();
        IntVector u2 = TABLE1.mul(d2).reinterpretAsInts();
        IntVector v2 = TABLE2.mul(d2).reinterpretAsInts();
        IntVector u3 = TABLE1.mul(d3).reinterpretAsInts();
        IntVector v3 = TABLE2.mul(d3).reinterpretAsInts();
        for (int j = 0; j < BLOCK / 2; j += BL) {
          IntVector q0 =
              (IntVector)
                  ByteVector.fromMemorySegment(B, data, r0 + QS + j, LE)
                      .convertShape(VectorOperators.ZERO_EXTEND_B2I, I, 0);
          FloatVector l0 = q0.selectFrom(u0, v0).reinterpretAsFloats();
          FloatVector h0 =
              q0.lanewise(VectorOperators.LSHR, 4).selectFrom(u0, v0).reinterpretAsFloats();
          IntVector q1 =
              (IntVector)
                  ByteVector.fromMemorySegment(B, data, r1 + QS + j, LE)
                      .convertShape(VectorOperators.ZERO_EXTEND_B2I, I, 0);
          FloatVector l1 = q1.selectFrom(u1, v1).reinterpretAsFloats();
          FloatVector h1 =
              q1.lanewise(VectorOperators.LSHR, 4).selectFrom(u1, v1).reinterpretAsFloats();
          IntVector q2 =
              (IntVector)
                  ByteVector.fromMemorySegment(B, data, r2 + QS + j, LE)
                      .convertShape(VectorOperators.ZERO_EXTEND_B2I, I, 0);
          FloatVector l2 = q2.selectFrom(u2, v2).reinterpretAsFloats();
          FloatVector h2 =
              q2.lanewise(VectorOperators.LSHR, 4).selectFrom(u2, v2).reinterpretAsFloats();
          IntVector q3 =
              (IntVector)
                  ByteVector.fromMemorySegment(B, data, r3 + QS + j, LE)
                      .convertShape(VectorOperators.ZERO_EXTEND_B2I, I, 0);
          FloatVector l3 = q3.selectFrom(u3, v3).reinterpretAsFloats();
          FloatVector h3 =
              q3.lanewise(VectorOperators.LSHR, 4).selectFrom(u3, v3).reinterpretAsFloats();
          FloatVector xl0 = FloatVector.fromArray(F, x, x0 + xo + j);
          FloatVector xh0 = FloatVector.fromArray(F, x, x0 + xo + BLOCK / 2 + j);
          t00 = l0.fma(xl0, t00);
          t00 = h0.fma(xh0, t00);
          t10 = l1.fma(xl0, t10);
          t10 = h1.fma(xh0, t10);
          t20 = l2.fma(xl0, t20);
          t20 = h2.fma(xh0, t20);
          t30 = l3.fma(xl0, t30);
          t30 = h3.fma(xh0, t30);
        }
      } else {
        FloatVector e0 = FloatVector.broadcast(F, d0);
        FloatVector e1 = FloatVector.broadcast(F, d1);
        FloatVector e2 = FloatVector.broadcast(F, d2);
        FloatVector e3 = FloatVector.broadcast(F, d3);
        for (int j = 0; j < BLOCK / 2; j += BL) {
          ByteVector q0 = ByteVector.fromMemorySegment(B, data, r0 + QS + j, LE);
          ByteVector l0 = q0.and((byte) 0x0F).sub((byte) 8);
          ByteVector h0 =
              q0.reinterpretAsShorts()
                  .lanewise(VectorOperators.LSHR, 4)
                  .reinterpretAsBytes()
                  .and((byte) 0x0F)
                  .sub((byte) 8);
          ByteVector q1 = ByteVector.fromMemorySegment(B, data, r1 + QS + j, LE);
          ByteVector l1 = q1.and((byte) 0x0F).sub((byte) 8);
          ByteVector h1 =
              q1.reinterpretAsShorts()
                  .lanewise(VectorOperators.LSHR, 4)
                  .reinterpretAsBytes()
                  .and((byte) 0x0F)
                  .sub((byte) 8);
          ByteVector q2 = ByteVector.fromMemorySegment(B, data, r2 + QS + j, LE);
          ByteVector l2 = q2.and((byte) 0x0F).sub((byte) 8);
          ByteVector h2 =
              q2.reinterpretAsShorts()
                  .lanewise(VectorOperators.LSHR, 4)
                  .reinterpretAsBytes()
                  .and((byte) 0x0F)
                  .sub((byte) 8);
          ByteVector q3 = ByteVector.fromMemorySegment(B, data, r3 + QS + j, LE);
          ByteVector l3 = q3.and((byte) 0x0F).sub((byte) 8);
          ByteVector h3 =
              q3.reinterpretAsShorts()
                  .lanewise(VectorOperators.LSHR, 4)
                  .reinterpretAsBytes()
                  .and((byte) 0x0F)
                  .sub((byte) 8);
          for (int p = 0; p < PARTS; p++) {
            FloatVector fl0 = ((FloatVector) l0.castShape(F, p)).mul(e0);
            FloatVector fh0 = ((FloatVector) h0.castShape(F, p)).mul(e0);
            FloatVector fl1 = ((FloatVector) l1.castShape(F, p)).mul(e1);
            FloatVector fh1 = ((FloatVector) h1.castShape(F, p)).mul(e1);
            FloatVector fl2 = ((FloatVector) l2.castShape(F, p)).mul(e2);
            FloatVector fh2 = ((FloatVector) h2.castShape(F, p)).mul(e2);
            FloatVector fl3 = ((FloatVector) l3.castShape(F, p)).mul(e3);
            FloatVector fh3 = ((FloatVector) h3.castShape(F, p)).mul(e3);
            FloatVector xl0 = FloatVector.fromArray(F, x, x0 + xo + j + p * FL);
            FloatVector xh0 = FloatVector.fromArray(F, x, x0 + xo + BLOCK / 2 + j + p * FL);
            t00 = fl0.fma(xl0, t00);
            t00 = fh0.fma(xh0, t00);
            t10 = fl1.fma(xl0, t10);
            t10 = fh1.fma(xh0, t10);
            t20 = fl2.fma(xl0, t20);
            t20 = fh2.fma(xh0, t20);
            t30 = fl3.fma(xl0, t30);
            t30 = fh3.fma(xh0, t30);
          }
        }
      }
    }
    out[row + 0 * q] = Simd.sumLanes(t00);
    out[row + 1 * q] = Simd.sumLanes(t10);
    out[row + 2 * q] = Simd.sumLanes(t20);
    out[row + 3 * q] = Simd.sumLanes(t30);
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
    long b0 = row * rowBytes;
    FloatVector t00 = FloatVector.zero(F);
    FloatVector t01 = FloatVector.zero(F);
    FloatVector t02 = FloatVector.zero(F);
    FloatVector t03 = FloatVector.zero(F);
    int blocks = cols / BLOCK;
    for (int b = 0; b < blocks; b++) {
      long r0 = b0 + (long) b * BYTES;
      int xo = b * BLOCK;
      float d0 = Float.float16ToFloat(data.get(SHORT_LE, r0));
      if (LUT) {
        IntVector u0 = TABLE1.mul(d0).reinterpretAsInts();
        IntVector v0 = TABLE2.mul(d0).reinterpretAsInts();
        for (int j = 0; j < BLOCK / 2; j += BL) {
          IntVector q0 =
              (IntVector)
                  ByteVector.fromMemorySegment(B, data, r0 + QS + j, LE)
                      .convertShape(VectorOperators.ZERO_EXTEND_B2I, I, 0);
          FloatVector l0 = q0.selectFrom(u0, v0).reinterpretAsFloats();
          FloatVector h0 =
              q0.lanewise(VectorOperators.LSHR, 4).selectFrom(u0, v0).reinterpretAsFloats();
          FloatVector xl0 = FloatVector.fromArray(F, x, x0 + xo + j);
          FloatVector xh0 = FloatVector.fromArray(F, x, x0 + xo + BLOCK / 2 + j);
          t00 = l0.fma(xl0, t00);
          t00 = h0.fma(xh0, t00);
          FloatVector xl1 = FloatVector.fromArray(F, x, x1 + xo + j);
          FloatVector xh1 = FloatVector.fromArray(F, x, x1 + xo + BLOCK / 2 + j);
          t01 = l0.fma(xl1, t01);
          t01 = h0.fma(xh1, t01);
          FloatVector xl2 = FloatVector.fromArray(F, x, x2 + xo + j);
          FloatVector xh2 = FloatVector.fromArray(F, x, x2 + xo + BLOCK / 2 + j);
          t02 = l0.fma(xl2, t02);
          t02 = h0.fma(xh2, t02);
          FloatVector xl3 = FloatVector.fromArray(F, x, x3 + xo + j);
          FloatVector xh3 = FloatVector.fromArray(F, x, x3 + xo + BLOCK / 2 + j);
          t03 = l0.fma(xl3, t03);
          t03 = h0.fma(xh3, t03);
        }
      } else {
        FloatVector e0 = FloatVector.broadcast(F, d0);
        for (int j = 0; j < BLOCK / 2; j += BL) {
          ByteVector q0 = ByteVector.fromMemorySegment(B, data, r0 + QS + j, LE);
          ByteVector l0 = q0.and((byte) 0x0F).sub((byte) 8);
          ByteVector h0 =
              q0.reinterpretAsShorts()
                  .lanewise(VectorOperators.LSHR, 4)
                  .reinterpretAsBytes()
                  .and((byte) 0x0F)
                  .sub((byte) 8);
          for (int p = 0; p < PARTS; p++) {
            FloatVector fl0 = ((FloatVector) l0.castShape(F, p)).mul(e0);
            FloatVector fh0 = ((FloatVector) h0.castShape(F, p)).mul(e0);
            FloatVector xl0 = FloatVector.fromArray(F, x, x0 + xo + j + p * FL);
            FloatVector xh0 = FloatVector.fromArray(F, x, x0 + xo + BLOCK / 2 + j + p * FL);
            t00 = fl0.fma(xl0, t00);
            t00 = fh0.fma(xh0, t00);
            FloatVector xl1 = FloatVector.fromArray(F, x, x1 + xo + j + p * FL);
            FloatVector xh1 = FloatVector.fromArray(F, x, x1 + xo + BLOCK / 2 + j + p * FL);
            t01 = fl0.fma(xl1, t01);
            t01 = fh0.fma(xh1, t01);
            FloatVector xl2 = FloatVector.fromArray(F, x, x2 + xo + j + p * FL);
            FloatVector xh2 = FloatVector.fromArray(F, x, x2 + xo + BLOCK / 2 + j + p * FL);
            t02 = fl0.fma(xl2, t02);
            t02 = fh0.fma(xh2, t02);
            FloatVector xl3 = FloatVector.fromArray(F, x, x3 + xo + j + p * FL);
            FloatVector xh3 = FloatVector.fromArray(F, x, x3 + xo + BLOCK / 2 + j + p * FL);
            t03 = fl0.fma(xl3, t03);
            t03 = fh0.fma(xh3, t03);
          }
        }
      }
    }
    out[o0] = Simd.sumLanes(t00);
    out[o1] = Simd.sumLanes(t01);
    out[o2] = Simd.sumLanes(t02);
    out[o3] = Simd.sumLanes(t03);
  }
}
