package io.kvslim.tensor;

import static io.kvslim.tensor.Simd.B;
import static io.kvslim.tensor.Simd.BL;
import static io.kvslim.tensor.Simd.F;
import static io.kvslim.tensor.Simd.FL;
import static io.kvslim.tensor.Simd.INT_LE;
import static io.kvslim.tensor.Simd.LE;
import static io.kvslim.tensor.Simd.LONG_LE;
import static io.kvslim.tensor.Simd.PARTS;
import static io.kvslim.tensor.Simd.SHORT_LE;
import static io.kvslim.tensor.Simd.half;
import static io.kvslim.tensor.Simd.u8;

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
    FloatVector total = FloatVector.zero(F);
    for (int sb = 0; sb < cols / BLOCK; sb++) {
      long block = base + (long) sb * BLOCK_BYTES;
      float d = Float.float16ToFloat(data.get(SHORT_LE, block));
      float dmin = Float.float16ToFloat(data.get(SHORT_LE, block + 2));
      long packed0to7 = data.get(LONG_LE, block + 4);
      int packed8to11 = data.get(INT_LE, block + 12);
      // One loop body over sub-blocks, with the nibble (and fifth-bit) shifts as variables, instead
      // of
      // an unrolled body per sub-block: C2 inlines every vector operation of a method only while
      // the
      // method stays under its inlining node budget, and a vector from a method left out is boxed.
      for (int s = 0; s < 8; s++) {
        long qs = block + 48 + 32 * (s >> 1);
        int shift = 4 * (s & 1);
        int xo = xOffset + sb * BLOCK + 32 * s;
        FloatVector acc = FloatVector.zero(F);
        FloatVector xSum = FloatVector.zero(F);
        for (int j = 0; j < 32; j += BL) {
          ByteVector fifth =
              ByteVector.fromMemorySegment(B, data, block + 16 + j, LE)
                  .reinterpretAsShorts()
                  .lanewise(VectorOperators.LSHR, s)
                  .reinterpretAsBytes()
                  .and((byte) 1);
          ByteVector q =
              ByteVector.fromMemorySegment(B, data, qs + j, LE)
                  .reinterpretAsShorts()
                  .lanewise(VectorOperators.LSHR, shift)
                  .reinterpretAsBytes()
                  .and((byte) 0x0F)
                  .or(
                      fifth
                          .reinterpretAsShorts()
                          .lanewise(VectorOperators.LSHL, 4)
                          .reinterpretAsBytes());
          for (int p = 0; p < PARTS; p++) {
            FloatVector xv = FloatVector.fromArray(F, x, xo + j + p * FL);
            acc = ((FloatVector) q.castShape(F, p)).fma(xv, acc);
            xSum = xSum.add(xv);
          }
        }
        total =
            acc.fma(
                FloatVector.broadcast(F, d * Q4_KMatrix.scale(packed0to7, packed8to11, s)), total);
        total =
            xSum.fma(
                FloatVector.broadcast(F, -dmin * Q4_KMatrix.min(packed0to7, packed8to11, s)),
                total);
      }
    }
    return Simd.sumLanes(total);
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
