package io.kvslim.kv.format;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * QAQ's rows (METHODS.md Q6 steps 3 and 5): codes round-trip to a scalar reference of the authors'
 * quantizer, inliers within the clamp range are off by at most s/2, outliers are exact, bytes are
 * the layout's, and the fused kernels equal dequantize-then-loop.
 */
class QaqFormatTest {
  static final int DIM = 64;

  static float[] rows(int n, long seed) {
    SplittableRandom r = new SplittableRandom(seed);
    float[] x = new float[n * DIM];
    for (int i = 0; i < x.length; i++) {
      x[i] = (float) (r.nextGaussian() * (1 + (i % DIM) % 5));
    }
    x[3] = 40f; // a planted outlier in row 0
    return x;
  }

  static MemorySegment encode(QaqFormat f, float[] x, int n, int cap) {
    MemorySegment block = MemorySegment.ofArray(new byte[(int) f.blockBytes(cap, DIM)]);
    f.encode(x, 0, DIM, n, block, 0, cap, DIM);
    return block;
  }

  /** The authors' quantizer written out plainly: outliers by sort, mean, range, round, clamp. */
  static float[] reference(float[] x, int off, int b, int low, int high, boolean[] outlier) {
    Integer[] order = new Integer[DIM];
    for (int c = 0; c < DIM; c++) {
      order[c] = c;
    }
    Arrays.sort(
        order,
        (p, q) -> {
          int k = Float.compare(x[off + p], x[off + q]);
          return k != 0 ? k : Integer.compare(p, q);
        });
    Arrays.fill(outlier, false);
    for (int i = 0; i < low; i++) {
      outlier[order[i]] = true;
    }
    for (int i = 0; i < high; i++) {
      outlier[order[DIM - 1 - i]] = true;
    }
    double sum = 0;
    float min = Float.MAX_VALUE;
    float max = -Float.MAX_VALUE;
    for (int c = 0; c < DIM; c++) {
      if (!outlier[c]) {
        sum += x[off + c];
        min = Math.min(min, x[off + c]);
        max = Math.max(max, x[off + c]);
      }
    }
    float mu = HalfFloats.fromF16(HalfFloats.toF16((float) (sum / (DIM - low - high))));
    float s = HalfFloats.fromF16(HalfFloats.toF16((max - min) / (float) (1 << b)));
    float[] out = new float[DIM];
    for (int c = 0; c < DIM; c++) {
      if (outlier[c]) {
        out[c] = x[off + c];
      } else {
        long q = s > 0 ? Math.round((double) Math.rint((x[off + c] - mu) / s)) : 0;
        q = Math.max(-(1 << (b - 1)), Math.min((1 << (b - 1)) - 1, q));
        out[c] = (q + (1 << (b - 1)) - (1 << (b - 1))) * s + mu;
      }
    }
    return out;
  }

  @Test
  void everyWidthRoundTripsToTheReferenceWithExactOutliersAndErrorsWithinHalfAStep() {
    int low = QaqFormat.lowOutliers(0.04, DIM);
    int high = QaqFormat.highOutliers(0.04, DIM);
    assertThat(low).isEqualTo(2); // ⌈0.02·64⌉
    assertThat(high).isEqualTo(2); // 64 − ⌊0.98·64⌋
    byte[] bits = {1, 2, 3, 4, 5, 6, 7, 8, 3, 0, 0};
    int n = 9;
    QaqFormat f = new QaqFormat(bits, low, high, DIM);
    float[] x = rows(n, 7);
    MemorySegment block = encode(f, x, n, bits.length);
    float[] got = new float[DIM];
    boolean[] outlier = new boolean[DIM];
    for (int s = 0; s < n; s++) {
      int b = bits[s];
      f.decode(block, s, bits.length, DIM, got, 0);
      float[] want = reference(x, s * DIM, b, low, high, outlier);
      assertThat(got).as("row %d at %d bits", s, b).isEqualTo(want);
      float mu = HalfFloats.fromF16(block.get(F16Format.SHORT_LE, rowAt(f, s)));
      float step = HalfFloats.fromF16(block.get(F16Format.SHORT_LE, rowAt(f, s) + 2));
      assertThat(block.get(java.lang.foreign.ValueLayout.JAVA_BYTE, s)).isEqualTo((byte) b);
      int inRange = 0;
      for (int c = 0; c < DIM; c++) {
        float xc = x[s * DIM + c];
        if (outlier[c]) {
          assertThat(got[c]).isEqualTo(xc);
          continue;
        }
        double z = (xc - mu) / step;
        if (z >= -(1 << (b - 1)) - 0.5 && z <= (1 << (b - 1)) - 0.5) {
          inRange++;
          assertThat((double) Math.abs(got[c] - xc)).isLessThanOrEqualTo(step / 2 * 1.0001 + 1e-7);
        }
      }
      assertThat(inRange).isPositive();
    }
    f.decode(block, 0, bits.length, DIM, got, 0);
    assertThat(got[3]).isEqualTo(40f); // row 0's planted outlier is exact
  }

  /**
   * Outliers and inlier ranges are found without sorting the row: on rows full of ties and signed
   * zeros (and random rows) they equal those of the sorted row — the same range as {@link
   * Arrays#sort(float[])} gives, and the outlier channels written in the order of the channels
   * sorted by value then channel (the {@code low} smallest, then the {@code high} largest).
   */
  @Test
  void outliersAndRangesAreThoseOfTheSortedRow() {
    SplittableRandom r = new SplittableRandom(11);
    float[] levels = {-0.0f, 0.0f, 1f, -1f, 2.5f, -2.5f, 7f};
    int[][] sides = {{1, 1}, {2, 2}, {0, 3}, {4, 0}, {7, 9}, {31, 32}};
    for (int trial = 0; trial < 400; trial++) {
      float[] x = new float[DIM];
      for (int c = 0; c < DIM; c++) {
        x[c] =
            trial % 2 == 0
                ? levels[r.nextInt(levels.length)]
                : (float) r.nextGaussian() * (trial % 3 == 0 ? 1e-3f : 3f);
      }
      for (int[] side : sides) {
        int low = side[0];
        int high = side[1];
        float[] sorted = x.clone();
        Arrays.sort(sorted);
        float want = sorted[DIM - 1 - high] - sorted[low];
        assertThat(Float.floatToRawIntBits(QaqFormat.inlierRange(x, 0, DIM, low, high)))
            .as("trial %d low %d high %d", trial, low, high)
            .isEqualTo(Float.floatToRawIntBits(want));
        if (low + high >= DIM) {
          continue;
        }
        Integer[] order = new Integer[DIM];
        for (int c = 0; c < DIM; c++) {
          order[c] = c;
        }
        Arrays.sort(
            order,
            (p, q) -> {
              int k = Float.compare(x[p], x[q]);
              return k != 0 ? k : Integer.compare(p, q);
            });
        QaqFormat f = new QaqFormat(new byte[] {3}, low, high, DIM);
        MemorySegment block = MemorySegment.ofArray(new byte[(int) f.blockBytes(1, DIM)]);
        f.encode(x, 0, DIM, 1, block, 0, 1, DIM);
        for (int i = 0; i < low + high; i++) {
          int c = i < low ? order[i] : order[DIM - high + (i - low)];
          long at = 1 + QaqFormat.ROW_HEADER_BYTES + (long) QaqFormat.OUTLIER_BYTES * i;
          assertThat(block.get(java.lang.foreign.ValueLayout.JAVA_BYTE, at) & 0xff)
              .as("trial %d low %d high %d outlier %d", trial, low, high, i)
              .isEqualTo(c);
        }
      }
    }
  }

  /**
   * The register kernels' word layout, for 8 and 16 float lanes (whichever this machine has, the
   * other is checked here in scalar): every width's codes cut from their words as the kernels cut
   * them (a lane's word, shifted, masked) are the codes {@link PackedCodes} packed, in at most four
   * words, and no word reads past the next vector's codes by more than 3 bytes.
   */
  @Test
  void registerWordLayoutCutsEveryWidthsCodes() {
    SplittableRandom r = new SplittableRandom(5);
    for (int lanes : new int[] {8, 16}) {
      for (int b = 1; b <= 8; b++) {
        int[][] layout = QaqFormat.Cut.wordLayout(lanes, b);
        assertThat(layout[3][0]).isBetween(1, 4);
        int[] codes = new int[2 * lanes];
        for (int i = 0; i < codes.length; i++) {
          codes[i] = r.nextInt(1 << b);
        }
        int bytes = PackedCodes.bytes(codes.length, b);
        MemorySegment seg = MemorySegment.ofArray(new byte[bytes + 8]);
        PackedCodes.pack(codes, codes.length, b, seg, 0);
        byte[] a = seg.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
        for (int v = 0; v < 2; v++) {
          int at = v * lanes * b / 8;
          for (int i = 0; i < lanes; i++) {
            int wordAt = at + layout[0][layout[1][i]];
            assertThat(layout[0][layout[1][i]] + 4).isLessThanOrEqualTo(lanes * b / 8 + 3);
            int word = CodeWords.word(a, wordAt);
            assertThat((word >>> layout[2][i]) & ((1 << b) - 1))
                .as("%d lanes, %d bits, vector %d lane %d", lanes, b, v, i)
                .isEqualTo(codes[v * lanes + i]);
          }
        }
      }
    }
  }

  static long rowAt(QaqFormat f, int slot) {
    long at = 11; // the bit widths
    for (int s = 0; s < slot; s++) {
      at += QaqFormat.rowBytes(f.bits(s), DIM, 4);
    }
    return at;
  }

  /**
   * An outlier's code is {@code 2^{b−1}} (q = 0) at every width, also in a constant row (s = 0):
   * the fused kernels take its coded value as {@code 0·s + μ} without reading its code.
   */
  @Test
  void everyOutliersCodeIsTheMidpoint() {
    int cap = 16;
    byte[] widths = new byte[cap];
    for (int s = 0; s < cap; s++) {
      widths[s] = (byte) (1 + s % 8);
    }
    for (int outliers = 1; outliers <= 3; outliers++) {
      QaqFormat f = new QaqFormat(widths, outliers, outliers - 1, DIM);
      float[] x = rows(cap, 40 + outliers);
      Arrays.fill(x, 5 * DIM, 6 * DIM, 1.5f); // a constant row: s = 0
      MemorySegment block = encode(f, x, cap, cap);
      long at = cap;
      int[] codes = new int[DIM];
      for (int s = 0; s < cap; s++) {
        int b = widths[s];
        int kept = 2 * outliers - 1;
        long codesAt = at + QaqFormat.ROW_HEADER_BYTES + (long) QaqFormat.OUTLIER_BYTES * kept;
        PackedCodes.unpack(block, codesAt, DIM, b, codes);
        for (int i = 0; i < kept; i++) {
          long o = at + QaqFormat.ROW_HEADER_BYTES + (long) QaqFormat.OUTLIER_BYTES * i;
          int c = block.get(java.lang.foreign.ValueLayout.JAVA_BYTE, o) & 0xff;
          assertThat(codes[c]).as("slot %d outlier %d", s, c).isEqualTo(1 << (b - 1));
        }
        at += QaqFormat.rowBytes(b, DIM, kept);
      }
    }
  }

  @Test
  void blockBytesAreTheLayoutByHand() {
    QaqFormat f = new QaqFormat(new byte[] {1, 3, 8, 2, 0, 0}, 1, 1, DIM);
    // 6 width bytes + per row (f16 mean, f16 scale) 4 + 2 outliers · 5 + ⌈64·b/8⌉
    long want = 6 + (4 + 10 + 8) + (4 + 10 + 24) + (4 + 10 + 64) + (4 + 10 + 16);
    assertThat(want).isEqualTo(174);
    assertThat(f.blockBytes(6, DIM)).isEqualTo(want);
    assertThat(f.scaleBytes(6, DIM)).isEqualTo(want - 8 - 24 - 64 - 16);
    assertThat(f.rows()).isEqualTo(4);
    assertThat(QaqFormat.lowOutliers(0.01, DIM)).isEqualTo(1);
    assertThat(QaqFormat.highOutliers(0.01, DIM)).isEqualTo(1);
    assertThat(QaqFormat.lowOutliers(0, DIM)).isZero();
    assertThat(new QaqFormat(new byte[] {4, 4}, 0, 0, DIM).blockBytes(2, DIM))
        .isEqualTo(2 + 2 * (4 + 32));
  }

  @Test
  void fusedScoresAndSumsEqualDequantizeThenLoop() {
    byte[] bits = {2, 5, 8, 1, 3, 4, 6, 2};
    QaqFormat f = new QaqFormat(bits, 1, 1, DIM);
    float[] x = rows(bits.length, 11);
    MemorySegment block = encode(f, x, bits.length, bits.length);
    SplittableRandom r = new SplittableRandom(3);
    float[] q = new float[DIM];
    for (int c = 0; c < DIM; c++) {
      q[c] = (float) r.nextGaussian();
    }
    float[] fused = new float[bits.length];
    float[] ref = new float[bits.length];
    float[] work = new float[KvFormat.workLength(DIM)];
    f.dots(block, bits.length, bits.length, DIM, q, 0, fused, work);
    f.dotsReference(block, bits.length, bits.length, DIM, q, 0, ref);
    float[] row = new float[DIM];
    for (int s = 0; s < bits.length; s++) {
      f.decode(block, s, bits.length, DIM, row, 0);
      double mag = 0;
      for (int c = 0; c < DIM; c++) {
        mag += Math.abs(q[c] * row[c]);
      }
      assertThat((double) fused[s]).as("slot %d", s).isCloseTo(ref[s], within(1e-5 * mag));
    }
    float[] weights = new float[bits.length];
    for (int s = 0; s < bits.length; s++) {
      weights[s] = s == 4 ? 0f : (float) r.nextDouble();
    }
    float[] acc = new float[DIM];
    float[] accRef = new float[DIM];
    f.accumulateBlock(block, bits.length, bits.length, DIM, weights, 0, acc, 0, work);
    float[] one = new float[DIM];
    for (int s = 0; s < bits.length; s++) {
      f.accumulateReference(block, s, bits.length, DIM, weights[s], accRef);
      f.accumulate(block, s, bits.length, DIM, weights[s], one, work);
    }
    double mag = 0;
    for (float v : accRef) {
      mag = Math.max(mag, Math.abs(v));
    }
    for (int c = 0; c < DIM; c++) {
      assertThat((double) acc[c]).isCloseTo(accRef[c], within(1e-5 * mag));
      assertThat((double) one[c]).isCloseTo(accRef[c], within(1e-5 * mag));
    }
  }

  /**
   * A block's last rows, whose last code word a kernel reads past the array's end stopped at it
   * ({@code Cut.lastWord}), score and sum as the same block off the heap (the general path), bit
   * for bit: every width as the last row, alone and ending a run of four of one width, with and
   * without outliers.
   */
  @Test
  void theLastRowsOfAHeapBlockGiveTheBitsOfTheSegmentPath() {
    SplittableRandom r = new SplittableRandom(21);
    float[] q = new float[DIM];
    for (int c = 0; c < DIM; c++) {
      q[c] = (float) r.nextGaussian();
    }
    float[] work = new float[KvFormat.workLength(DIM)];
    for (int last = 1; last <= 8; last++) {
      for (int run = 1; run <= 5; run += 4) {
        for (int outliers = 0; outliers <= 1; outliers++) {
          byte[] bits = {3, 2, 4, 2, 2, 2, 2, 2, 2};
          for (int s = bits.length - run; s < bits.length; s++) {
            bits[s] = (byte) last;
          }
          QaqFormat f = new QaqFormat(bits, outliers, outliers, DIM);
          int n = bits.length;
          MemorySegment heap = encode(f, rows(n, 22 + last), n, n);
          MemorySegment native_ = java.lang.foreign.Arena.ofAuto().allocate(heap.byteSize(), 8);
          native_.copyFrom(heap);
          float[] prepared = new float[f.preparedQueryLength(DIM)];
          f.prepareQuery(q, 0, DIM, prepared, 0);
          float[] a = new float[n];
          float[] b = new float[n];
          f.scores(heap, n, n, DIM, prepared, 0, a, work);
          f.scores(native_, n, n, DIM, prepared, 0, b, work);
          float[] weights = new float[n];
          for (int s = 0; s < n; s++) {
            weights[s] = (float) r.nextDouble();
          }
          float[] accA = new float[DIM];
          float[] accB = new float[DIM];
          f.accumulateBlock(heap, n, n, DIM, weights, 0, accA, 0, work);
          f.accumulateBlock(native_, n, n, DIM, weights, 0, accB, 0, work);
          String as = "last width " + last + ", run " + run + ", outliers " + outliers;
          assertThat(a).as(as).isEqualTo(b);
          assertThat(accA).as(as).isEqualTo(accB);
        }
      }
    }
  }

  @Test
  void badShapesAreOneSentence() {
    assertThatThrownBy(() -> new QaqFormat(new byte[] {9}, 1, 1, DIM))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageStartingWith("qaq bit widths must be 1..8");
    assertThatThrownBy(() -> new QaqFormat(new byte[] {2, 0, 2}, 1, 1, DIM))
        .isInstanceOf(IllegalArgumentException.class);
    assertThatThrownBy(() -> new QaqFormat(new byte[] {2}, 1, 1, 512))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessage("qaq needs rows of 2..256 values, got 512");
    QaqFormat f = new QaqFormat(new byte[] {2, 2}, 1, 1, DIM);
    assertThatThrownBy(() -> f.blockBytes(4, DIM))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessage("this qaq block has 2 slots of 64 values, asked for 4 of 64");
    float[] x = rows(1, 1);
    assertThatThrownBy(() -> encode(f, x, 1, 2))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessage("a qaq block is encoded at once: 2 rows from slot 0, got 1");
  }
}
