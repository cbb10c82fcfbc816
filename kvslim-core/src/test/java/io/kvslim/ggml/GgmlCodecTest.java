package io.kvslim.ggml;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Every codec against {@link GgmlReference} (ggml's text, value by value), on random blocks and on
 * edge cases, plus hand-worked blocks and the per-type error bounds.
 */
class GgmlCodecTest {
  /** ggml's {@code QK} and {@code sizeof(block_*)} of each block type, from ggml-common.h. */
  private static final Map<GgmlType, int[]> SIZES =
      Map.of(
          GgmlType.Q8_0, new int[] {32, 34},
          GgmlType.Q8_1, new int[] {32, 36},
          GgmlType.Q4_0, new int[] {32, 18},
          GgmlType.Q4_1, new int[] {32, 20},
          GgmlType.Q5_0, new int[] {32, 22},
          GgmlType.Q5_1, new int[] {32, 24},
          GgmlType.Q4_K, new int[] {256, 144},
          GgmlType.Q5_K, new int[] {256, 176},
          GgmlType.Q6_K, new int[] {256, 210},
          GgmlType.Q8_K, new int[] {256, 292});

  static List<GgmlType> blockTypes() {
    return SIZES.keySet().stream().sorted().toList();
  }

  static List<GgmlType> quantizedTypes() {
    return blockTypes().stream().filter(t -> BlockCodec.of(t).quantizes()).toList();
  }

  @Test
  void everyBlockTypeHasOneCodecWithGgmlsSizes() {
    for (GgmlType t : GgmlType.values()) {
      BlockCodec codec = BlockCodec.of(t);
      if (!SIZES.containsKey(t)) {
        assertThat(codec).as("%s", t).isNull();
        continue;
      }
      assertThat(codec.type()).isEqualTo(t);
      assertThat(codec.blockSize()).as("%s", t).isEqualTo(SIZES.get(t)[0]);
      assertThat(codec.blockBytes()).as("%s", t).isEqualTo(SIZES.get(t)[1]);
      assertThat(t.blockSize()).isEqualTo(SIZES.get(t)[0]);
      assertThat(t.typeSize()).isEqualTo(SIZES.get(t)[1]);
    }
    assertThat(quantizedTypes())
        .containsExactlyInAnyOrder(
            GgmlType.Q8_0,
            GgmlType.Q8_1,
            GgmlType.Q4_0,
            GgmlType.Q4_1,
            GgmlType.Q5_0,
            GgmlType.Q5_1,
            GgmlType.Q8_K);
  }

  /** Byte offsets of the fp16 scale fields of a block (random bytes there could be NaN or inf). */
  private static int[] halfFields(GgmlType t) {
    return switch (t) {
      case Q8_0, Q4_0, Q5_0 -> new int[] {0};
      case Q8_1, Q4_1, Q5_1, Q4_K, Q5_K -> new int[] {0, 2};
      case Q6_K -> new int[] {208};
      default -> new int[0];
    };
  }

  /** {@code blocks} random blocks of {@code t} at {@code offset}: random codes, finite scales. */
  private static byte[] randomBlocks(GgmlType t, int blocks, int offset, long seed) {
    Random random = new Random(seed);
    byte[] b = new byte[offset + blocks * t.typeSize()];
    random.nextBytes(b);
    for (int k = 0; k < blocks; k++) {
      int o = offset + k * t.typeSize();
      for (int field : halfFields(t)) {
        GgmlReference.putF16(b, o + field, (random.nextFloat() * 2 - 1) * 0.1f);
      }
      if (t == GgmlType.Q8_K) {
        GgmlReference.putI32(b, o, Float.floatToRawIntBits(random.nextFloat() * 0.01f));
      }
    }
    return b;
  }

  @ParameterizedTest
  @MethodSource("blockTypes")
  void dequantizeMatchesTheReferenceValueByValue(GgmlType t) {
    BlockCodec codec = BlockCodec.of(t);
    int blocks = 40;
    int n = blocks * t.blockSize();
    byte[] b = randomBlocks(t, blocks, 3, 7);
    float[] row = new float[5 + n];
    codec.dequantizeRow(MemorySegment.ofArray(b), 3, n, row, 5);
    float[] block = new float[t.blockSize()];
    for (int k = 0; k < blocks; k++) {
      int o = 3 + k * t.typeSize();
      codec.dequantize(MemorySegment.ofArray(b), o, block, 0);
      for (int i = 0; i < t.blockSize(); i++) {
        int bits = Float.floatToRawIntBits(GgmlReference.value(t, b, o, i));
        assertThat(Float.floatToRawIntBits(row[5 + k * t.blockSize() + i]))
            .as("%s block %d value %d", t, k, i)
            .isEqualTo(bits);
        assertThat(Float.floatToRawIntBits(block[i])).isEqualTo(bits);
      }
    }
  }

  /** The documented range of each type's codes. */
  private static int[] codeRange(GgmlType t) {
    return switch (t) {
      case Q8_0, Q8_1, Q8_K -> new int[] {-128, 127};
      case Q4_0 -> new int[] {-8, 7};
      case Q5_0 -> new int[] {-16, 15};
      case Q4_1, Q4_K -> new int[] {0, 15};
      case Q5_1, Q5_K -> new int[] {0, 31};
      case Q6_K -> new int[] {-32, 31};
      default -> throw new IllegalArgumentException(t.toString());
    };
  }

  @ParameterizedTest
  @MethodSource("blockTypes")
  void valuesAreTheCodesTimesTheirScale(GgmlType t) {
    BlockCodec codec = BlockCodec.of(t);
    int blocks = 200;
    byte[] b = randomBlocks(t, blocks, 0, 8);
    MemorySegment s = MemorySegment.ofArray(b);
    float[] codes = new float[t.blockSize()];
    float[] values = new float[t.blockSize()];
    int[] range = codeRange(t);
    boolean[] seen = new boolean[range[1] - range[0] + 1];
    for (int k = 0; k < blocks; k++) {
      long o = (long) k * t.typeSize();
      codec.codes(s, o, codes, 0);
      codec.dequantize(s, o, values, 0);
      float d = codec.d(s, o);
      for (int i = 0; i < t.blockSize(); i++) {
        float c = codes[i];
        assertThat(c).isEqualTo((float) (int) c).isBetween((float) range[0], (float) range[1]);
        seen[(int) c - range[0]] = true;
        float expected =
            switch (t) {
              case Q4_1, Q5_1 -> c * d + codec.m(s, o);
              case Q4_K, Q5_K -> {
                int sub = i / 32;
                float dmin = GgmlReference.f16(b, (int) o + 2);
                yield d * Q4_KCodec.scale(s, o + 4, sub) * c - dmin * Q4_KCodec.min(s, o + 4, sub);
              }
              case Q6_K -> d * ((Q6_KCodec) codec).scale(s, o, i / 16) * c;
              default -> c * d;
            };
        assertThat(values[i]).as("%s block %d value %d", t, k, i).isEqualTo(expected);
      }
    }
    for (int c = 0; c < seen.length; c++) {
      assertThat(seen[c]).as("%s code %d", t, c + range[0]).isTrue();
    }
  }

  /** Rows of 64 blocks at many scales, with the cases the quantizers treat specially. */
  private static float[] quantizerInput(GgmlType t, long seed) {
    Random random = new Random(seed);
    int qk = t.blockSize();
    float[] x = new float[64 * qk];
    for (int k = 0; k < 64; k++) {
      double scale = Math.pow(10, random.nextInt(9) - 5);
      for (int j = 0; j < qk; j++) {
        x[k * qk + j] = (float) (random.nextGaussian() * scale);
      }
      int o = k * qk;
      switch (k % 8) {
        case 0 -> Arrays.fill(x, o, o + qk, 0f); // all zero: d = 0
        case 1 -> Arrays.fill(x, o, o + qk, (float) scale); // constant: max = min
        case 2 -> x[o + random.nextInt(qk)] = (float) (-50 * scale); // a negative extreme
        case 3 -> x[o + random.nextInt(qk)] = (float) (50 * scale); // a positive extreme
        case 4 -> { // ties of the largest magnitude, and signed zeros
          x[o + 3] = 2f;
          x[o + 9] = -2f;
          x[o + 11] = -0f;
          x[o + 12] = 0f;
        }
        case 5 -> { // codes exactly halfway between two steps
          for (int j = 0; j < qk; j++) {
            x[o + j] = (j % 9 - 4) + 0.5f;
          }
          x[o] = 127f;
        }
        default -> {}
      }
    }
    return x;
  }

  @ParameterizedTest
  @MethodSource("quantizedTypes")
  void quantizeMatchesTheReferenceByteForByte(GgmlType t) {
    BlockCodec codec = BlockCodec.of(t);
    for (long seed = 1; seed <= 4; seed++) {
      float[] x = quantizerInput(t, seed);
      int blocks = x.length / t.blockSize();
      MemorySegment out = MemorySegment.ofArray(new byte[7 + blocks * t.typeSize()]);
      codec.quantizeRow(x, 0, x.length, out, 7);
      for (int k = 0; k < blocks; k++) {
        byte[] expected = GgmlReference.quantize(t, x, k * t.blockSize(), false);
        byte[] actual =
            out.asSlice(7 + (long) k * t.typeSize(), t.typeSize()).toArray(ValueLayout.JAVA_BYTE);
        assertThat(actual).as("%s seed %d block %d", t, seed, k).isEqualTo(expected);
        if (t == GgmlType.Q8_1) {
          MemorySegment x86 = MemorySegment.ofArray(new byte[t.typeSize()]);
          Q8_1Codec.INSTANCE.quantizeX86(x, k * t.blockSize(), x86, 0);
          assertThat(x86.toArray(ValueLayout.JAVA_BYTE))
              .as("x86 q8_1 seed %d block %d", seed, k)
              .isEqualTo(GgmlReference.quantize(t, x, k * t.blockSize(), true));
        }
      }
    }
  }

  @ParameterizedTest
  @MethodSource("quantizedTypes")
  void roundTripsWithinTheStatedBound(GgmlType t) {
    BlockCodec codec = BlockCodec.of(t);
    float[] x = quantizerInput(t, 9);
    int qk = t.blockSize();
    MemorySegment q = MemorySegment.ofArray(new byte[x.length / qk * t.typeSize()]);
    codec.quantizeRow(x, 0, x.length, q, 0);
    float[] y = new float[x.length];
    codec.dequantizeRow(q, 0, x.length, y, 0);
    for (int k = 0; k < x.length / qk; k++) {
      double min = Double.MAX_VALUE;
      double max = -Double.MAX_VALUE;
      double amax = 0;
      for (int j = 0; j < qk; j++) {
        min = Math.min(min, x[k * qk + j]);
        max = Math.max(max, x[k * qk + j]);
        amax = Math.max(amax, Math.abs(x[k * qk + j]));
      }
      // half a step, plus the stored scale's (and minimum's) fp16 rounding times the largest code;
      // values opposite the extreme of q4_0 / q5_0 may clamp: a full step
      double bound =
          switch (t) {
            case Q8_0, Q8_1 -> amax / 127 / 2 + 127 * fp16Error(amax / 127);
            case Q8_K -> amax / 127 / 2;
            case Q4_0 -> amax / 8 + 8 * fp16Error(amax / 8);
            case Q5_0 -> amax / 16 + 16 * fp16Error(amax / 16);
            case Q4_1 -> (max - min) / 15 / 2 + 15 * fp16Error((max - min) / 15) + fp16Error(min);
            case Q5_1 -> (max - min) / 31 / 2 + 31 * fp16Error((max - min) / 31) + fp16Error(min);
            default -> throw new IllegalArgumentException(t.toString());
          };
      bound = bound * (1 + 1e-5) + 1e-6 * amax + 1e-30;
      for (int j = 0; j < qk; j++) {
        assertThat((double) Math.abs(x[k * qk + j] - y[k * qk + j]))
            .as("%s block %d value %d: %s -> %s", t, k, j, x[k * qk + j], y[k * qk + j])
            .isLessThanOrEqualTo(bound);
      }
    }
  }

  /** {@code |v − fp16(v)|}. */
  private static double fp16Error(double v) {
    return Math.abs(v - Float.float16ToFloat(Float.floatToFloat16((float) v)));
  }

  private static byte[] quantize(BlockCodec codec, float[] x) {
    MemorySegment b = MemorySegment.ofArray(new byte[codec.blockBytes()]);
    codec.quantize(x, 0, b, 0);
    return b.toArray(ValueLayout.JAVA_BYTE);
  }

  @Test
  void q4_1StoresTheMinimumAndCodesFromIt() {
    float[] x = new float[32];
    for (int j = 0; j < 32; j++) {
      x[j] = j % 16 - 3; // min -3, max 12: d = 15/15 = 1, q_j = x_j + 3
    }
    byte[] b = quantize(Q4_1Codec.INSTANCE, x);
    assertThat(Arrays.copyOf(b, 4)).containsExactly(0x00, 0x3c, 0x00, 0xc2); // d = 1, m = -3
    for (int j = 0; j < 16; j++) {
      assertThat(b[4 + j]).as("byte %d", j).isEqualTo((byte) (j | j << 4));
    }
  }

  @Test
  void q5_1PutsTheFifthBitsInTheWordBeforeTheNibbles() {
    float[] x = new float[32];
    for (int j = 0; j < 32; j++) {
      x[j] = j - 10; // min -10, max 21: d = 31/31 = 1, q_j = j
    }
    byte[] b = quantize(Q5_1Codec.INSTANCE, x);
    assertThat(Arrays.copyOf(b, 8))
        .containsExactly(0x00, 0x3c, 0x00, 0xc9, 0x00, 0x00, 0xff, 0xff); // d, m = -10, qh
    for (int j = 0; j < 16; j++) {
      assertThat(b[8 + j]).as("byte %d", j).isEqualTo((byte) (j | j << 4));
    }
  }

  @Test
  void q8_1ReferenceRoundsHalvesAwayFromZeroAndX86ToEven() {
    float[] x = new float[32];
    x[0] = 127f; // amax 127: d = 1 and 1/d = 127/amax = 1 exactly
    x[1] = 2.5f;
    x[2] = 0.5f;
    x[3] = -1.5f;
    byte[] ref = quantize(Q8_1Codec.INSTANCE, x);
    MemorySegment x86 = MemorySegment.ofArray(new byte[36]);
    Q8_1Codec.INSTANCE.quantizeX86(x, 0, x86, 0);
    byte[] even = x86.toArray(ValueLayout.JAVA_BYTE);
    assertThat(Arrays.copyOfRange(ref, 4, 8)).containsExactly(127, 3, 1, -2);
    assertThat(Arrays.copyOfRange(even, 4, 8)).containsExactly(127, 2, 0, -2);
    short s = Float.floatToFloat16(127 + 3 + 1 - 2);
    assertThat(Arrays.copyOf(ref, 4)).containsExactly(0x00, 0x3c, (byte) s, (byte) (s >> 8));
    short t = Float.floatToFloat16(127 + 2 + 0 - 2);
    assertThat(Arrays.copyOf(even, 4)).containsExactly(0x00, 0x3c, (byte) t, (byte) (t >> 8));
    assertThat(Q8_1Codec.INSTANCE.s(MemorySegment.ofArray(ref), 0)).isEqualTo(129f);
  }

  @Test
  void q8_0X86QuantizerHasTheCodesOfQ8_1sAndOnlyOtherTypesKeepTheReference() {
    Random rnd = new Random(7);
    for (int trial = 0; trial < 200; trial++) {
      float[] x = new float[32];
      for (int j = 0; j < 32; j++) {
        // halves of the scale now and then, where the two roundings differ
        x[j] = trial % 2 == 0 ? (float) rnd.nextGaussian() : (rnd.nextInt(255) - 127) / 2f;
      }
      MemorySegment q8_0 = MemorySegment.ofArray(new byte[34]);
      MemorySegment q8_1 = MemorySegment.ofArray(new byte[36]);
      Q8_0Codec.INSTANCE.quantizeX86(x, 0, q8_0, 0);
      Q8_1Codec.INSTANCE.quantizeX86(x, 0, q8_1, 0);
      float[] a = new float[32];
      float[] b = new float[32];
      Q8_0Codec.INSTANCE.codes(q8_0, 0, a, 0);
      Q8_1Codec.INSTANCE.codes(q8_1, 0, b, 0);
      assertThat(a).containsExactly(b);
      assertThat(Q8_0Codec.INSTANCE.d(q8_0, 0)).isEqualTo(Q8_1Codec.INSTANCE.d(q8_1, 0));
      MemorySegment q4x86 = MemorySegment.ofArray(new byte[18]);
      Q4_0Codec.INSTANCE.quantizeX86(x, 0, q4x86, 0);
      assertThat(q4x86.toArray(ValueLayout.JAVA_BYTE))
          .containsExactly(quantize(Q4_0Codec.INSTANCE, x));
    }
    float[] tie = new float[32];
    tie[0] = 127f;
    tie[1] = 2.5f;
    MemorySegment even = MemorySegment.ofArray(new byte[34]);
    Q8_0Codec.INSTANCE.quantizeX86(tie, 0, even, 0);
    assertThat(even.get(ValueLayout.JAVA_BYTE, Q8_0Codec.QS + 1)).isEqualTo((byte) 2);
    assertThat(quantize(Q8_0Codec.INSTANCE, tie)[Q8_0Codec.QS + 1]).isEqualTo((byte) 3);
  }

  @Test
  void q8_KScalesByTheSignedExtremeAndSumsEachSixteenCodes() {
    float[] x = new float[256];
    x[5] = -2f; // the extreme: iscale = -127 / -2 = 63.5, its code -127
    x[17] = 1f; // 63.5 rounds to even: 64
    x[18] = 0.5f; // 31.75: 32
    x[19] = -1f; // -64
    x[40] = 1.5f; // 95.25: 95
    MemorySegment b = MemorySegment.ofArray(quantize(Q8_KCodec.INSTANCE, x));
    Q8_KCodec q8 = Q8_KCodec.INSTANCE;
    assertThat(q8.d(b, 0)).isEqualTo(1f / 63.5f);
    assertThat(b.get(ValueLayout.JAVA_BYTE, 4 + 5)).isEqualTo((byte) -127);
    assertThat(b.get(ValueLayout.JAVA_BYTE, 4 + 17)).isEqualTo((byte) 64);
    assertThat(b.get(ValueLayout.JAVA_BYTE, 4 + 18)).isEqualTo((byte) 32);
    assertThat(b.get(ValueLayout.JAVA_BYTE, 4 + 19)).isEqualTo((byte) -64);
    assertThat(q8.bsum(b, 0, 0)).isEqualTo(-127);
    assertThat(q8.bsum(b, 0, 1)).isEqualTo(64 + 32 - 64);
    assertThat(q8.bsum(b, 0, 2)).isEqualTo(95);
    assertThat(q8.bsum(b, 0, 3)).isZero();
    byte[] zero = quantize(q8, new float[256]);
    assertThat(zero).containsOnly((byte) 0);
  }

  @ParameterizedTest
  @MethodSource("blockTypes")
  void dotIsTheBlockTimesTheVector(GgmlType t) {
    BlockCodec codec = BlockCodec.of(t);
    int n = 6 * t.blockSize();
    byte[] b = randomBlocks(t, 6, 0, 10);
    MemorySegment s = MemorySegment.ofArray(b);
    Random random = new Random(11);
    float[] x = new float[n + 2];
    for (int i = 0; i < x.length; i++) {
      x[i] = random.nextFloat() * 2 - 1;
    }
    double exact = 0;
    double magnitude = 0;
    for (int i = 0; i < n; i++) {
      double p =
          (double) GgmlReference.value(t, b, i / t.blockSize() * t.typeSize(), i % t.blockSize())
              * x[2 + i];
      exact += p;
      magnitude += Math.abs(p);
    }
    assertThat((double) codec.dot(s, 0, n, x, 2)).isCloseTo(exact, within(1e-5 * magnitude));
    float[] oneHot = new float[n];
    for (int i = 0; i < n; i += 37) {
      oneHot[i] = 1f;
      float value = GgmlReference.value(t, b, i / t.blockSize() * t.typeSize(), i % t.blockSize());
      assertThat(codec.dot(s, 0, n, oneHot, 0)).as("%s e%d", t, i).isEqualTo(value + 0f);
      oneHot[i] = 0f;
    }
  }

  @Test
  void rowsMustBeWholeBlocksAndKQuantsAreReadOnly() {
    MemorySegment s = MemorySegment.ofArray(new byte[1000]);
    assertThatThrownBy(() -> Q4_0Codec.INSTANCE.quantizeRow(new float[33], 0, 33, s, 0))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessage("Q4_0 needs a multiple of 32 values, got 33");
    assertThatThrownBy(() -> Q6_KCodec.INSTANCE.dequantizeRow(s, 0, 100, new float[100], 0))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("multiple of 256");
    for (GgmlType t : List.of(GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K)) {
      assertThatThrownBy(() -> BlockCodec.of(t).quantize(new float[256], 0, s, 0))
          .isInstanceOf(UnsupportedOperationException.class)
          .hasMessageContaining(t.toString());
    }
  }

  @Test
  void roundingRulesOfTheQuantizers() {
    assertThat(BlockCodec.roundf(2.5f)).isEqualTo(3);
    assertThat(BlockCodec.roundf(-2.5f)).isEqualTo(-3);
    assertThat(BlockCodec.roundf(0.49999997f)).isZero();
    assertThat(BlockCodec.roundf(Float.NaN)).isZero();
    assertThat(BlockCodec.nearestInt(2.5f)).isEqualTo(2);
    assertThat(BlockCodec.nearestInt(3.5f)).isEqualTo(4);
    assertThat(BlockCodec.nearestInt(-2.5f)).isEqualTo(-2);
    assertThat(BlockCodec.nearestInt(-2.6f)).isEqualTo(-3);
  }
}
