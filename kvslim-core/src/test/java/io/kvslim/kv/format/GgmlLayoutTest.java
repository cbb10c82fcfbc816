package io.kvslim.kv.format;

import static org.assertj.core.api.Assertions.assertThat;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import org.junit.jupiter.api.Test;

/**
 * Known-value checks that our blocks are byte for byte ggml's {@code block_q8_0}, {@code
 * block_q4_0} and {@code block_q5_0}: fp16 scale first (little-endian), then the quants; for 4-bit
 * codes the low nibble of byte j is element j and the high nibble element j+16.
 */
class GgmlLayoutTest {

  private static byte[] encode(KvFormat format, float[] x) {
    MemorySegment block = MemorySegment.ofArray(new byte[(int) format.blockBytes(1, x.length)]);
    format.encode(x, 0, x.length, 1, block, 0, 1, x.length);
    return block.toArray(ValueLayout.JAVA_BYTE);
  }

  @Test
  void q8_0BlockIsScaleThenSignedQuantsRoundedHalfToEvenAsLlamaCppsX86CacheWrites() {
    float[] x = new float[32];
    for (int j = 0; j < 32; j++) {
      x[j] = 4 * j - 64;
    }
    x[29] = 2.5f;
    x[30] = -2.5f;
    x[31] = 127; // amax 127 → d = 1.0 exactly (fp16 0x3c00)
    byte[] bytes = encode(KvFormats.Q8_0, x);
    assertThat(bytes).hasSize(34);
    assertThat(bytes[0]).isEqualTo((byte) 0x00);
    assertThat(bytes[1]).isEqualTo((byte) 0x3c);
    for (int j = 0; j < 29; j++) {
      assertThat(bytes[2 + j]).isEqualTo((byte) (4 * j - 64));
    }
    // quantize_row_q8_0 on x86 (_mm256_round_ps): 2.5 → 2; the reference's roundf would give 3
    assertThat(bytes[2 + 29]).isEqualTo((byte) 2);
    assertThat(bytes[2 + 30]).isEqualTo((byte) -2);
    assertThat(bytes[2 + 31]).isEqualTo((byte) 127);
  }

  @Test
  void q4_0BlockIsScaleThenNibblesLowForJHighForJPlus16() {
    float[] x = new float[32];
    for (int j = 0; j < 16; j++) {
      x[j] = j - 8; // x[0] = -8 is the extreme: d = -8 / -8 = 1.0
      x[16 + j] = 7 - j;
    }
    byte[] bytes = encode(KvFormats.Q4_0, x);
    assertThat(bytes).hasSize(18);
    assertThat(bytes[0]).isEqualTo((byte) 0x00);
    assertThat(bytes[1]).isEqualTo((byte) 0x3c);
    for (int j = 0; j < 16; j++) {
      int low = j; // trunc(j - 8 + 8.5)
      int high = 15 - j; // trunc(7 - j + 8.5)
      assertThat(bytes[2 + j]).as("byte %d", j).isEqualTo((byte) (low | high << 4));
    }
  }

  @Test
  void q4_0ExtremeNegativeMapsToZeroAndRoundTrips() {
    float[] x = new float[32];
    for (int j = 0; j < 32; j++) {
      x[j] = (float) Math.sin(j) * 0.3f;
    }
    x[7] = -1.3f;
    byte[] bytes = encode(KvFormats.Q4_0, x);
    assertThat(bytes[2 + 7] & 0x0f).isZero();
    float[] decoded = new float[32];
    KvFormats.Q4_0.decode(MemorySegment.ofArray(bytes), 0, 1, 32, decoded, 0);
    float d = HalfFloats.fromF16((short) ((bytes[0] & 0xff) | (bytes[1] & 0xff) << 8));
    assertThat(decoded[7]).isEqualTo(-8 * d);
    assertThat(Math.abs(decoded[7] - x[7])).isLessThanOrEqualTo(8 * Math.abs(d) / 2048);
  }

  @Test
  void allZeroBlocksHaveZeroScaleAndMidpointCodes() {
    float[] zeros = new float[32];
    byte[] q8 = encode(KvFormats.Q8_0, zeros);
    assertThat(q8).containsOnly((byte) 0);
    byte[] q4 = encode(KvFormats.Q4_0, zeros);
    // d = 0 / -8 = -0.0 in C as in Java: fp16 0x8000.
    assertThat(q4[0]).isZero();
    assertThat(q4[1]).isEqualTo((byte) 0x80);
    for (int j = 2; j < 18; j++) {
      assertThat(q4[j]).isEqualTo((byte) 0x88); // trunc(0 + 8.5) = 8 in both nibbles
    }
  }

  @Test
  void q5_0KeepsTheFifthBitsInALittleEndianWordAfterTheScale() {
    float[] x = new float[32];
    for (int j = 0; j < 32; j++) {
      x[j] = j - 16; // extreme -16 → d = 1.0, q_j = j
    }
    byte[] bytes = encode(KvFormats.Q5_0, x);
    assertThat(bytes).hasSize(22);
    assertThat(new byte[] {bytes[0], bytes[1]}).containsExactly(0x00, 0x3c);
    // Bit j of qh is bit 4 of q_j: elements 16..31 have it set.
    assertThat(new byte[] {bytes[2], bytes[3], bytes[4], bytes[5]})
        .containsExactly(0x00, 0x00, 0xff, 0xff);
    for (int j = 0; j < 16; j++) {
      assertThat(bytes[6 + j]).isEqualTo((byte) (j | j << 4));
    }
  }

  @Test
  void bf16RoundsToNearestEvenLikeGgml() {
    // 1 + 2^-8 is halfway between two bf16 values: ties to the even one (1.0).
    assertThat(HalfFloats.toBf16(1f + 1f / 256)).isEqualTo((short) 0x3f80);
    assertThat(HalfFloats.toBf16(1f + 3f / 256)).isEqualTo((short) 0x3f82);
    assertThat(HalfFloats.fromBf16(HalfFloats.toBf16(Float.NaN))).isNaN();
  }
}
