package io.kvslim.tensor;

import static io.kvslim.tensor.Simd.B;
import static io.kvslim.tensor.Simd.BL;
import static io.kvslim.tensor.Simd.F;
import static io.kvslim.tensor.Simd.FL;
import static io.kvslim.tensor.Simd.LE;
import static io.kvslim.tensor.Simd.PARTS;
import static io.kvslim.tensor.Simd.SHORT_LE;
import static io.kvslim.tensor.Simd.half;
import static io.kvslim.tensor.Simd.s8;
import static io.kvslim.tensor.Simd.u8;

import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;

/**
 * Q6_K weights (llama.cpp {@code block_q6_K}): super-blocks of 256 elements in 210 bytes: 128 bytes
 * {@code ql} (low nibbles), 64 bytes {@code qh} (2-bit high parts), 16 signed 8-bit {@code scales}
 * (one per 16 elements), then fp16 {@code d}. Each half {@code n} of 128 elements reads {@code
 * ql[64n ..]}, {@code qh[32n ..]}, {@code scales[8n ..]}; for {@code l < 32}, elements {@code l,
 * l+32, l+64, l+96} take the low nibble of {@code ql[l]}, low nibble of {@code ql[l+32]}, high
 * nibble of {@code ql[l]}, high nibble of {@code ql[l+32]}, with bits 0-1, 2-3, 4-5, 6-7 of {@code
 * qh[l]} on top; value {@code d * scale * (q - 32)}.
 */
public final class Q6_KMatrix extends WeightMatrix {
  static final int BLOCK = 256;
  static final int BLOCK_BYTES = 210;

  public Q6_KMatrix(MemorySegment data, int rows, int cols) {
    super(data, rows, cols, GgmlType.Q6_K);
  }

  @Override
  public GgmlType type() {
    return GgmlType.Q6_K;
  }

  @Override
  public float dot(int row, float[] x, int xOffset) {
    long base = row * rowBytes;
    FloatVector total = FloatVector.zero(F);
    for (int sb = 0; sb < cols / BLOCK; sb++) {
      long block = base + (long) sb * BLOCK_BYTES;
      FloatVector sum = FloatVector.zero(F);
      for (int n = 0; n < 2; n++) {
        long qh = block + 128 + 32 * n;
        long sc = block + 192 + 8 * n;
        // Group g of 32 elements: low nibbles of ql[l] (g = 0) and ql[l + 32] (g = 1), then high
        // nibbles of the same (g = 2, 3), with bits 2g, 2g+1 of qh[l] on top. One loop body with
        // the shifts as variables keeps the method under C2's inlining node budget (a vector from a
        // method left out is boxed).
        for (int g = 0; g < 4; g++) {
          long ql = block + 64 * n + 32 * (g & 1);
          int nibbleShift = 4 * (g >> 1);
          int xo = xOffset + sb * BLOCK + 128 * n + 32 * g;
          for (int l = 0; l < 32; l += BL) {
            ByteVector low =
                ByteVector.fromMemorySegment(B, data, ql + l, LE)
                    .reinterpretAsShorts()
                    .lanewise(VectorOperators.LSHR, nibbleShift)
                    .reinterpretAsBytes()
                    .and((byte) 0x0F);
            ByteVector high =
                ByteVector.fromMemorySegment(B, data, qh + l, LE)
                    .reinterpretAsShorts()
                    .lanewise(VectorOperators.LSHR, 2 * g)
                    .reinterpretAsBytes()
                    .and((byte) 3);
            // Values 0..3 shift left without spilling into the neighbouring byte.
            ByteVector q =
                low.or(
                        high.reinterpretAsShorts()
                            .lanewise(VectorOperators.LSHL, 4)
                            .reinterpretAsBytes())
                    .sub((byte) 32);
            FloatVector prod =
                ((FloatVector) q.castShape(F, 0)).mul(FloatVector.fromArray(F, x, xo + l));
            for (int p = 1; p < PARTS; p++) {
              prod =
                  ((FloatVector) q.castShape(F, p))
                      .fma(FloatVector.fromArray(F, x, xo + l + p * FL), prod);
            }
            // A byte load never crosses a 16-element scale group (BL divides 16).
            sum =
                prod.fma(
                    FloatVector.broadcast(F, data.get(ValueLayout.JAVA_BYTE, sc + l / 16 + 2 * g)),
                    sum);
          }
        }
      }
      total =
          sum.fma(
              FloatVector.broadcast(F, Float.float16ToFloat(data.get(SHORT_LE, block + 208))),
              total);
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
    float d = half(data, block + 208);
    for (int n = 0; n < 2; n++) {
      long ql = block + 64 * n;
      long qh = block + 128 + 32 * n;
      long sc = block + 192 + 8 * n;
      int on = o + 128 * n;
      for (int l = 0; l < 32; l++) {
        int is = l / 16;
        int a = u8(data, ql + l);
        int b = u8(data, ql + 32 + l);
        int h = u8(data, qh + l);
        out[on + l] = d * s8(data, sc + is) * (((a & 0xF) | (h & 3) << 4) - 32);
        out[on + l + 32] = d * s8(data, sc + is + 2) * (((b & 0xF) | ((h >> 2) & 3) << 4) - 32);
        out[on + l + 64] = d * s8(data, sc + is + 4) * (((a >> 4) | ((h >> 4) & 3) << 4) - 32);
        out[on + l + 96] = d * s8(data, sc + is + 6) * (((b >> 4) | ((h >> 6) & 3) << 4) - 32);
      }
    }
  }
}
