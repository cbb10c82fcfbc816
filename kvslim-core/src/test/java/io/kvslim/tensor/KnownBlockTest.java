package io.kvslim.tensor;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import io.kvslim.ggml.Q4_KCodec;
import io.kvslim.gguf.GgmlType;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;
import org.junit.jupiter.api.Test;

/**
 * Hand-built blocks with values worked out from llama.cpp's block layouts; each checks {@code
 * dequantizeRow} exactly, and {@code dot}/{@code dotScalar} against one-hot and all-ones vectors.
 */
class KnownBlockTest {
  private static final ValueLayout.OfShort SHORT_LE =
      ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
  private static final short ONE = Float.floatToFloat16(1f);

  /** A little-endian byte buffer being filled by a test. */
  private static final class Block {
    final MemorySegment s;

    Block(int bytes) {
      s = Arena.ofAuto().allocate(bytes, 64);
    }

    Block half(long offset, float value) {
      s.set(SHORT_LE, offset, Float.floatToFloat16(value));
      return this;
    }

    Block u8(long offset, int value) {
      s.set(ValueLayout.JAVA_BYTE, offset, (byte) value);
      return this;
    }

    Block fill(long offset, int count, int value) {
      for (int i = 0; i < count; i++) {
        u8(offset + i, value);
      }
      return this;
    }
  }

  /** Dequantizes the single row and checks it, then checks both dots on the same values. */
  private static void assertRow(GgmlType type, Block block, float[] expected) {
    WeightMatrix w = WeightMatrix.of(type, block.s, 1, expected.length);
    float[] row = new float[expected.length];
    w.dequantizeRow(0, row, 0);
    assertThat(row).as("%s dequantized", type).containsExactly(expected);
    float[] ones = new float[expected.length];
    Arrays.fill(ones, 1f);
    double sum = 0;
    double abs = 0;
    for (float v : expected) {
      sum += v;
      abs += Math.abs(v);
    }
    assertThat((double) w.dot(0, ones, 0)).isCloseTo(sum, within(abs * 1e-6));
    assertThat((double) w.dotScalar(0, ones, 0)).isCloseTo(sum, within(abs * 1e-6));
    for (int i = 0; i < expected.length; i += 7) {
      float[] oneHot = new float[expected.length];
      oneHot[i] = 1f;
      assertThat(w.dot(0, oneHot, 0)).as("%s dot with e%d", type, i).isEqualTo(expected[i]);
      assertThat(w.dotScalar(0, oneHot, 0))
          .as("%s dotScalar with e%d", type, i)
          .isEqualTo(expected[i]);
    }
  }

  @Test
  void q8_0ElementIsScaleTimesSignedByte() {
    Block b = new Block(2 * 34);
    float[] expected = new float[64];
    for (int blk = 0; blk < 2; blk++) {
      float d = blk == 0 ? 0.5f : -2f;
      b.half(34 * blk, d);
      for (int j = 0; j < 32; j++) {
        int q = blk == 0 ? j - 16 : 127 - 8 * j; // covers -128 .. 127
        b.u8(34 * blk + 2 + j, q);
        expected[32 * blk + j] = d * (byte) q;
      }
    }
    assertRow(GgmlType.Q8_0, b, expected);
  }

  @Test
  void q4_0LowNibblesAreFirstHalfHighNibblesSecondHalf() {
    Block b = new Block(18).half(0, 2f);
    b.u8(2, 0xF0); // element 0: 0 - 8 = -8, element 16: 15 - 8 = 7
    b.u8(3, 0x19); // element 1: 9 - 8 = 1, element 17: 1 - 8 = -7
    b.fill(4, 14, 0x88); // elements 2..15 and 18..31: 8 - 8 = 0
    float[] expected = new float[32];
    expected[0] = -16f;
    expected[16] = 14f;
    expected[1] = 2f;
    expected[17] = -14f;
    assertRow(GgmlType.Q4_0, b, expected);
  }

  @Test
  void q4_1AddsTheMinimum() {
    Block b = new Block(20).half(0, 0.5f).half(2, -3f);
    b.u8(4, 0xF0); // element 0: 0 -> -3, element 16: 15 -> 4.5
    b.fill(5, 15, 0x42); // elements 1..15: 2 -> -2, 17..31: 4 -> -1
    float[] expected = new float[32];
    Arrays.fill(expected, 1, 16, -2f);
    Arrays.fill(expected, 17, 32, -1f);
    expected[0] = -3f;
    expected[16] = 4.5f;
    assertRow(GgmlType.Q4_1, b, expected);
  }

  @Test
  void q5_0TakesFifthBitJOfQhForElementJ() {
    Block b = new Block(22).half(0, 1f);
    // qh = bits 0, 4 and 31 set, little-endian.
    b.u8(2, 0x11).u8(3, 0).u8(4, 0).u8(5, 0x80);
    b.u8(6 + 4, 0x7A); // element 4: 10 | 16 = 26 -> 10; element 20: 7 (bit 20 clear) -> -9
    float[] expected = new float[32];
    Arrays.fill(expected, -16f);
    expected[0] = 0f; // 0 | 16
    expected[4] = 10f;
    expected[20] = -9f;
    expected[31] = 0f; // 0 | 16 via bit 31
    assertRow(GgmlType.Q5_0, b, expected);
  }

  @Test
  void q5_1TakesFifthBitsAndAddsTheMinimum() {
    Block b = new Block(24).half(0, 0.5f).half(2, 1f);
    // qh = bits 4, 17 and 31 set.
    b.u8(4, 0x10).u8(5, 0).u8(6, 0x02).u8(7, 0x80);
    b.u8(8 + 4, 0x7A); // element 4: 26 -> 14; element 20: 7 -> 4.5
    b.u8(8 + 1, 0x30); // element 1: 0 -> 1; element 17: 3 | 16 = 19 -> 10.5
    float[] expected = new float[32];
    Arrays.fill(expected, 1f);
    expected[4] = 14f;
    expected[20] = 4.5f;
    expected[17] = 10.5f;
    expected[31] = 9f; // 16 -> 0.5 * 16 + 1
    assertRow(GgmlType.Q5_1, b, expected);
  }

  /**
   * Packed 6-bit scales of sub-blocks 0..7: 1, 2, 3, 4, 58, 6, 7, 8; mins 5, 6, 7, 8, 25, 0, 0, 0.
   */
  private static final int[] K_SCALE_BYTES = {
    0xC1, 0x02, 0x03, 0x04, 0x45, 0x06, 0x07, 0x08, 0x9A, 0x06, 0x07, 0x08
  };

  private static final int[] K_SCALES = {1, 2, 3, 4, 58, 6, 7, 8};
  // Sub-block 5: byte 9 = 0x06 gives scale 6 | (byte 1 >> 6) << 4 = 6, min 0 | (byte 5 >> 6) << 4 =
  // 0.
  private static final int[] K_MINS = {5, 6, 7, 8, 25, 0, 0, 0};

  @Test
  void kQuantScalesAndMinsUnpackFromTwelveBytes() {
    Block b = new Block(12);
    for (int i = 0; i < 12; i++) {
      b.u8(i, K_SCALE_BYTES[i]);
    }
    for (int s = 0; s < 8; s++) {
      assertThat(Q4_KCodec.scale(b.s, 0, s)).as("scale %d", s).isEqualTo(K_SCALES[s]);
      assertThat(Q4_KCodec.min(b.s, 0, s)).as("min %d", s).isEqualTo(K_MINS[s]);
    }
    // All 6 bits of a high sub-block: low nibble from bytes 8..11, top bits from bytes 0..7.
    Block full = new Block(12).fill(0, 12, 0xFF);
    for (int s = 0; s < 8; s++) {
      assertThat(Q4_KCodec.scale(full.s, 0, s)).isEqualTo(63);
      assertThat(Q4_KCodec.min(full.s, 0, s)).isEqualTo(63);
    }
  }

  @Test
  void q4_KUsesPerSubBlockScaleAndMin() {
    Block b = new Block(144).half(0, 1f).half(2, 0.5f);
    for (int i = 0; i < 12; i++) {
      b.u8(4 + i, K_SCALE_BYTES[i]);
    }
    b.fill(16, 128, 0x21); // low nibble 1, high nibble 2
    b.u8(16 + 32 * 2 + 3, 0xF0); // chunk 2, l = 3: sub-block 4 gets 0, sub-block 5 gets 15
    float[] expected = new float[256];
    for (int i = 0; i < 256; i++) {
      int s = i / 32;
      int q = s % 2 == 0 ? 1 : 2;
      expected[i] = K_SCALES[s] * q - 0.5f * K_MINS[s];
    }
    expected[128 + 3] = -0.5f * K_MINS[4];
    expected[160 + 3] = K_SCALES[5] * 15 - 0.5f * K_MINS[5];
    assertRow(GgmlType.Q4_K, b, expected);
  }

  @Test
  void q5_KTakesBit2cAnd2cPlus1OfQhAsFifthBits() {
    Block b = new Block(176).half(0, 1f).half(2, 0.5f);
    for (int i = 0; i < 12; i++) {
      b.u8(4 + i, K_SCALE_BYTES[i]);
    }
    b.fill(48, 128, 0x21);
    b.u8(16 + 0, 0b0000_0101); // l = 0: sub-blocks 0 and 2 get +16
    b.u8(16 + 9, 0b1000_0010); // l = 9: sub-blocks 1 and 7 get +16
    float[] expected = new float[256];
    for (int i = 0; i < 256; i++) {
      int s = i / 32;
      int q = s % 2 == 0 ? 1 : 2;
      int l = i % 32;
      if ((l == 0 && (s == 0 || s == 2)) || (l == 9 && (s == 1 || s == 7))) {
        q += 16;
      }
      expected[i] = K_SCALES[s] * q - 0.5f * K_MINS[s];
    }
    assertRow(GgmlType.Q5_K, b, expected);
  }

  @Test
  void q6_KElementIUsesScaleIOver16() {
    Block b = new Block(210).half(208, 0.25f);
    b.fill(0, 128, 0x21); // ql: low nibble 1, high nibble 2
    for (int k = 0; k < 16; k++) {
      b.u8(192 + k, k - 8); // signed scales -8 .. 7
    }
    b.u8(128, 0b11_10_01_00); // qh[0]: elements 0, 32, 64, 96 get high parts 0, 1, 2, 3
    b.u8(128 + 32 + 5, 0b00_00_00_11); // second half, l = 5: element 128 + 5 gets 3
    float[] expected = new float[256];
    for (int i = 0; i < 256; i++) {
      int group = (i % 128) / 32; // which of ql low, ql+32 low, ql high, ql+32 high
      int q = group < 2 ? 1 : 2;
      if (i == 32) {
        q |= 1 << 4;
      } else if (i == 64) {
        q |= 2 << 4;
      } else if (i == 96) {
        q |= 3 << 4;
      } else if (i == 128 + 5) {
        q |= 3 << 4;
      }
      expected[i] = 0.25f * (i / 16 - 8) * (q - 32);
    }
    assertRow(GgmlType.Q6_K, b, expected);
  }

  @Test
  void f16AndBf16DecodeKnownBitPatterns() {
    short[] halves = {
      ONE, (short) 0xC000, 0x0001, (short) 0x8001, 0x03FF, 0x0400, 0x7BFF, 0, (short) 0x8000, 0x3555
    };
    float[] halfValues = {
      1f, -2f, 0x1p-24f, -0x1p-24f, 1023 * 0x1p-24f, 0x1p-14f, 65504f, 0f, -0f, 0.33325195f
    };
    int cols = 48; // several vectors at any width, plus a scalar tail at 512 bits
    Block f16 = new Block(2 * cols);
    float[] expected = new float[cols];
    for (int i = 0; i < cols; i++) {
      f16.s.set(SHORT_LE, 2L * i, halves[i % halves.length]);
      expected[i] = halfValues[i % halves.length];
    }
    assertRow(GgmlType.F16, f16, expected);

    short[] bf16 = {0x3F80, (short) 0xC000, 0x4049, 0x0001, 0};
    float[] bf16Values = {1f, -2f, 3.140625f, Float.intBitsToFloat(0x00010000), 0f};
    Block b = new Block(2 * cols);
    for (int i = 0; i < cols; i++) {
      b.s.set(SHORT_LE, 2L * i, bf16[i % bf16.length]);
      expected[i] = bf16Values[i % bf16.length];
    }
    assertRow(GgmlType.BF16, b, expected);
  }

  @Test
  void vectorKernelsConvertEveryFiniteHalfExactly() {
    // All 65536 bit patterns as 2048 rows of 32; the 32 x 32 identity as activations makes
    // out[t] the row's element t, through the vector loops at any width.
    int cols = 32;
    int rows = (1 << 16) / cols;
    MemorySegment all = Arena.ofAuto().allocate(2L << 16, 64);
    for (int h = 0; h < 1 << 16; h++) {
      all.set(SHORT_LE, 2L * h, (short) h);
    }
    WeightMatrix w = WeightMatrix.of(GgmlType.F16, all, rows, cols);
    float[] identity = new float[cols * cols];
    for (int t = 0; t < cols; t++) {
      identity[t * cols + t] = 1f;
    }
    float[] out = new float[cols];
    for (int r = 0; r < rows; r++) {
      w.dotTile(r, identity, 0, cols, cols, out, 0, 1);
      for (int t = 0; t < cols; t++) {
        int bits = r * cols + t;
        if ((bits & 0x7C00) == 0x7C00) {
          continue; // infinities and NaNs: weights never hold them
        }
        // + 0f: a dot product of a -0 weight with a one-hot vector is +0.
        float expected = Float.float16ToFloat((short) bits) + 0f;
        assertThat(out[t]).as("half 0x%04x in a tile", bits).isEqualTo(expected);
        if (t % 11 == 0) {
          assertThat(w.dot(r, identity, t * cols)).as("half 0x%04x", bits).isEqualTo(expected);
        }
      }
    }
  }
}
