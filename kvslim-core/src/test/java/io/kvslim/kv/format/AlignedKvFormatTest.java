package io.kvslim.kv.format;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * AlignedKV's planes (METHODS.md Q8): the planes rebuild fp16 exactly, a partial read differs only
 * in its skipped nibbles, the fused kernels equal a scalar read at the same levels, and the bits
 * read are counted exactly.
 */
class AlignedKvFormatTest {
  static final int DIM = 64;

  static float[] rows(int n, long seed) {
    SplittableRandom r = new SplittableRandom(seed);
    float[] x = new float[n * DIM];
    for (int i = 0; i < x.length; i++) {
      x[i] = (float) (r.nextGaussian() * Math.pow(2, r.nextInt(-6, 4)));
    }
    return x;
  }

  static MemorySegment block(AlignedKvFormat f, float[] x, int n, int cap, int d) {
    MemorySegment b = MemorySegment.ofArray(new byte[(int) f.blockBytes(cap, d)]);
    f.encode(x, 0, d, n, b, 0, cap, d);
    return b;
  }

  @Test
  void planesRebuildFp16AndPartialReadsDifferOnlyInSkippedNibbles() {
    AlignedKvFormat f = new AlignedKvFormat(true, 4, 8, 11);
    int n = 20;
    float[] x = rows(n, 1);
    MemorySegment b = block(f, x, n, 32, DIM);
    assertThat(b.byteSize()).isEqualTo(DIM + 32 + 2L * 32 * DIM);
    float[] row = new float[DIM];
    for (int s = 0; s < n; s++) {
      f.decode(b, s, 32, DIM, row, 0);
      for (int c = 0; c < DIM; c++) {
        short h = HalfFloats.toF16(x[s * DIM + c]);
        assertThat(row[c]).isEqualTo(HalfFloats.fromF16(h));
        int bits = h & 0xffff;
        int l1 = AlignedKvFormat.readElement(b, s, c, 32, DIM, 1) & 0xffff;
        int l2 = AlignedKvFormat.readElement(b, s, c, 32, DIM, 2) & 0xffff;
        assertThat(l1 >>> 4).isEqualTo(bits >>> 4);
        assertThat(l1 & 15).isEqualTo(8);
        assertThat(l2 >>> 8).isEqualTo(bits >>> 8); // sign, exponent, top 2 mantissa bits
        assertThat(l2 & 255).isEqualTo(0x88);
        // units in the last place of fp16 (same sign and exponent): ≤ 8 and ≤ 136
        assertThat(Math.abs(l1 - bits)).isLessThanOrEqualTo(8);
        assertThat(Math.abs(l2 - bits)).isLessThanOrEqualTo(136);
        assertThat(AlignedKvFormat.element(b, s, c, 32, DIM, 3)).isZero();
      }
    }
  }

  @Test
  void unreachableThresholdsReadEveryBitAndEqualFp16Attention() {
    AlignedKvFormat f = new AlignedKvFormat(true, 64, 64, 64);
    AlignedKvFormat v = new AlignedKvFormat(false, 64, 64, 64);
    int n = 32;
    float[] x = rows(n, 2);
    MemorySegment kb = block(f, x, n, n, DIM);
    MemorySegment vb = block(v, x, n, n, DIM);
    float[] q = rows(1, 3);
    for (int c = 0; c < DIM; c++) {
      q[c] = HalfFloats.fromF16(HalfFloats.toF16(q[c])); // as the fp16 cache prepares it
    }
    float[] got = new float[n];
    float[] ref = new float[n];
    float[] work = new float[KvFormat.workLength(DIM)];
    f.dots(kb, n, n, DIM, q, 0, got, work);
    // the fp16 cache's kernel over the same elements: the same products, the same order
    MemorySegment f16 = MemorySegment.ofArray(new byte[(int) KvFormats.F16.blockBytes(n, DIM)]);
    KvFormats.F16.encode(x, 0, DIM, n, f16, 0, n, DIM);
    KvFormats.F16.dots(f16, n, n, DIM, q, 0, ref, work);
    assertThat(got).isEqualTo(ref);
    f.dotsReference(kb, n, n, DIM, q, 0, ref); // sequential: rounding apart
    for (int s = 0; s < n; s++) {
      double mag = 0;
      for (int c = 0; c < DIM; c++) {
        mag += Math.abs(q[c] * x[s * DIM + c]);
      }
      assertThat((double) got[s]).isCloseTo(ref[s], within(1e-6 * mag));
    }
    assertThat(f.bitsRead()).isEqualTo(8L * DIM + 16L * DIM * n);
    assertThat(f.fullBits()).isEqualTo(16L * DIM * n);
    float[] w = rows(1, 4);
    float[] acc = new float[DIM];
    float[] accRef = new float[DIM];
    v.accumulateBlock(vb, n, n, DIM, w, 0, acc, 0, work);
    for (int s = 0; s < n; s++) {
      v.accumulateReference(vb, s, n, DIM, w[s], accRef);
    }
    assertThat(acc).isEqualTo(accRef);
  }

  /**
   * The vector kernels of a block on the heap give the bits of the scalar reads a block off the
   * heap takes: every level among the channels and tokens, counts not a multiple of four rows, and
   * blocks holding an element of exponent code 15 (the scalar path's, for infinities and NaNs).
   */
  @Test
  void heapVectorKernelsGiveTheBitsOfTheScalarReads() {
    SplittableRandom r = new SplittableRandom(9);
    for (int[] t : new int[][] {{2, 4, 6}, {4, 8, 11}, {1, 2, 3}, {0, 0, 0}}) {
      AlignedKvFormat k = new AlignedKvFormat(true, t[0], t[1], t[2]);
      AlignedKvFormat v = new AlignedKvFormat(false, t[0], t[1], t[2]);
      for (int n : new int[] {32, 23, 3}) {
        for (boolean huge : new boolean[] {false, true}) {
          float[] x = rows(n, r.nextLong());
          if (huge) {
            x[r.nextInt(n * DIM)] = 40000f; // exponent code 15
          }
          MemorySegment[] heap = {block(k, x, n, 32, DIM), block(v, x, n, 32, DIM)};
          MemorySegment[] off = new MemorySegment[2];
          for (int i = 0; i < 2; i++) {
            off[i] = java.lang.foreign.Arena.ofAuto().allocate(heap[i].byteSize(), 8);
            off[i].copyFrom(heap[i]);
          }
          float[] q = rows(1, r.nextLong());
          float[] prepared = new float[2 * DIM];
          k.prepareQuery(q, 0, DIM, prepared, 0);
          float[] a = new float[n];
          float[] b = new float[n];
          k.scores(heap[0], n, 32, DIM, prepared, 0, a, new float[KvFormat.workLength(DIM)]);
          k.scores(off[0], n, 32, DIM, prepared, 0, b, new float[KvFormat.workLength(DIM)]);
          assertThat(a)
              .as("scores %s n=%d huge=%s", java.util.Arrays.toString(t), n, huge)
              .isEqualTo(b);
          float[] w = new float[n];
          for (int s = 0; s < n; s++) {
            w[s] = s % 5 == 1 ? 0f : (float) Math.pow(2, -r.nextInt(0, 14)) * r.nextFloat();
          }
          float[] accA = new float[DIM + 3];
          float[] accB = new float[DIM + 3];
          v.accumulateBlock(heap[1], n, 32, DIM, w, 0, accA, 3, null);
          v.accumulateBlock(off[1], n, 32, DIM, w, 0, accB, 3, null);
          assertThat(accA)
              .as("sums %s n=%d huge=%s", java.util.Arrays.toString(t), n, huge)
              .isEqualTo(accB);
        }
      }
    }
  }

  /**
   * A query or weight too large for the vector path's folded 2^112 (|x| >= 2^15) takes the scalar
   * path: the same bits as off the heap.
   */
  @Test
  void largeQueriesAndWeightsGiveTheBitsOfTheScalarReads() {
    AlignedKvFormat k = new AlignedKvFormat(true, 2, 4, 6);
    AlignedKvFormat v = new AlignedKvFormat(false, 2, 4, 6);
    int n = 32;
    float[] x = rows(n, 11);
    MemorySegment[] heap = {block(k, x, n, n, DIM), block(v, x, n, n, DIM)};
    MemorySegment[] off = new MemorySegment[2];
    for (int i = 0; i < 2; i++) {
      off[i] = java.lang.foreign.Arena.ofAuto().allocate(heap[i].byteSize(), 8);
      off[i].copyFrom(heap[i]);
    }
    for (float big : new float[] {0x1p15f, 70000f, -1e30f}) {
      float[] q = rows(1, 12);
      q[5] = big;
      float[] prepared = new float[2 * DIM];
      k.prepareQuery(q, 0, DIM, prepared, 0);
      float[] a = new float[n];
      float[] b = new float[n];
      k.scores(heap[0], n, n, DIM, prepared, 0, a, new float[KvFormat.workLength(DIM)]);
      k.scores(off[0], n, n, DIM, prepared, 0, b, new float[KvFormat.workLength(DIM)]);
      assertThat(a).as("scores, q = %s", big).isEqualTo(b);
      float[] w = new float[n];
      for (int s = 0; s < n; s++) {
        w[s] = s == 7 ? big : 1f / (s + 1);
      }
      float[] accA = new float[DIM];
      float[] accB = new float[DIM];
      v.accumulateBlock(heap[1], n, n, DIM, w, 0, accA, 0, null);
      v.accumulateBlock(off[1], n, n, DIM, w, 0, accB, 0, null);
      assertThat(accA).as("sums, w = %s", big).isEqualTo(accB);
    }
  }

  @Test
  void fusedKernelsEqualAScalarReadAtTheSameLevels() {
    AlignedKvFormat f = new AlignedKvFormat(true, 2, 4, 6);
    AlignedKvFormat v = new AlignedKvFormat(false, 2, 4, 6);
    int n = 24;
    float[] x = rows(n, 5);
    MemorySegment kb = block(f, x, n, 32, DIM);
    MemorySegment vb = block(v, x, n, 32, DIM);
    float[] q = rows(1, 6);
    float[] prepared = new float[2 * DIM];
    f.prepareQuery(q, 0, DIM, prepared, 0);
    // levels by hand: e_K per channel over the rows, e(q), gap to the largest sum
    int[] eK = new int[DIM];
    for (int s = 0; s < n; s++) {
      for (int c = 0; c < DIM; c++) {
        eK[c] = Math.max(eK[c], AlignedKvFormat.exponentOf(x[s * DIM + c]));
      }
    }
    int most = 0;
    for (int c = 0; c < DIM; c++) {
      most = Math.max(most, eK[c] + AlignedKvFormat.exponentOf(q[c]));
    }
    int[] levels = new int[DIM];
    f.keyLevels(kb, DIM, prepared, 0, levels);
    boolean partial = false;
    for (int c = 0; c < DIM; c++) {
      assertThat(levels[c]).isEqualTo(f.level(most - eK[c] - AlignedKvFormat.exponentOf(q[c])));
      partial |= levels[c] > 0;
    }
    assertThat(partial).isTrue();
    float[] got = new float[n];
    f.scores(kb, n, 32, DIM, prepared, 0, got, new float[KvFormat.workLength(DIM)]);
    for (int s = 0; s < n; s++) {
      double want = 0;
      double mag = 0;
      for (int c = 0; c < DIM; c++) {
        double t = q[c] * AlignedKvFormat.element(kb, s, c, 32, DIM, levels[c]);
        want += t;
        mag += Math.abs(t);
      }
      assertThat((double) got[s]).isCloseTo(want, within(1e-5 * mag + 1e-30));
    }
    float[] w = new float[n];
    SplittableRandom r = new SplittableRandom(7);
    for (int s = 0; s < n; s++) {
      w[s] = s == 3 ? 0f : (float) Math.pow(2, -r.nextInt(0, 12));
    }
    int[] vl = new int[n];
    v.valueLevels(vb, n, DIM, w, 0, vl);
    float[] acc = new float[DIM];
    v.accumulateBlock(vb, n, 32, DIM, w, 0, acc, 0, null);
    double[] want = new double[DIM];
    double mag = 0;
    for (int s = 0; s < n; s++) {
      for (int c = 0; c < DIM; c++) {
        double t = w[s] * AlignedKvFormat.element(vb, s, c, 32, DIM, vl[s]);
        want[c] += t;
        mag = Math.max(mag, Math.abs(t));
      }
    }
    assertThat(vl[3]).isEqualTo(3);
    for (int c = 0; c < DIM; c++) {
      assertThat((double) acc[c]).isCloseTo(want[c], within(1e-5 * mag * n));
    }
  }

  /**
   * d = 4, two tokens. Keys 1.0 (exponent code 7) and 2.0 (8): e_K = 8 in every channel. Query (1,
   * 2^-4, 2^-8, 2^-12): codes 7, 5, 3, 1, sums 15, 13, 11, 9, gaps 0, 2, 4, 6: with thresholds
   * 2/4/6 the channels read 16, 12, 8 and 0 bits, 36 per token, 72 for both, plus the 4 bytes of
   * e_K: 104 bits (13 bytes) where fp16 takes 128 (16 bytes). Values: weights 1 (code 7) and 2^-5
   * (5) over rows of 1.0 (e_V 7) and 2.0 (8): sums 14 and 13, gaps 0 and 1: with t1 = 1 the second
   * token skips its last 4 bits: 4·16 + 4·12 + the 2 bytes of e_V = 128 bits.
   */
  @Test
  void bitsReadAreCountedExactlyInAHandCheckedCase() {
    int d = 4;
    AlignedKvFormat k = new AlignedKvFormat(true, 2, 4, 6);
    float[] rowsKv = {1, 1, 1, 1, 2, 2, 2, 2};
    MemorySegment kb = block(k, rowsKv, 2, 2, d);
    assertThat(AlignedKvFormat.exponentOf(1f)).isEqualTo(7);
    assertThat(AlignedKvFormat.exponentOf(2f)).isEqualTo(8);
    float[] q = {1f, 0x1p-4f, 0x1p-8f, 0x1p-12f};
    float[] scores = new float[2];
    k.dots(kb, 2, 2, d, q, 0, scores, new float[KvFormat.workLength(d)]);
    assertThat(k.bitsRead()).isEqualTo(104);
    assertThat(k.fullBits()).isEqualTo(128);
    // channel 1 reads 1.0 as 0x3C08 (last nibble 0b1000), channel 2 as 0x3C88, channel 3 not
    float want0 = 0f;
    want0 += 1f * 1f;
    want0 += 0x1p-4f * HalfFloats.fromF16((short) 0x3C08);
    want0 += 0x1p-8f * HalfFloats.fromF16((short) 0x3C88);
    float want1 = 0f;
    want1 += 1f * 2f;
    want1 += 0x1p-4f * HalfFloats.fromF16((short) 0x4008);
    want1 += 0x1p-8f * HalfFloats.fromF16((short) 0x4088);
    assertThat(scores[0]).isEqualTo(want0);
    assertThat(scores[1]).isEqualTo(want1);
    AlignedKvFormat v = new AlignedKvFormat(false, 1, 4, 6);
    MemorySegment vb = block(v, rowsKv, 2, 2, d);
    float[] acc = new float[d];
    v.accumulateBlock(vb, 2, 2, d, new float[] {1f, 0x1p-5f}, 0, acc, 0, null);
    assertThat(v.bitsRead()).isEqualTo(4 * 16 + 4 * 12 + 16);
    assertThat(v.fullBits()).isEqualTo(128);
    // 2.0 with its last 4 bits read as 0b1000: 2 + 8 ulp of [2, 4) = 2 + 8·2^-9
    assertThat(acc[0]).isEqualTo(1f + 0x1p-5f * (2f + 8 * 0x1p-9f));
  }

  /**
   * The heap kernels at head sizes whose plane rows are not whole 16-lane chunks of channel pairs
   * (the low bytes' scalar tail) or are several: the bits of the scalar reads off the heap; and a
   * block whose weights are all 0 reads nothing.
   */
  @Test
  void heapKernelsAtOtherHeadSizesGiveTheBitsOfTheScalarReads() {
    SplittableRandom r = new SplittableRandom(21);
    for (int d : new int[] {8, 40, 96, 128}) {
      for (int[] t : new int[][] {{2, 4, 6}, {1, 2, 3}, {64, 64, 64}}) {
        AlignedKvFormat k = new AlignedKvFormat(true, t[0], t[1], t[2]);
        AlignedKvFormat v = new AlignedKvFormat(false, t[0], t[1], t[2]);
        int n = 27;
        float[] x = new float[n * d];
        for (int i = 0; i < x.length; i++) {
          x[i] = (float) (r.nextGaussian() * Math.pow(2, r.nextInt(-6, 4)));
        }
        MemorySegment[] heap = {block(k, x, n, 32, d), block(v, x, n, 32, d)};
        MemorySegment[] off = new MemorySegment[2];
        for (int i = 0; i < 2; i++) {
          off[i] = java.lang.foreign.Arena.ofAuto().allocate(heap[i].byteSize(), 8);
          off[i].copyFrom(heap[i]);
        }
        float[] q = new float[d];
        for (int c = 0; c < d; c++) {
          q[c] = (float) (r.nextGaussian() * Math.pow(2, r.nextInt(-8, 3)));
        }
        float[] prepared = new float[2 * d];
        k.prepareQuery(q, 0, d, prepared, 0);
        float[] a = new float[n];
        float[] b = new float[n];
        k.scores(heap[0], n, 32, d, prepared, 0, a, new float[KvFormat.workLength(d)]);
        k.scores(off[0], n, 32, d, prepared, 0, b, new float[KvFormat.workLength(d)]);
        assertThat(a).as("scores d=%d %s", d, java.util.Arrays.toString(t)).isEqualTo(b);
        float[] w = new float[n];
        for (int s = 0; s < n; s++) {
          w[s] = s % 7 == 2 ? 0f : (float) Math.pow(2, -r.nextInt(0, 14)) * r.nextFloat();
        }
        float[] accA = new float[d];
        float[] accB = new float[d];
        v.accumulateBlock(heap[1], n, 32, d, w, 0, accA, 0, null);
        v.accumulateBlock(off[1], n, 32, d, w, 0, accB, 0, null);
        assertThat(accA).as("sums d=%d %s", d, java.util.Arrays.toString(t)).isEqualTo(accB);
        long before = v.bitsRead();
        float[] zero = new float[d];
        v.accumulateBlock(heap[1], n, 32, d, new float[n], 0, zero, 0, null);
        assertThat(zero).containsOnly(0f);
        assertThat(v.bitsRead() - before).isEqualTo(8L * n); // the exponent maxima only
      }
    }
  }

  /** The exponent code from a float's bits equals the code of its fp16 rounding. */
  @Test
  void exponentCodesFromFloatBitsMatchTheFp16Rounding() {
    SplittableRandom r = new SplittableRandom(5);
    java.util.List<Float> xs = new java.util.ArrayList<>();
    for (float f :
        new float[] {
          0f,
          -0f,
          1f,
          65504f,
          65519.99f,
          65520f,
          1e30f,
          Float.MAX_VALUE,
          Float.MIN_VALUE,
          Float.POSITIVE_INFINITY,
          Float.NEGATIVE_INFINITY,
          Float.NaN,
          0x1p-14f,
          0x1p-15f,
          0x1p-25f
        }) {
      xs.add(f);
    }
    for (int e = 90; e < 150; e++) {
      for (int m : new int[] {0, 1, 0x7fefff, 0x7ff000, 0x7ff001, 0x7fffff, 0x400000}) {
        xs.add(Float.intBitsToFloat(e << 23 | m));
        xs.add(-Float.intBitsToFloat(e << 23 | m));
      }
    }
    for (int i = 0; i < 200_000; i++) {
      xs.add(Float.intBitsToFloat(r.nextInt()));
    }
    for (float x : xs) {
      assertThat(AlignedKvFormat.exponentCode(x))
          .as("%s", Float.floatToRawIntBits(x))
          .isEqualTo(AlignedKvFormat.exponentOf(x));
    }
  }

  @Test
  void badThresholdsAndHeadSizesAreOneSentence() {
    assertThatThrownBy(() -> new AlignedKvFormat(true, 5, 4, 11))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessage("alignedkv thresholds must satisfy 0 <= t1 <= t2 <= t3, got 5,4,11");
    assertThatThrownBy(() -> new AlignedKvFormat(true, 4, 8, 11).checkHeadDim(7))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessage("alignedkv needs an even head size (two nibbles a byte), got 7");
  }
}
