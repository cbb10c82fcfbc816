package io.kvslim.kv.format;

import static org.assertj.core.api.Assertions.assertThat;

import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The KIVI encoders store, for every element, exactly the code of the per-element definition
 * ({@link AsymmetricCodes#code} with the stored fp16 zero point and scale of its group), read back
 * one code at a time with {@link AsymmetricCodes#get}; slots beyond the encoded tokens stay zero.
 */
class KiviEncodingTest {
  private static final int HEAD_DIM = 64;

  private static float[] data(SplittableRandom r, int n) {
    float[] x = new float[n];
    for (int i = 0; i < n; i++) {
      x[i] = (float) (r.nextGaussian() * (1 + (i % 7)));
    }
    return x;
  }

  @Test
  void keyCodesAreEachElementsCodeInItsChannel() {
    SplittableRandom r = new SplittableRandom(3);
    for (int bits : new int[] {1, 2, 4, 8}) {
      for (int count : new int[] {1, 5, 31, 32}) {
        KiviKeyFormat f = new KiviKeyFormat(bits);
        int stride = HEAD_DIM + 16;
        float[] src = data(r, 7 + count * stride);
        MemorySegment block = MemorySegment.ofArray(new byte[(int) f.blockBytes(32, HEAD_DIM)]);
        f.encode(src, 7, stride, count, block, 0, 32, HEAD_DIM);
        long codes = 4L * HEAD_DIM;
        int rowBytes = HEAD_DIM * bits / 8;
        for (int t = 0; t < 32; t++) {
          for (int c = 0; c < HEAD_DIM; c++) {
            int got = AsymmetricCodes.get(block, codes + (long) t * rowBytes, c, bits);
            int want =
                t < count
                    ? AsymmetricCodes.code(
                        src[7 + t * stride + c],
                        f.channelZeroPoint(block, c),
                        f.channelScale(block, c),
                        bits)
                    : 0;
            assertThat(got)
                .as("bits %d count %d token %d channel %d", bits, count, t, c)
                .isEqualTo(want);
          }
        }
      }
    }
  }

  @Test
  void valueCodesAreEachElementsCodeInItsGroup() {
    SplittableRandom r = new SplittableRandom(4);
    for (int bits : new int[] {1, 2, 4, 8}) {
      for (int group : new int[] {8, 16, 32, 64}) {
        KiviValueFormat f = new KiviValueFormat(bits, group);
        int rows = 5;
        float[] src = data(r, rows * HEAD_DIM);
        MemorySegment block = MemorySegment.ofArray(new byte[(int) f.blockBytes(rows, HEAD_DIM)]);
        f.encode(src, 0, HEAD_DIM, rows, block, 0, rows, HEAD_DIM);
        int rowBytes = f.rowBytes(HEAD_DIM);
        for (int t = 0; t < rows; t++) {
          long offset = (long) t * rowBytes;
          for (int c = 0; c < HEAD_DIM; c++) {
            int g = c / group;
            int got = AsymmetricCodes.get(block, offset + f.rowScaleBytes(HEAD_DIM), c, bits);
            int want =
                AsymmetricCodes.code(
                    src[t * HEAD_DIM + c],
                    f.groupZeroPoint(block, offset, g),
                    f.groupScale(block, offset, g),
                    bits);
            assertThat(got)
                .as("bits %d group %d token %d channel %d", bits, group, t, c)
                .isEqualTo(want);
          }
        }
      }
    }
  }

  /**
   * The sixteen-channel packer equals {@link AsymmetricCodes#code} on quotients a few ulps either
   * side of every rounding boundary k + 1/2 (where adding 1/2 in float rounds past it), on exact
   * halves, below zero, beyond the top code, with a zero scale, infinities and NaN.
   */
  @Test
  void packedCodesEqualTheCodeOfEachElementAtRoundingBoundaries() {
    if (!AsymmetricCodes.packs2()) {
      return; // the packer needs 16-lane vectors; the encoders fall back to code() elsewhere
    }
    SplittableRandom r = new SplittableRandom(5);
    float[] zeros = new float[16];
    float[] scales = new float[16];
    float[] x = new float[16];
    for (int round = 0; round < 20000; round++) {
      float zero = (float) r.nextGaussian();
      float scale = round % 97 == 0 ? 0f : (float) Math.abs(r.nextGaussian()) + 1e-3f;
      for (int i = 0; i < 16; i++) {
        zeros[i] = round % 2 == 0 ? zero : (float) r.nextGaussian();
        scales[i] = round % 2 == 0 ? scale : (float) Math.abs(r.nextGaussian()) + 1e-3f;
        float boundary = r.nextInt(-2, 6) + 0.5f;
        float q = boundary;
        int ulps = r.nextInt(-3, 4);
        for (int k = 0; k < Math.abs(ulps); k++) {
          q = ulps > 0 ? Math.nextUp(q) : Math.nextDown(q);
        }
        x[i] =
            switch (r.nextInt(40)) {
              case 0 -> Float.NaN;
              case 1 -> Float.POSITIVE_INFINITY;
              case 2 -> Float.NEGATIVE_INFINITY;
              case 3 -> zeros[i];
              default -> zeros[i] + q * scales[i];
            };
      }
      int packed = AsymmetricCodes.pack2(x, 0, zeros, scales, 0);
      int shared = AsymmetricCodes.pack2(x, 0, zeros[0], scales[0]);
      for (int i = 0; i < 16; i++) {
        assertThat((packed >>> (2 * i)) & 3)
            .as("x %s zero %s scale %s", x[i], zeros[i], scales[i])
            .isEqualTo(AsymmetricCodes.code(x[i], zeros[i], scales[i], 2));
        assertThat((shared >>> (2 * i)) & 3)
            .as("x %s zero %s scale %s", x[i], zeros[0], scales[0])
            .isEqualTo(AsymmetricCodes.code(x[i], zeros[0], scales[0], 2));
      }
    }
  }

  /**
   * The 1-bit packer equals {@link AsymmetricCodes#code} with one bit: quotients a few ulps either
   * side of the threshold 1/2, below 0, beyond 1, a zero scale, infinities and NaN.
   */
  @Test
  void oneBitPackedCodesEqualTheCodeOfEachElementAtTheMidpoint() {
    if (!AsymmetricCodes.packs2()) {
      return; // the packer needs 16-lane vectors; the encoders fall back to code() elsewhere
    }
    SplittableRandom r = new SplittableRandom(6);
    float[] zeros = new float[16];
    float[] scales = new float[16];
    float[] x = new float[16];
    for (int round = 0; round < 20000; round++) {
      for (int i = 0; i < 16; i++) {
        zeros[i] = (float) r.nextGaussian();
        scales[i] = round % 97 == 0 ? 0f : (float) Math.abs(r.nextGaussian()) + 1e-3f;
        float q = r.nextInt(4) == 0 ? r.nextInt(-2, 4) + 0.5f : 0.5f;
        int ulps = r.nextInt(-3, 4);
        for (int k = 0; k < Math.abs(ulps); k++) {
          q = ulps > 0 ? Math.nextUp(q) : Math.nextDown(q);
        }
        x[i] =
            switch (r.nextInt(40)) {
              case 0 -> Float.NaN;
              case 1 -> Float.POSITIVE_INFINITY;
              case 2 -> Float.NEGATIVE_INFINITY;
              case 3 -> zeros[i];
              case 4 -> zeros[i] + scales[i];
              default -> zeros[i] + q * scales[i];
            };
      }
      int packed = AsymmetricCodes.pack1(x, 0, zeros, scales, 0);
      int shared = AsymmetricCodes.pack1(x, 0, zeros[0], scales[0]);
      assertThat(packed >>> 16).isZero();
      assertThat(shared >>> 16).isZero();
      for (int i = 0; i < 16; i++) {
        assertThat((packed >>> i) & 1)
            .as("x %s zero %s scale %s", x[i], zeros[i], scales[i])
            .isEqualTo(AsymmetricCodes.code(x[i], zeros[i], scales[i], 1));
        assertThat((shared >>> i) & 1)
            .as("x %s zero %s scale %s", x[i], zeros[0], scales[0])
            .isEqualTo(AsymmetricCodes.code(x[i], zeros[0], scales[0], 1));
      }
    }
  }

  /**
   * AsymKV's 1-bit quantizer (METHODS.md Q7): every decoded key is its channel's stored min or max
   * and every decoded value its group's, the nearer one (threshold at the midpoint); the stored
   * pair brackets the group's true min and max; bytes follow the formula.
   */
  @Test
  void oneBitOutputsAreTheGroupsMinOrMax() {
    SplittableRandom r = new SplittableRandom(7);
    KiviKeyFormat keys = new KiviKeyFormat(1);
    int count = 32;
    assertThat(keys.blockBytes(count, HEAD_DIM)).isEqualTo(4L * HEAD_DIM + count * HEAD_DIM / 8);
    float[] src = data(r, count * HEAD_DIM);
    MemorySegment block = MemorySegment.ofArray(new byte[(int) keys.blockBytes(count, HEAD_DIM)]);
    keys.encode(src, 0, HEAD_DIM, count, block, 0, count, HEAD_DIM);
    float[] out = new float[HEAD_DIM];
    for (int c = 0; c < HEAD_DIM; c++) {
      float min = Float.POSITIVE_INFINITY;
      float max = Float.NEGATIVE_INFINITY;
      for (int t = 0; t < count; t++) {
        min = Math.min(min, src[t * HEAD_DIM + c]);
        max = Math.max(max, src[t * HEAD_DIM + c]);
      }
      float lo = keys.channelZeroPoint(block, c);
      float hi = lo + keys.channelScale(block, c);
      assertThat(lo)
          .isLessThanOrEqualTo(min)
          .isCloseTo(min, org.assertj.core.data.Offset.offset(Math.abs(min) / 512));
      assertThat(hi)
          .isGreaterThanOrEqualTo(max)
          .isCloseTo(
              max, org.assertj.core.data.Offset.offset((Math.abs(max) + Math.abs(min)) / 256));
    }
    for (int t = 0; t < count; t++) {
      keys.decode(block, t, count, HEAD_DIM, out, 0);
      for (int c = 0; c < HEAD_DIM; c++) {
        float lo = keys.channelZeroPoint(block, c);
        float hi = lo + keys.channelScale(block, c);
        float x = src[t * HEAD_DIM + c];
        assertThat(out[c])
            .as("token %d channel %d", t, c)
            .isEqualTo((x - lo) / (hi - lo) >= 0.5f ? hi : lo);
      }
    }
    int group = 32;
    KiviValueFormat values = new KiviValueFormat(1, group);
    assertThat(values.rowBytes(HEAD_DIM)).isEqualTo(HEAD_DIM / group * 4 + HEAD_DIM / 8);
    MemorySegment rows = MemorySegment.ofArray(new byte[(int) values.blockBytes(count, HEAD_DIM)]);
    values.encode(src, 0, HEAD_DIM, count, rows, 0, count, HEAD_DIM);
    for (int t = 0; t < count; t++) {
      values.decode(rows, t, count, HEAD_DIM, out, 0);
      long offset = (long) t * values.rowBytes(HEAD_DIM);
      for (int c = 0; c < HEAD_DIM; c++) {
        float lo = values.groupZeroPoint(rows, offset, c / group);
        float hi = lo + values.groupScale(rows, offset, c / group);
        float x = src[t * HEAD_DIM + c];
        assertThat(out[c])
            .as("token %d channel %d", t, c)
            .isEqualTo((x - lo) / (hi - lo) >= 0.5f ? hi : lo);
      }
    }
  }
}
