package io.kvslim.kv.format;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import java.lang.foreign.MemorySegment;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

/** TurboQuant's codebook, rotation, bit packing and formats (METHODS.md N1 "Test"). */
class TurboQuantFormatTest {
  static final int CAPACITY = 32;

  @ParameterizedTest
  @ValueSource(ints = {64, 128})
  void theCodebooksMatchTheClosedFormsAndAreSymmetric(int d) {
    float[] one = LloydMaxCodebook.of(d, 1).centroids();
    double b1 = Math.sqrt(2 / (Math.PI * d)); // ±√(2/(πd)), the half-normal mean
    assertThat((double) one[1]).isCloseTo(b1, within(1e-3 * b1));
    assertThat((double) one[0]).isCloseTo(-b1, within(1e-3 * b1));
    float[] two = LloydMaxCodebook.of(d, 2).centroids();
    double s = 1 / Math.sqrt(d);
    assertThat((double) two[2]).isCloseTo(0.453 * s, within(1e-3 * 0.453 * s));
    assertThat((double) two[3]).isCloseTo(1.51 * s, within(1e-3 * 1.51 * s));
    for (int bits = 1; bits <= 4; bits++) {
      float[] c = LloydMaxCodebook.of(d, bits).centroids();
      assertThat(c).hasSize(1 << bits);
      for (int i = 0; i < c.length; i++) {
        assertThat((double) c[i] + c[c.length - 1 - i]).isCloseTo(0, within(1e-6 * s));
        if (i > 0) {
          assertThat(c[i]).isGreaterThan(c[i - 1]);
        }
      }
      float[] mid = LloydMaxCodebook.of(d, bits).midpoints();
      for (int i = 0; i < mid.length; i++) {
        assertThat(mid[i]).isEqualTo((c[i] + c[i + 1]) / 2f);
      }
    }
  }

  /**
   * vLLM's {@code solve_lloyd_max} (centroids.py) transcribed to Python and run with CPython 3.11
   * doubles, rounded to float32 as its tensor: the centroids agree bit for bit.
   */
  @Test
  void theCentroidsAreVllmsBitForBit() {
    assertThat(LloydMaxCodebook.of(128, 3).centroids())
        .containsExactly(
            -0.19006584584712982f,
            -0.11872146278619766f,
            -0.06679026037454605f,
            -0.02165369503200054f,
            0.02165369503200054f,
            0.06679026037454605f,
            0.11872146278619766f,
            0.19006584584712982f);
    assertThat(LloydMaxCodebook.of(128, 4).centroids())
        .containsExactly(
            -0.2413817048072815f,
            -0.18282662332057953f,
            -0.14300189912319183f,
            -0.11103852838277817f,
            -0.08330143988132477f,
            -0.058060530573129654f,
            -0.034306857734918594f,
            -0.011351509019732475f,
            0.011351509019732475f,
            0.034306857734918594f,
            0.058060530573129654f,
            0.08330143988132477f,
            0.11103852838277817f,
            0.14300189912319183f,
            0.18282662332057953f,
            0.2413817048072815f);
    assertThat(LloydMaxCodebook.of(64, 2).centroids())
        .containsExactly(
            -0.1886948198080063f,
            -0.056571491062641144f,
            0.056571491062641144f,
            0.1886948198080063f);
  }

  @Test
  void aCodeIsTheNumberOfMidpointsAtOrBelow() {
    LloydMaxCodebook book = LloydMaxCodebook.of(128, 3);
    float[] mid = book.midpoints();
    assertThat(book.code(-1f)).isZero();
    assertThat(book.code(1f)).isEqualTo(7);
    for (int i = 0; i < mid.length; i++) {
      assertThat(book.code(mid[i])).isEqualTo(i + 1);
      assertThat(book.code(Math.nextDown(mid[i]))).isEqualTo(i);
    }
  }

  /**
   * On 10⁴ seeded Gaussian directions (d = 128) the mean squared error of unit vectors is the
   * paper's (Thm. 1: ≈ 0.36, 0.117, 0.03, 0.009 for b = 1..4) within 10%; for b = 3 the paper's
   * 0.03 rounds the Gaussian Lloyd–Max distortion 0.0345 (Max 1960), which is what is checked.
   */
  @ParameterizedTest
  @CsvSource({"1, 0.36", "2, 0.117", "3, 0.0345", "4, 0.009"})
  void theMseOfUnitVectorsIsThePapers(int bits, double paper) {
    int d = 128;
    LloydMaxCodebook book = LloydMaxCodebook.of(d, bits);
    float[] c = book.centroids();
    Random r = new Random(42);
    float[] x = new float[d];
    float[] y = new float[d];
    double total = 0;
    int n = 10_000;
    for (int t = 0; t < n; t++) {
      double norm = 0;
      for (int j = 0; j < d; j++) {
        x[j] = (float) r.nextGaussian();
        norm += x[j] * x[j];
      }
      for (int j = 0; j < d; j++) {
        x[j] /= (float) Math.sqrt(norm);
        y[j] = x[j];
      }
      Hadamard.rotate(y, 0, d);
      for (int j = 0; j < d; j++) {
        y[j] = c[book.code(y[j])];
      }
      Hadamard.rotate(y, 0, d); // Πᵀ = Π
      for (int j = 0; j < d; j++) {
        total += (x[j] - y[j]) * (double) (x[j] - y[j]);
      }
    }
    assertThat(total / n).isCloseTo(paper, within(0.1 * paper));
  }

  @ParameterizedTest
  @ValueSource(ints = {2, 16, 64, 128})
  void theRotationIsOrthogonalAndTheFastTransformIsTheMatrix(int d) {
    double[][] p = Hadamard.matrix(d);
    for (int i = 0; i < d; i++) {
      for (int j = 0; j < d; j++) {
        double dot = 0;
        for (int k = 0; k < d; k++) {
          dot += p[i][k] * p[j][k];
        }
        assertThat(dot).isCloseTo(i == j ? 1 : 0, within(1e-6));
      }
    }
    Random r = new Random(d);
    float[] x = new float[d + 3];
    for (int j = 0; j < x.length; j++) {
      x[j] = (float) r.nextGaussian();
    }
    float[] fast = x.clone();
    Hadamard.rotate(fast, 3, d);
    for (int i = 0; i < d; i++) {
      double want = 0;
      for (int k = 0; k < d; k++) {
        want += p[i][k] * x[3 + k];
      }
      assertThat((double) fast[3 + i]).isCloseTo(want, within(1e-5));
    }
  }

  /**
   * Pack, unpack and look up (vectorized where whole vectors of channels fit, scalar otherwise;
   * runs ending at the array's last byte) agree with the codes.
   */
  @Test
  void bitPackingRoundTripsAndIsLittleEndian() {
    Random r = new Random(3);
    for (int bits = 1; bits <= 8; bits++) {
      for (int count : new int[] {1, 7, 8, 64, 127, 128}) {
        int[] codes = new int[count];
        for (int j = 0; j < count; j++) {
          codes[j] = r.nextInt(1 << bits);
        }
        MemorySegment seg = MemorySegment.ofArray(new byte[PackedCodes.bytes(count, bits) + 2]);
        PackedCodes.pack(codes, count, bits, seg, 1);
        int[] back = new int[count];
        PackedCodes.unpack(seg, 1, count, bits, back);
        assertThat(back).as("%d bits, %d codes", bits, count).containsExactly(codes);
        float[] floats = new float[count];
        PackedCodes.lookup(seg, 1, count, bits, null, floats, 0);
        for (int j = 0; j < count; j++) {
          assertThat(floats[j]).isEqualTo(codes[j]);
        }
        float[] table = new float[1 << bits];
        for (int v = 0; v < table.length; v++) {
          table[v] = (float) r.nextGaussian();
        }
        PackedCodes.lookup(seg, 1, count, bits, table, floats, 0);
        for (int j = 0; j < count; j++) {
          assertThat(floats[j]).isEqualTo(table[codes[j]]);
        }
        byte[] bytes = seg.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
        assertThat(bytes[0]).as("nothing before the run").isZero();
        assertThat(bytes[bytes.length - 1]).as("nothing after the run").isZero();
      }
    }
    // 4 bits: even j in the low nibble; 3 bits: eight codes in three bytes at shifts 3·(j mod 8)
    MemorySegment four = MemorySegment.ofArray(new byte[1]);
    PackedCodes.pack(new int[] {0x3, 0xA}, 2, 4, four, 0);
    assertThat(four.get(java.lang.foreign.ValueLayout.JAVA_BYTE, 0)).isEqualTo((byte) 0xA3);
    MemorySegment three = MemorySegment.ofArray(new byte[3]);
    int[] eight = {1, 2, 3, 4, 5, 6, 7, 0};
    PackedCodes.pack(eight, 8, 3, three, 0);
    int word = 0;
    for (int j = 0; j < 8; j++) {
      word |= eight[j] << (3 * j);
    }
    byte[] got = three.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
    assertThat(got).containsExactly((byte) word, (byte) (word >>> 8), (byte) (word >>> 16));
  }

  static float[] rows(long seed, int rows, int d) {
    Random r = new Random(seed);
    float[] x = new float[rows * d];
    for (int i = 0; i < x.length; i++) {
      x[i] = (float) (r.nextGaussian() * (r.nextInt(16) == 0 ? 4 : 1) + 0.3);
    }
    return x;
  }

  static MemorySegment encode(KvFormat f, float[] rows, int d) {
    MemorySegment block = MemorySegment.ofArray(new byte[(int) f.blockBytes(CAPACITY, d)]);
    f.encode(rows, 0, d, CAPACITY, block, 0, CAPACITY, d);
    return block;
  }

  @ParameterizedTest
  @CsvSource({
    "2, false, 64",
    "3, false, 64",
    "4, false, 64",
    "2, true, 128",
    "3, true, 128",
    "4, true, 64",
    "3, true, 16"
  })
  void fusedKeyScoresEqualTheDequantizedKeysDotTheQuery(int bits, boolean nc, int d) {
    TurboQuantKeyFormat f = new TurboQuantKeyFormat(bits, nc);
    float[] keys = rows(bits * 10 + d, CAPACITY, d);
    MemorySegment block = encode(f, keys, d);
    float[] q = rows(7, 1, d);
    float[] fused = new float[CAPACITY];
    float[] work = new float[KvFormat.workLength(d)];
    f.dots(block, CAPACITY, CAPACITY, d, q, 0, fused, work);
    float[] ref = new float[CAPACITY];
    f.dotsReference(block, CAPACITY, CAPACITY, d, q, 0, ref);
    float[] k = new float[d];
    for (int s = 0; s < CAPACITY; s++) {
      f.decode(block, s, CAPACITY, d, k, 0);
      double scale = norm(q, 0, d) * norm(k, 0, d); // |q·k̂| ≤ ‖q‖‖k̂‖
      assertThat((double) fused[s]).as("slot %d", s).isCloseTo(ref[s], within(1e-5 * scale));
      // the dequantized key is near the key: its norm is ρ with nc, and the direction is close
      double cos = 0;
      for (int j = 0; j < d; j++) {
        cos += k[j] * keys[s * d + j];
      }
      cos /= norm(k, 0, d) * norm(keys, s * d, d);
      assertThat(cos).isGreaterThan(bits == 2 ? 0.85 : 0.95);
      if (nc) {
        assertThat(norm(k, 0, d)).isCloseTo(norm(keys, s * d, d), within(2e-3 * norm(k, 0, d)));
      }
    }
  }

  static double norm(float[] x, int off, int d) {
    double s = 0;
    for (int j = 0; j < d; j++) {
      s += x[off + j] * (double) x[off + j];
    }
    return Math.sqrt(s);
  }

  /**
   * The register paths on the heap (four output vectors at a time, then one; 16-entry codebooks in
   * two vectors; vectorized norm corrections) give the bits of the general path off the heap, for
   * head sizes with and without a whole number of four vectors.
   */
  @ParameterizedTest
  @CsvSource({"4, 16", "4, 40", "3, 64", "4, 128", "2, 24"})
  void heapRegisterPathsGiveTheBitsOfTheGeneralPath(int bits, int d) {
    TurboQuantValueFormat v = new TurboQuantValueFormat(bits);
    MemorySegment heap = encode(v, rows(bits * 3 + d, CAPACITY, d), d);
    MemorySegment off = java.lang.foreign.Arena.ofAuto().allocate(heap.byteSize(), 8);
    off.copyFrom(heap);
    Random r = new Random(d);
    float[] w = new float[CAPACITY];
    for (int s = 0; s < CAPACITY; s++) {
      w[s] = s % 7 == 3 ? 0f : r.nextFloat();
    }
    float[] work = new float[Math.max(KvFormat.workLength(d), 3 * CAPACITY)];
    for (int count : new int[] {CAPACITY, 13, 1}) {
      float[] a = rows(5, 1, d);
      float[] b = a.clone();
      v.accumulateBlock(heap, count, CAPACITY, d, w, 0, a, 0, work);
      v.accumulateBlock(off, count, CAPACITY, d, w, 0, b, 0, work);
      assertThat(a).as("values %d bits, d %d, %d slots", bits, d, count).isEqualTo(b);
    }
    if (d >= 16 && Integer.bitCount(d) == 1) {
      TurboQuantKeyFormat k = new TurboQuantKeyFormat(bits, true);
      MemorySegment kh = encode(k, rows(bits * 5 + d, CAPACITY, d), d);
      MemorySegment ko = java.lang.foreign.Arena.ofAuto().allocate(kh.byteSize(), 8);
      ko.copyFrom(kh);
      float[] prepared = new float[d];
      k.prepareQuery(rows(9, 1, d), 0, d, prepared, 0);
      for (int count : new int[] {CAPACITY, 13, 1}) {
        float[] a = new float[count];
        float[] b = new float[count];
        k.scores(kh, count, CAPACITY, d, prepared, 0, a, work);
        k.scores(ko, count, CAPACITY, d, prepared, 0, b, work);
        assertThat(a).as("keys %d bits, d %d, %d slots", bits, d, count).isEqualTo(b);
      }
    }
  }

  /**
   * fp8 key scores widened in registers on the heap give the bits of the table path off the heap,
   * over every code (subnormals and −0 included) and with a NaN code in the block.
   */
  @Test
  void fp8ScoresInRegistersGiveTheBitsOfTheTable() {
    Fp8E4m3Format f = new Fp8E4m3Format();
    int d = 64;
    byte[] bytes = new byte[(int) f.blockBytes(CAPACITY, d)];
    Random r = new Random(3);
    for (int i = 0; i < bytes.length; i++) {
      int b = (i * 37 + r.nextInt(3)) & 0xff;
      bytes[i] = (byte) ((b & 0x7f) == 0x7f ? b - 1 : b);
    }
    for (boolean nan : new boolean[] {false, true}) {
      if (nan) {
        bytes[5 * d + 9] = (byte) 0xff;
      }
      MemorySegment heap = MemorySegment.ofArray(bytes.clone());
      MemorySegment off = java.lang.foreign.Arena.ofAuto().allocate(heap.byteSize(), 8);
      off.copyFrom(heap);
      float[] q = rows(4, 1, d);
      float[] work = new float[KvFormat.workLength(d)];
      for (int count : new int[] {CAPACITY, 7}) {
        float[] a = new float[count];
        float[] b = new float[count];
        f.scores(heap, count, CAPACITY, d, q, 0, a, work);
        f.scores(off, count, CAPACITY, d, q, 0, b, work);
        assertThat(a).as("nan %s, %d slots", nan, count).isEqualTo(b);
      }
    }
  }

  @ParameterizedTest
  @ValueSource(ints = {2, 3, 4})
  void valuesFollowVllmsUniformCodeAndTheFusedSumIsTheReference(int bits) {
    int d = 64;
    TurboQuantValueFormat f = new TurboQuantValueFormat(bits);
    float[] values = rows(bits, CAPACITY, d);
    MemorySegment block = encode(f, values, d);
    float[] row = new float[d];
    int top = (1 << bits) - 1;
    for (int s = 0; s < CAPACITY; s++) {
      float min = Float.POSITIVE_INFINITY;
      float max = Float.NEGATIVE_INFINITY;
      for (int j = 0; j < d; j++) {
        min = Math.min(min, values[s * d + j]);
        max = Math.max(max, values[s * d + j]);
      }
      float scale = Math.max((max - min) / top, 1e-8f);
      float s16 = HalfFloats.fromF16(HalfFloats.toF16(scale));
      float z16 = HalfFloats.fromF16(HalfFloats.toF16(min));
      assertThat(f.scale(block, s, d)).isEqualTo(s16);
      f.decode(block, s, CAPACITY, d, row, 0);
      for (int j = 0; j < d; j++) {
        int code = Math.min(top, (int) Math.floor((values[s * d + j] - min) / scale + 0.5f));
        assertThat(row[j]).isEqualTo(code * s16 + z16);
        assertThat((double) Math.abs(row[j] - values[s * d + j]))
            .isLessThanOrEqualTo(
                scale / 2 + top * Math.abs(s16 - scale) + Math.abs(z16 - min) + 1e-6);
      }
    }
    Random r = new Random(9);
    float[] weights = new float[CAPACITY];
    for (int s = 0; s < CAPACITY; s++) {
      weights[s] = s % 5 == 0 ? 0f : r.nextFloat();
    }
    float[] fused = new float[d];
    f.accumulateBlock(
        block, CAPACITY, CAPACITY, d, weights, 0, fused, 0, new float[KvFormat.workLength(d)]);
    float[] ref = new float[d];
    double scale = 0;
    for (int s = 0; s < CAPACITY; s++) {
      f.accumulateReference(block, s, CAPACITY, d, weights[s], ref);
      f.decode(block, s, CAPACITY, d, row, 0);
      double max = 0;
      for (float v : row) {
        max = Math.max(max, Math.abs(v));
      }
      scale += weights[s] * max;
    }
    for (int j = 0; j < d; j++) {
      assertThat((double) fused[j]).isCloseTo(ref[j], within(1e-5 * scale));
    }
    float[] q = rows(11, 1, d);
    float[] dots = new float[CAPACITY];
    f.dots(block, CAPACITY, CAPACITY, d, q, 0, dots, new float[KvFormat.workLength(d)]);
    float[] dotsRef = new float[CAPACITY];
    f.dotsReference(block, CAPACITY, CAPACITY, d, q, 0, dotsRef);
    for (int s = 0; s < CAPACITY; s++) {
      f.decode(block, s, CAPACITY, d, row, 0);
      assertThat((double) dots[s])
          .isCloseTo(dotsRef[s], within(1e-5 * norm(q, 0, d) * norm(row, 0, d)));
    }
  }

  @Test
  void bytesAreTheFormula() {
    int d = 128;
    for (int kb = 2; kb <= 4; kb++) {
      TurboQuantKeyFormat k = new TurboQuantKeyFormat(kb, true);
      assertThat(k.blockBytes(CAPACITY, d)).isEqualTo(CAPACITY * ((d * kb + 7) / 8 + 2L));
      assertThat(k.scaleBytes(CAPACITY, d)).isEqualTo(CAPACITY * 2L);
      TurboQuantValueFormat v = new TurboQuantValueFormat(kb);
      assertThat(v.blockBytes(CAPACITY, d)).isEqualTo(CAPACITY * ((d * kb + 7) / 8 + 4L));
      assertThat(v.scaleBytes(CAPACITY, d)).isEqualTo(CAPACITY * 4L);
    }
    // METHODS.md N1: 134, 118, 102 bytes per token per KV head at d = 128 (4bit, k3v4, 3bit)
    assertThat(perToken(4, 4, d)).isEqualTo(134);
    assertThat(perToken(3, 4, d)).isEqualTo(118);
    assertThat(perToken(3, 3, d)).isEqualTo(102);
    // at d = 64 (the shared models' heads): 3-bit keys take 24 + 2 bytes, 3-bit values 24 + 4
    assertThat(new TurboQuantKeyFormat(3, false).rowBytes(64)).isEqualTo(26);
    assertThat(new TurboQuantValueFormat(3).rowBytes(64)).isEqualTo(28);
  }

  static long perToken(int kb, int vb, int d) {
    return new TurboQuantKeyFormat(kb, true).blockBytes(1, d)
        + new TurboQuantValueFormat(vb).blockBytes(1, d);
  }

  /** FP8 E4M3 (e4m3fn): every code round-trips, and conversion is the nearest code, ties even. */
  @Test
  void fp8RoundsToTheNearestCodeTiesToEvenAndSaturates() {
    for (int b = 0; b < 256; b++) {
      float v = Fp8E4m3Format.toFloat((byte) b);
      if ((b & 0x7f) == 0x7f) {
        assertThat(v).isNaN();
        continue;
      }
      assertThat(Fp8E4m3Format.fromFloat(v) & 0xff).as("code %02x", b).isEqualTo(b);
    }
    assertThat(Fp8E4m3Format.toFloat((byte) 0x7e)).isEqualTo(448f);
    assertThat(Fp8E4m3Format.toFloat((byte) 0x01)).isEqualTo(0x1p-9f);
    assertThat(Fp8E4m3Format.toFloat((byte) 0x38)).isEqualTo(1f);
    assertThat(Fp8E4m3Format.fromFloat(1e6f)).isEqualTo((byte) 0x7e);
    assertThat(Fp8E4m3Format.fromFloat(-500f)).isEqualTo((byte) 0xfe);
    assertThat(Fp8E4m3Format.fromFloat(Float.NaN)).isEqualTo((byte) 0x7f);
    // 1.0625 is halfway between 1 (0x38, even) and 1.125 (0x39): even; 1.1875 → 1.25 (0x3a)
    assertThat(Fp8E4m3Format.fromFloat(1.0625f)).isEqualTo((byte) 0x38);
    assertThat(Fp8E4m3Format.fromFloat(1.1875f)).isEqualTo((byte) 0x3a);
    Random r = new Random(8);
    for (int i = 0; i < 20_000; i++) {
      float x = (float) (r.nextGaussian() * Math.pow(10, r.nextInt(6) - 3));
      float got = Fp8E4m3Format.toFloat(Fp8E4m3Format.fromFloat(x));
      double best = Double.MAX_VALUE;
      for (int b = 0; b < 256; b++) {
        float v = Fp8E4m3Format.toFloat((byte) b);
        if (!Float.isNaN(v)) {
          best = Math.min(best, Math.abs(v - (double) x));
        }
      }
      assertThat(Math.abs(got - (double) x)).as("%s", x).isEqualTo(best);
    }
  }

  /**
   * TurboQuant_prod (QJL residual): over 2,000 seeds of S the mean score is within 4 standard
   * errors of q·k (unbiased), while the MSE stage alone is biased by more than that; fused scores
   * equal the dequantized key's; bytes are the formula.
   */
  @Test
  void theQjlResidualMakesScoresUnbiased() {
    int d = 64;
    float[] key = rows(5, 1, d);
    float[] q = rows(6, 1, d);
    double exact = 0;
    for (int j = 0; j < d; j++) {
      exact += (double) q[j] * key[j];
    }
    int seeds = 2000;
    double sum = 0;
    double sumSquares = 0;
    float[] score = new float[1];
    float[] work = new float[KvFormat.workLength(d)];
    for (int seed = 0; seed < seeds; seed++) {
      TurboQuantProdKeyFormat f = new TurboQuantProdKeyFormat(2, seed);
      MemorySegment block = MemorySegment.ofArray(new byte[(int) f.blockBytes(1, d)]);
      f.encode(key, 0, d, 1, block, 0, 1, d);
      f.dots(block, 1, 1, d, q, 0, score, work);
      sum += score[0];
      sumSquares += score[0] * (double) score[0];
      if (seed < 20) {
        float[] ref = new float[1];
        f.dotsReference(block, 1, 1, d, q, 0, ref);
        float[] k = new float[d];
        f.decode(block, 0, 1, d, k, 0);
        assertThat((double) score[0])
            .isCloseTo(ref[0], within(1e-5 * norm(q, 0, d) * norm(k, 0, d)));
      }
    }
    double mean = sum / seeds;
    double se = Math.sqrt((sumSquares / seeds - mean * mean) / seeds);
    assertThat(Math.abs(mean - exact))
        .as("mean %s vs %s, se %s", mean, exact, se)
        .isLessThan(4 * se);
    // the 1-bit MSE stage alone is biased (its estimate shrinks towards 0)
    LloydMaxCodebook book = LloydMaxCodebook.of(d, 1);
    float[] u = key.clone();
    float rho = (float) norm(key, 0, d);
    for (int j = 0; j < d; j++) {
      u[j] /= rho;
    }
    Hadamard.rotate(u, 0, d);
    double gamma = 0; // ‖r‖, which does not depend on S
    for (int j = 0; j < d; j++) {
      float c = book.centroids()[book.code(u[j])];
      gamma += (u[j] - c) * (double) (u[j] - c);
      u[j] = c * rho;
    }
    // the QJL variance bound (QJL Lemma 3.2): π/(2d)·‖q‖²·(ρ·γ)², with 10% for the sampling error
    // of a variance from 2,000 draws (about 3%)
    double variance = sumSquares / seeds - mean * mean;
    double bound = Math.PI / (2 * d) * Math.pow(norm(q, 0, d), 2) * rho * rho * gamma;
    System.out.printf(
        "qjl: mean %.4f exact %.4f se %.4f variance %.3f bound %.3f%n",
        mean, exact, se, variance, bound);
    assertThat(variance).isLessThanOrEqualTo(1.1 * bound);
    Hadamard.rotate(u, 0, d);
    double mseOnly = 0;
    for (int j = 0; j < d; j++) {
      mseOnly += (double) q[j] * u[j];
    }
    assertThat(Math.abs(mseOnly - exact)).isGreaterThan(4 * se);
    assertThat(new TurboQuantProdKeyFormat(3, 1).blockBytes(CAPACITY, 128))
        .isEqualTo(CAPACITY * (128 * 2 / 8 + 128 / 8 + 4L));
  }

  @Test
  void badSettingsAreOneSentence() {
    assertThatThrownBy(() -> new TurboQuantKeyFormat(3, true).checkHeadDim(96))
        .hasMessage(
            "format tq_k3_nc needs a head dimension that is a power of 2 (for the Hadamard"
                + " rotation), got 96");
    assertThatThrownBy(() -> new TurboQuantKeyFormat(5, false))
        .hasMessage("turboquant keys need 2, 3 or 4 bits per coordinate, got 5");
    assertThatThrownBy(() -> new TurboQuantValueFormat(1))
        .hasMessage("turboquant values need 2, 3 or 4 bits per channel, got 1");
    assertThatThrownBy(() -> LloydMaxCodebook.of(64, 0)).hasMessageContaining("1..8 bits");
  }
}
