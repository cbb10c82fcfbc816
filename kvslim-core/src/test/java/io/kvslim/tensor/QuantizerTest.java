package io.kvslim.tensor;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.SharedData;
import io.kvslim.ggml.BlockCodec;
import io.kvslim.ggml.GgmlReference;
import io.kvslim.gguf.GgmlType;
import io.kvslim.gguf.GgufFile;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class QuantizerTest {

  // ---- scalar reference dequantizers (test oracle) ----

  private static float f16(byte[] b, int o) {
    return GgmlReference.f16(b, o);
  }

  private static float[] dequantize(GgmlType type, byte[] b, int n) {
    float[] out = new float[n];
    for (int i = 0; i < n; i++) {
      out[i] =
          switch (type) {
            case F32 ->
                Float.intBitsToFloat(
                    (b[4 * i] & 0xff)
                        | (b[4 * i + 1] & 0xff) << 8
                        | (b[4 * i + 2] & 0xff) << 16
                        | (b[4 * i + 3] & 0xff) << 24);
            case F16 -> f16(b, 2 * i);
            default ->
                GgmlReference.value(
                    type, b, i / type.blockSize() * type.typeSize(), i % type.blockSize());
          };
    }
    return out;
  }

  private static float[] randomRow(long seed, int n, float scale) {
    SplittableRandom r = new SplittableRandom(seed);
    float[] x = new float[n];
    for (int i = 0; i < n; i++) {
      x[i] = (float) (r.nextGaussian() * scale);
    }
    return x;
  }

  /** Per-block bound: half a step of the fp16 scale, plus the scale's own fp16 rounding. */
  private static void assertWithinBlockError(
      GgmlType type, float[] x, float[] y, double stepsAllowed) {
    for (int b = 0; b < x.length / 32; b++) {
      float amax = 0;
      for (int j = 0; j < 32; j++) {
        amax = Math.max(amax, Math.abs(x[b * 32 + j]));
      }
      double step = type == GgmlType.Q8_0 ? amax / 127.0 : amax / 8.0;
      double bound = step * stepsAllowed + amax * 2e-3 + 1e-30;
      for (int j = 0; j < 32; j++) {
        assertThat((double) Math.abs(x[b * 32 + j] - y[b * 32 + j]))
            .as("%s element %d", type, b * 32 + j)
            .isLessThanOrEqualTo(bound);
      }
    }
  }

  @Test
  void q8_0RoundTripsWithinHalfAStep() {
    float[] x = randomRow(1, 32 * 64, 0.02f);
    byte[] q = Quantizer.quantize(GgmlType.Q8_0, x);
    assertThat(q).hasSize(34 * 64);
    assertWithinBlockError(GgmlType.Q8_0, x, dequantize(GgmlType.Q8_0, q, x.length), 0.5);
  }

  @Test
  void q4_0RoundTripsWithinOneStep() {
    float[] x = randomRow(2, 32 * 64, 3f);
    byte[] q = Quantizer.quantize(GgmlType.Q4_0, x);
    assertThat(q).hasSize(18 * 64);
    // The side opposite the largest magnitude clamps at nibble 15, so it may be a full step off.
    assertWithinBlockError(GgmlType.Q4_0, x, dequantize(GgmlType.Q4_0, q, x.length), 1.0);
  }

  @Test
  void f16AndF32RoundTrip() {
    float[] x = randomRow(3, 100, 10f);
    float[] f32 = dequantize(GgmlType.F32, Quantizer.quantize(GgmlType.F32, x), x.length);
    assertThat(f32).containsExactly(x);
    float[] f16 = dequantize(GgmlType.F16, Quantizer.quantize(GgmlType.F16, x), x.length);
    for (int i = 0; i < x.length; i++) {
      assertThat(f16[i]).isEqualTo(Float.float16ToFloat(Float.floatToFloat16(x[i])));
      assertThat((double) Math.abs(f16[i] - x[i])).isLessThanOrEqualTo(Math.abs(x[i]) / 1024.0);
    }
  }

  @Test
  void q8_0BlockMatchesTheReferenceByteForByte() {
    float[] x = new float[32];
    x[0] = 1.27f;
    x[1] = -1.27f;
    x[2] = 0.005f; // 0.5 of a step: rounds away from zero
    x[3] = -0.005f;
    x[4] = 0.0049f;
    byte[] q = Quantizer.quantize(GgmlType.Q8_0, x);
    assertThat(f16(q, 0)).isEqualTo(Float.float16ToFloat(Float.floatToFloat16(1.27f / 127f)));
    assertThat(q[2]).isEqualTo((byte) 127);
    assertThat(q[3]).isEqualTo((byte) -127);
    assertThat(q[4]).isEqualTo((byte) BlockCodec.roundf(0.005f * (1f / (1.27f / 127f))));
    assertThat(q[5]).isEqualTo((byte) -q[4]);
    assertThat(q[6]).isEqualTo((byte) 0);
  }

  @Test
  void roundfRoundsHalvesAwayFromZero() {
    assertThat(BlockCodec.roundf(2.5f)).isEqualTo(3);
    assertThat(BlockCodec.roundf(-2.5f)).isEqualTo(-3);
    assertThat(BlockCodec.roundf(-63.5f)).isEqualTo(-64);
    assertThat(BlockCodec.roundf(0.49999997f)).isEqualTo(0);
    assertThat(BlockCodec.roundf(-0.4f)).isEqualTo(0);
    assertThat(BlockCodec.roundf(126.6f)).isEqualTo(127);
  }

  @Test
  void q4_0UsesTheSignedLargestMagnitudeAndPacksNibbles() {
    float[] x = new float[32];
    x[0] = -8f; // largest magnitude, negative: d = -8 / -8 = 1
    x[1] = 3f;
    x[16] = 7.9f; // clamps to nibble 15
    x[17] = -2f;
    byte[] q = Quantizer.quantize(GgmlType.Q4_0, x);
    assertThat(f16(q, 0)).isEqualTo(1f);
    // element j (low nibble) and j + 16 (high nibble); value -> -x + 8 with d = 1 ... id = 1
    assertThat(q[2] & 0x0f).isEqualTo(0); // -8 * 1 + 8.5 = 0.5 -> 0
    assertThat((q[2] >> 4) & 0x0f).isEqualTo(15); // 7.9 + 8.5 = 16.4 -> 16 -> 15
    assertThat(q[3] & 0x0f).isEqualTo(11); // 3 + 8.5 -> 11
    assertThat((q[3] >> 4) & 0x0f).isEqualTo(6); // -2 + 8.5 -> 6
    assertThat(q[4] & 0xff).isEqualTo(0x88); // zeros -> 8
  }

  @Test
  void q4_0TiesKeepTheFirstLargestMagnitude() {
    float[] x = new float[32];
    x[0] = 2f;
    x[1] = -2f;
    byte[] q = Quantizer.quantize(GgmlType.Q4_0, x);
    assertThat(f16(q, 0)).isEqualTo(-0.25f); // d = 2 / -8
  }

  @Test
  void allZeroBlocksHaveZeroScale() {
    byte[] q8 = Quantizer.quantize(GgmlType.Q8_0, new float[32]);
    assertThat(q8).containsOnly((byte) 0);
    byte[] q4 = Quantizer.quantize(GgmlType.Q4_0, new float[32]);
    // 0 / -8 is -0.0 in C as in Java: the reference stores the scale as fp16 0x8000.
    assertThat(q4[0]).isZero();
    assertThat(q4[1]).isEqualTo((byte) 0x80);
    assertThat(q4[2] & 0xff).isEqualTo(0x88);
  }

  @Test
  void offsetsAndUnsupportedTypes() {
    float[] x = randomRow(4, 96, 1f);
    byte[] whole = Quantizer.quantize(GgmlType.Q8_0, x);
    byte[] part = new byte[10 + 68];
    Quantizer.quantize(GgmlType.Q8_0, x, 32, 64, part, 10);
    for (int i = 0; i < 68; i++) {
      assertThat(part[10 + i]).isEqualTo(whole[34 + i]);
    }
    assertThatThrownBy(() -> Quantizer.quantize(GgmlType.Q6_K, new float[256]))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("Q6_K");
    assertThatThrownBy(() -> Quantizer.quantize(GgmlType.Q4_0, x, 0, 33, new byte[100], 0))
        .isInstanceOf(IllegalArgumentException.class);
  }

  /** The shared q8_0/q4_0 models were quantized by llama.cpp from the F32 model's weights. */
  @ParameterizedTest
  @CsvSource({"llama-spm-q8_0.gguf,Q8_0", "llama-spm-q4_0.gguf,Q4_0"})
  void matchesLlamaCppQuantizedSharedModels(String quantized, GgmlType type) {
    try (var f32 = GgufFile.open(SharedData.model("llama-spm-f32.gguf"));
        var q = GgufFile.open(SharedData.model(quantized))) {
      int compared = 0;
      for (var t : f32.tensors()) {
        var qt = q.tensor(t.name());
        if (t.type() != GgmlType.F32 || qt == null || qt.type() != type) {
          continue;
        }
        float[] x =
            f32.tensorData(t)
                .toArray(ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN));
        byte[] expected = q.tensorData(qt).toArray(ValueLayout.JAVA_BYTE);
        assertThat(Quantizer.quantize(type, x)).as(t.name()).isEqualTo(expected);
        compared++;
      }
      assertThat(compared).isGreaterThan(4);
    }
  }
}
