package io.kvslim.tensor;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class LlamaCppMathTest {

  /** {input, glibc 2.36 sincosf's sin, cos} as float bits, computed on x86-64 (FMA variant). */
  private static final int[][] GLIBC_SINCOSF = {
    {0x3727c5ac, 0x3727c5ac, 0x3f800000}, // 1e-5: below 2^-12, sin y = y
    {0x3f1e5af8, 0x3f1472b4, 0x3f509086}, // 0.6185756, no reduction; Math.sin rounds differently
    {0x3e5a83d7, 0x3e58dc41, 0x3f7a3181}, // 0.21339355; Math rounds differently
    {0x3f400000, 0x3f2e7fe1, 0x3f3b4ff6}, // 0.75, first reduced input
    {0x412af3a7, 0xbf73b654, 0xbe9cb88a}, // 10.684485; Math rounds differently
    {0x408e432a, 0xbf76f333, 0xbe86eebc}, // 4.4456987; Math rounds differently
    {0x400dab87, 0x3f4ce871, 0xbf1974b8}, // 2.2135942; Math rounds differently
    {0xc0400000, 0xbe1081c3, 0xbf7d7026}, // -3
    {0x42c80000, 0xbf01a12e, 0x3f5cc0ee}, // 100
    {0x42f00000, 0x3f14a2ef, 0x3f506e2a}, // 120, first input of the 192-bit reduction
    {0x43278000, 0xbf56cdee, 0xbf0b4423}, // 167.5; Math rounds differently
    {0x43368000, 0x3e913e11, 0x3f757bc8}, // 182.5; Math rounds differently
    {0x434c8000, 0xbe95951c, 0xbf74d4c4}, // 204.5; Math rounds differently
    {0x447a2000, 0x3f7eca46, 0x3dc6dffc}, // 1000.5
    {0xc4425000, 0x3f75008e, 0xbe94753a}, // -777.25
    {0x4640e6b6, 0xbf344b08, 0x3f35be20}, // 12345.678
    {0x7149f2ca, 0xbf4a89b0, 0xbf1c9222}, // 1e30
  };

  @Test
  void sinCosIsGlibcsSincosfBitForBit() {
    float[] sin = new float[1];
    float[] cos = new float[1];
    for (int[] c : GLIBC_SINCOSF) {
      float y = Float.intBitsToFloat(c[0]);
      LlamaCppMath.sinCos(y, sin, cos, 0);
      assertThat(Float.floatToRawIntBits(sin[0])).as("sinf(%s)", y).isEqualTo(c[1]);
      assertThat(Float.floatToRawIntBits(cos[0])).as("cosf(%s)", y).isEqualTo(c[2]);
    }
  }

  @Test
  void sinCosIsWithinOneUlpEverywhereAndNanForInfinities() {
    SplittableRandom random = new SplittableRandom(7);
    float[] sin = new float[1];
    float[] cos = new float[1];
    for (int i = 0; i < 200_000; i++) {
      float y = i % 2 == 0 ? (float) random.nextDouble(-500, 500) : randomFinite(random);
      LlamaCppMath.sinCos(y, sin, cos, 0);
      assertThat((double) sin[0]).isCloseTo(Math.sin(y), within(ulp(Math.sin(y))));
      assertThat((double) cos[0]).isCloseTo(Math.cos(y), within(ulp(Math.cos(y))));
    }
    for (float y : new float[] {Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, Float.NaN}) {
      LlamaCppMath.sinCos(y, sin, cos, 0);
      assertThat(sin[0]).isNaN();
      assertThat(cos[0]).isNaN();
    }
  }

  private static float randomFinite(SplittableRandom random) {
    float y;
    do {
      y = Float.intBitsToFloat(random.nextInt());
    } while (!Float.isFinite(y));
    return y;
  }

  private static double ulp(double v) {
    return Math.ulp((float) v);
  }

  /** {input, ggml_v_expf (AVX-512)} as float bits, computed with the intrinsics. */
  private static final int[][] GGML_V_EXPF = {
    {0x00000000, 0x3f800000}, // e^0 = 1
    {0xbf000000, 0x3f1b4597}, // e^-0.5, not the correctly rounded value
    {0x3f800000, 0x402df855}, // e^1, not the correctly rounded value
    {0x40200000, 0x4142eb7f}, // e^2.5
    {0xc1a20000, 0x30dc9eef}, // e^-20.25, not the correctly rounded value
    {0xc2ae0000, 0x00b33686}, // e^-87
    {0xc2b10000, 0x0027fce2}, // e^-88.5, subnormal
    {0xc2c80000, 0x0000001b}, // e^-100, subnormal
    {0xc2cf0000, 0x00000001}, // e^-103.5, the smallest subnormal
    {0xc2d00000, 0x00000000}, // e^-104
    {0xc30c0000, 0x00000000}, // e^-140
    {0xc3480000, 0x00000000}, // e^-200, beyond the 2^±192 cut
    {0x42b00000, 0x7ef882b7}, // e^88
    {0x42b20000, 0x7f800000}, // e^89 = ∞
    {0x43160000, 0x7f800000}, // e^150
    {0xff800000, 0x00000000}, // e^-∞ = 0
    {0x7f800000, 0x7f800000}, // e^∞ = ∞
    {0x3f317215, 0x3ffffffd}, // e^0.693147
    {0xc0e80000, 0x3a3a2b00}, // e^-7.25, not the correctly rounded value
  };

  @Test
  void expIsGgmlsVectorExpfBitForBit() {
    for (int[] c : GGML_V_EXPF) {
      float x = Float.intBitsToFloat(c[0]);
      assertThat(Float.floatToRawIntBits(LlamaCppMath.exp(x))).as("exp(%s)", x).isEqualTo(c[1]);
    }
    assertThat(LlamaCppMath.exp(Float.NaN)).isNaN();
  }

  @Test
  void expIsWithinAboutTwoUlpOfTheTrueValue() {
    SplittableRandom random = new SplittableRandom(3);
    for (int i = 0; i < 100_000; i++) {
      float x = (float) random.nextDouble(-80, 80);
      double exact = Math.exp(x);
      assertThat((double) LlamaCppMath.exp(x)).isCloseTo(exact, within(3 * ulp(exact)));
    }
  }

  @Test
  void siluUsesTheVectorExpf() {
    float x = -0.5f;
    assertThat(LlamaCppMath.silu(x)).isEqualTo(x / (1f + LlamaCppMath.exp(0.5f)));
    assertThat(LlamaCppMath.silu(0f)).isZero();
    assertThat(LlamaCppMath.silu(-200f)).isEqualTo(-0f);
  }

  @Test
  void sum16AddsHalvesThenQuartersThenPairs() {
    float[] v = new float[16];
    v[0] = 1e8f;
    v[8] = -1e8f;
    v[1] = 1f;
    v[4] = 0.5f;
    // halves: lane 0 is 1e8 + -1e8 = 0 exactly, so the small terms survive
    assertThat(LlamaCppMath.sum16(v, 0)).isEqualTo(1.5f);
    float sequential = 0f;
    for (float x : v) {
      sequential += x;
    }
    assertThat(sequential).isNotEqualTo(1.5f); // 1e8 swallows 1 and 0.5 in index order
    float[] strided = new float[32];
    for (int l = 0; l < 16; l++) {
      strided[1 + 2 * l] = v[l];
    }
    assertThat(LlamaCppMath.sum16(strided, 1, 2)).isEqualTo(1.5f);
  }

  @Test
  void dotOfFewerThan64IsASequentialUnfusedSum() {
    SplittableRandom random = new SplittableRandom(5);
    float[] x = new float[100];
    float[] y = new float[100];
    for (int i = 0; i < 100; i++) {
      x[i] = (float) random.nextGaussian();
      y[i] = (float) random.nextGaussian();
    }
    float[] scratch = new float[64];
    float sequential = 0f;
    for (int i = 0; i < 32; i++) {
      sequential += x[i] * y[i];
    }
    assertThat(LlamaCppMath.dot(x, 0, y, 0, 32, scratch)).isEqualTo(sequential);
    // 100 = one step of 64 (lanes folded 0+2, 1+3, then the 16-lane tree), then 36 one by one
    float[] lanes = new float[64];
    for (int e = 0; e < 64; e++) {
      lanes[e] = Math.fma(x[e], y[e], 0f);
    }
    float[] folded = new float[16];
    for (int l = 0; l < 16; l++) {
      folded[l] = (lanes[l] + lanes[32 + l]) + (lanes[16 + l] + lanes[48 + l]);
    }
    float expected = LlamaCppMath.sum16(folded, 0);
    for (int i = 64; i < 100; i++) {
      expected += x[i] * y[i];
    }
    assertThat(LlamaCppMath.dot(x, 0, y, 0, 100, scratch)).isEqualTo(expected);
  }
}
