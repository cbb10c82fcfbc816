package io.kvslim.tensor;

import static io.kvslim.tensor.Simd.BL;
import static io.kvslim.tensor.Simd.F;
import static io.kvslim.tensor.Simd.FL;
import static io.kvslim.tensor.Simd.INT_LE;
import static io.kvslim.tensor.Simd.LONG_LE;
import static io.kvslim.tensor.Simd.PARTS;
import static io.kvslim.tensor.Simd.bytes;
import static io.kvslim.tensor.Simd.floats;
import static io.kvslim.tensor.Simd.half;
import static io.kvslim.tensor.Simd.highNibbles;
import static io.kvslim.tensor.Simd.shiftLeftUnmasked;
import static io.kvslim.tensor.Simd.shiftRightUnmasked;
import static io.kvslim.tensor.Simd.u8;
import static io.kvslim.tensor.Simd.widen;

import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;

/**
 * Q5_K weights (llama.cpp {@code block_q5_K}): super-blocks of 256 elements in 176 bytes: fp16
 * {@code d}, fp16 {@code dmin}, 12 bytes of packed 6-bit scales and mins (as {@link Q4_KMatrix}),
 * 32 bytes {@code qh} of fifth bits, then 128 bytes {@code qs}. Chunk {@code c} (64 elements) reads
 * {@code qs[32c .. 32c+32)}; element {@code 64c + l} is the low nibble of {@code qs[32c+l]} plus
 * bit {@code 2c} of {@code qh[l]} as 16, element {@code 64c + 32 + l} the high nibble plus bit
 * {@code 2c+1}. Value: {@code d * scale[s] * q - dmin * min[s]}.
 */
public final class Q5_KMatrix extends WeightMatrix {
  static final int BLOCK = 256;
  static final int BLOCK_BYTES = 176;

  public Q5_KMatrix(MemorySegment data, int rows, int cols) {
    super(data, rows, cols, GgmlType.Q5_K);
  }

  @Override
  public GgmlType type() {
    return GgmlType.Q5_K;
  }

  @Override
  public float dot(int row, float[] x, int xOffset) {
    long base = row * rowBytes;
    float sum = 0f;
    for (int sb = 0; sb < cols / BLOCK; sb++) {
      long block = base + (long) sb * BLOCK_BYTES;
      float d = half(data, block);
      float dmin = half(data, block + 2);
      long packed0to7 = data.get(LONG_LE, block + 4);
      int packed8to11 = data.get(INT_LE, block + 12);
      for (int c = 0; c < 4; c++) {
        int lo = 2 * c;
        int hi = 2 * c + 1;
        sum +=
            chunkDot(
                block,
                c,
                x,
                xOffset + sb * BLOCK + 64 * c,
                d * Q4_KMatrix.scale(packed0to7, packed8to11, lo),
                d * Q4_KMatrix.scale(packed0to7, packed8to11, hi),
                dmin * Q4_KMatrix.min(packed0to7, packed8to11, lo),
                dmin * Q4_KMatrix.min(packed0to7, packed8to11, hi));
      }
    }
    return sum;
  }

  /**
   * Dot product of chunk {@code c} (64 elements, sub-blocks {@code 2c} and {@code 2c+1}) of the
   * super-block at {@code block} with {@code x[xo ..]}: {@code sum_s (d * scale[s] * (q . x)_s -
   * dmin * min[s] * (sum x)_s)}, given {@code d * scale} and {@code dmin * min} of both sub-blocks.
   * Kept to one chunk and a float result so that C2 inlines all of its vector operations (a larger
   * method exceeds its inlining node budget, and a vector returned from a method that was not
   * inlined is boxed).
   */
  private float chunkDot(
      long block,
      int c,
      float[] x,
      int xo,
      float scaleLo,
      float scaleHi,
      float minLo,
      float minHi) {
    FloatVector accLo = FloatVector.zero(F);
    FloatVector accHi = FloatVector.zero(F);
    FloatVector xLo = FloatVector.zero(F);
    FloatVector xHi = FloatVector.zero(F);
    for (int j = 0; j < 32; j += BL) {
      ByteVector q = bytes(data, block + 48 + 32 * c + j);
      ByteVector qh = bytes(data, block + 16 + j);
      ByteVector lo =
          q.and((byte) 0x0F).or(shiftLeftUnmasked(shiftRightUnmasked(qh, 2 * c).and((byte) 1), 4));
      ByteVector hi =
          highNibbles(q).or(shiftLeftUnmasked(shiftRightUnmasked(qh, 2 * c + 1).and((byte) 1), 4));
      for (int p = 0; p < PARTS; p++) {
        FloatVector xl = floats(x, xo + j + p * FL);
        FloatVector xh = floats(x, xo + 32 + j + p * FL);
        accLo = widen(lo, p).fma(xl, accLo);
        accHi = widen(hi, p).fma(xh, accHi);
        xLo = xLo.add(xl);
        xHi = xHi.add(xh);
      }
    }
    return accLo
        .mul(scaleLo)
        .add(accHi.mul(scaleHi))
        .sub(xLo.mul(minLo))
        .sub(xHi.mul(minHi))
        .reduceLanes(VectorOperators.ADD);
  }

  @Override
  public float dotScalar(int row, float[] x, int xOffset) {
    float sum = 0f;
    float[] w = new float[BLOCK];
    for (int sb = 0; sb < cols / BLOCK; sb++) {
      decodeBlock(row * rowBytes + (long) sb * BLOCK_BYTES, w, 0);
      for (int i = 0; i < BLOCK; i++) {
        sum += w[i] * x[xOffset + sb * BLOCK + i];
      }
    }
    return sum;
  }

  @Override
  public void dequantizeRow(int row, float[] out, int outOffset) {
    for (int sb = 0; sb < cols / BLOCK; sb++) {
      decodeBlock(row * rowBytes + (long) sb * BLOCK_BYTES, out, outOffset + sb * BLOCK);
    }
  }

  private void decodeBlock(long block, float[] out, int o) {
    float d = half(data, block);
    float dmin = half(data, block + 2);
    for (int c = 0; c < 4; c++) {
      for (int h = 0; h < 2; h++) {
        int s = 2 * c + h;
        float scale = d * Q4_KMatrix.scale(data, block + 4, s);
        float min = dmin * Q4_KMatrix.min(data, block + 4, s);
        for (int l = 0; l < 32; l++) {
          int q = u8(data, block + 48 + 32 * c + l);
          int nibble = h == 0 ? q & 0xF : q >> 4;
          int fifth = (u8(data, block + 16 + l) >> s) & 1;
          out[o + 64 * c + 32 * h + l] = scale * (nibble | fifth << 4) - min;
        }
      }
    }
  }
}
