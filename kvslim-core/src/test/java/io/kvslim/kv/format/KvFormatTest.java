package io.kvslim.kv.format;

import static org.assertj.core.api.Assertions.assertThat;

import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** Every format: round-trip error within its bound, fused kernels equal to the scalar reference. */
class KvFormatTest {
  static final int HEAD_DIM = 64;
  static final int CAPACITY = 32;

  static Stream<KvFormat> formats() {
    return Stream.concat(
        KvFormats.NAMED.stream(),
        Stream.of(
            new KiviKeyFormat(1),
            new KiviKeyFormat(2),
            new KiviKeyFormat(4),
            new KiviKeyFormat(8),
            new KiviValueFormat(1, 32),
            new KiviValueFormat(1, 8),
            new KiviValueFormat(2, 32),
            new KiviValueFormat(4, 32),
            new KiviValueFormat(8, 16),
            new KiviValueFormat(2, 64), // one group a row (GEAR's values): an odd group count
            new TurboQuantKeyFormat(2, false),
            new TurboQuantKeyFormat(3, true),
            new TurboQuantKeyFormat(4, true),
            new TurboQuantValueFormat(2),
            new TurboQuantValueFormat(3),
            new TurboQuantValueFormat(4),
            new Fp8E4m3Format(),
            new TurboQuantProdKeyFormat(3, 42)));
  }

  /**
   * {@link #formats} and the calibrated formats with fused block kernels, for the checks that
   * compare a block kernel with the format's own one-row kernel (tables as their unit tests make
   * them).
   */
  static Stream<KvFormat> blockFormats() {
    java.util.SplittableRandom r = new java.util.SplittableRandom(3);
    return Stream.concat(
        formats(),
        Stream.of(
            KvQuantFormatTest.keys(2, 1, r).forHead(1),
            KvQuantFormatTest.keys(3, 2, r).forHead(0),
            KvQuantFormatTest.keys(4, 0, r).forHead(1),
            new KvQuantValueFormat(2, KvQuantFormatTest.codebook(2, r), 1),
            new KvQuantValueFormat(3, KvQuantFormatTest.codebook(3, r), 0),
            new KvQuantValueFormat(4, KvQuantFormatTest.codebook(4, r), 2),
            CqFormatTest.format(2, 4),
            CqFormatTest.format(4, 5),
            CqFormatTest.format(8, 6),
            new LexicoFormat(unitAtoms(256, 7), 256, 8, "t"),
            new LexicoFormat(unitAtoms(512, 8), 512, 3, "t"),
            new QaqFormat(qaqBits(), 1, 1, HEAD_DIM),
            new QaqFormat(qaqRuns(), 1, 1, HEAD_DIM)));
  }

  /**
   * QAQ's widths in runs of five equal ones (1, 2, 3, 4, 8, 5 in turn), where its scores take four
   * slots of one width at once: runs start at every offset modulo four.
   */
  static byte[] qaqRuns() {
    byte[] widths = {1, 2, 3, 4, 8, 5};
    byte[] b = new byte[CAPACITY];
    for (int s = 0; s < CAPACITY; s++) {
      b[s] = widths[(s / 5) % widths.length];
    }
    return b;
  }

  /** QAQ's per-slot widths, every width 1..8 among them. */
  static byte[] qaqBits() {
    byte[] b = new byte[CAPACITY];
    for (int s = 0; s < CAPACITY; s++) {
      b[s] = (byte) (1 + (s * 5 + s / 8) % 8);
    }
    return b;
  }

  /**
   * Kernels whose fast path reads the block's heap array give the bits of their general path, which
   * a block off the heap takes.
   */
  @ParameterizedTest
  @MethodSource("blockFormats")
  void arrayPathsEqualTheSegmentPath(KvFormat format) {
    MemorySegment block = encode(format, randomRows(31, CAPACITY));
    MemorySegment native_ = java.lang.foreign.Arena.ofAuto().allocate(block.byteSize(), 8);
    native_.copyFrom(block);
    float[] prepared = new float[format.preparedQueryLength(HEAD_DIM)];
    format.prepareQuery(randomRows(32, 1), 0, HEAD_DIM, prepared, 0);
    float[] work = new float[KvFormat.workLength(HEAD_DIM)];
    float[] onHeap = new float[CAPACITY];
    float[] offHeap = new float[CAPACITY];
    format.scores(block, CAPACITY, CAPACITY, HEAD_DIM, prepared, 0, onHeap, work);
    format.scores(native_, CAPACITY, CAPACITY, HEAD_DIM, prepared, 0, offHeap, work);
    assertThat(onHeap).as("%s scores", format.name()).isEqualTo(offHeap);
    float[] weights = new float[CAPACITY];
    Random random = new Random(33);
    for (int s = 0; s < CAPACITY; s++) {
      weights[s] = s % 7 == 3 ? 0f : random.nextFloat();
    }
    float[] accHeap = new float[HEAD_DIM];
    float[] accNative = new float[HEAD_DIM];
    format.accumulateBlock(block, CAPACITY, CAPACITY, HEAD_DIM, weights, 0, accHeap, 0, work);
    format.accumulateBlock(native_, CAPACITY, CAPACITY, HEAD_DIM, weights, 0, accNative, 0, work);
    assertThat(accHeap).as("%s sums", format.name()).isEqualTo(accNative);
  }

  /** {@code atoms} random unit-norm atoms of {@link #HEAD_DIM} channels. */
  static float[] unitAtoms(int atoms, long seed) {
    Random random = new Random(seed);
    float[] dict = new float[atoms * HEAD_DIM];
    for (int a = 0; a < atoms; a++) {
      double n = 0;
      for (int i = 0; i < HEAD_DIM; i++) {
        dict[a * HEAD_DIM + i] = (float) random.nextGaussian();
        n += dict[a * HEAD_DIM + i] * dict[a * HEAD_DIM + i];
      }
      for (int i = 0; i < HEAD_DIM; i++) {
        dict[a * HEAD_DIM + i] = (float) (dict[a * HEAD_DIM + i] / Math.sqrt(n));
      }
    }
    return dict;
  }

  static float[] randomRows(long seed, int rows) {
    Random random = new Random(seed);
    float[] x = new float[rows * HEAD_DIM];
    for (int i = 0; i < x.length; i++) {
      // Mostly unit-scale values with a few larger ones, as keys and values have.
      x[i] = (float) (random.nextGaussian() * (random.nextInt(16) == 0 ? 4 : 1));
    }
    return x;
  }

  static MemorySegment encode(KvFormat format, float[] rows) {
    MemorySegment block =
        MemorySegment.ofArray(new byte[(int) format.blockBytes(CAPACITY, HEAD_DIM)]);
    format.encode(rows, 0, HEAD_DIM, CAPACITY, block, 0, CAPACITY, HEAD_DIM);
    return block;
  }

  /** The per-value error bound each format states in its Javadoc. */
  static float bound(KvFormat format, MemorySegment block, int slot, int j, float x) {
    float half = 1f / 2048; // fp16 relative rounding
    if (format == KvFormats.F32) {
      return 0f;
    }
    if (format == KvFormats.F16) {
      return Math.abs(x) * half + 1e-7f;
    }
    if (format == KvFormats.BF16) {
      return Math.abs(x) / 256;
    }
    if (format instanceof GgmlBlockFormat ggml) {
      long offset = (long) slot * ggml.rowBytes(HEAD_DIM) + (long) (j / 32) * ggml.typeBytes();
      float d = Math.abs(ggml.codec().d(block, offset));
      float slack = 1e-6f * (Math.abs(x) + d);
      return switch (format.name()) {
        case "q8_0" -> d / 2 + 127 * half * d + slack;
        // Values opposite the extreme beyond 7.5·|d| (15.5·|d|) clamp: up to |d|.
        case "q4_0" -> d + 8 * half * d + slack;
        case "q5_0" -> d + 16 * half * d + slack;
        case "q4_1" -> d / 2 + 15 * half * d + half * Math.abs(x) + 2 * half * d + slack;
        default -> d / 2 + 31 * half * d + half * Math.abs(x) + 2 * half * d + slack;
      };
    }
    if (format instanceof KiviKeyFormat kivi) {
      return kivi.channelScale(block, j) / 2 * (1 + 1e-5f) + 1e-6f * Math.abs(x);
    }
    if (format instanceof TurboQuantKeyFormat tq) {
      // statistical, not worst case: |x_j − x̂_j| ≤ ‖x − x̂‖ ≈ √D_b·ρ (D_b the paper's distortion
      // 0.117, 0.0345, 0.0095 for 2, 3, 4 bits); twice that
      double distortion = new double[] {0, 0, 0.117, 0.0345, 0.0095}[tq.bits()];
      return (float) (2 * Math.sqrt(distortion) * tq.norm(block, slot, HEAD_DIM));
    }
    if (format instanceof TurboQuantProdKeyFormat tq) {
      // statistical: ‖x − x̃‖ ≈ √(π/2)·√D_{b−1}·ρ with the QJL sketch's noise; twice that
      double distortion = new double[] {0, 0.36, 0.117, 0.0345}[tq.bits() - 1];
      return (float) (2 * Math.sqrt(Math.PI / 2 * distortion) * tq.norm(block, slot, HEAD_DIM));
    }
    if (format instanceof Fp8E4m3Format) {
      return Math.max(Math.abs(x) / 16, 0x1p-10f); // half a unit in the last place
    }
    if (format instanceof TurboQuantValueFormat tq) {
      // s/2 from rounding, the fp16 roundings of s (times the code) and of the minimum
      float s = tq.scale(block, slot, HEAD_DIM);
      int top = (1 << tq.bits()) - 1;
      return (s / 2 + top * s * half + half * (Math.abs(x) + top * s)) * (1 + 1e-5f)
          + 1e-6f * Math.abs(x);
    }
    KiviValueFormat kivi = (KiviValueFormat) format;
    return kivi.groupScale(block, slot, HEAD_DIM, j / kivi.group()) / 2 * (1 + 1e-5f)
        + 1e-6f * Math.abs(x);
  }

  @ParameterizedTest
  @MethodSource("formats")
  void roundTripErrorStaysWithinTheFormatsBound(KvFormat format) {
    float[] rows = randomRows(11, CAPACITY);
    MemorySegment block = encode(format, rows);
    float[] decoded = new float[HEAD_DIM];
    float worstRatio = 0f;
    for (int s = 0; s < CAPACITY; s++) {
      format.decode(block, s, CAPACITY, HEAD_DIM, decoded, 0);
      for (int j = 0; j < HEAD_DIM; j++) {
        float x = rows[s * HEAD_DIM + j];
        float error = Math.abs(x - decoded[j]);
        float bound = bound(format, block, s, j, x);
        assertThat(error).as("%s slot %d value %d", format.name(), s, j).isLessThanOrEqualTo(bound);
        if (bound > 0) {
          worstRatio = Math.max(worstRatio, error / bound);
        }
      }
    }
    System.out.printf("round trip %-12s worst error / bound = %.3f%n", format.name(), worstRatio);
  }

  @ParameterizedTest
  @MethodSource("formats")
  void fusedScoresEqualScoresOverTheDequantizedBlock(KvFormat format) {
    float[] rows = randomRows(12, CAPACITY);
    float[] query = randomRows(13, 1);
    MemorySegment block = encode(format, rows);
    float[] fused = new float[CAPACITY];
    float[] reference = new float[CAPACITY];
    format.dots(
        block,
        CAPACITY,
        CAPACITY,
        HEAD_DIM,
        query,
        0,
        fused,
        new float[KvFormat.workLength(HEAD_DIM)]);
    format.dotsReference(block, CAPACITY, CAPACITY, HEAD_DIM, query, 0, reference);
    float[] decoded = new float[HEAD_DIM];
    for (int s = 0; s < CAPACITY; s++) {
      format.decode(block, s, CAPACITY, HEAD_DIM, decoded, 0);
      float magnitude = 0f;
      for (int j = 0; j < HEAD_DIM; j++) {
        magnitude += Math.abs(query[j] * decoded[j]);
      }
      assertThat(Math.abs(fused[s] - reference[s]))
          .as("%s slot %d", format.name(), s)
          .isLessThanOrEqualTo(1e-5f * magnitude);
    }
  }

  @ParameterizedTest
  @MethodSource("formats")
  void fusedWeightedSumEqualsTheSumOverTheDequantizedBlock(KvFormat format) {
    float[] rows = randomRows(14, CAPACITY);
    MemorySegment block = encode(format, rows);
    float[] fused = new float[HEAD_DIM];
    float[] reference = new float[HEAD_DIM];
    float[] magnitude = new float[HEAD_DIM];
    float[] decoded = new float[HEAD_DIM];
    float[] work = new float[KvFormat.workLength(HEAD_DIM)];
    Random random = new Random(15);
    for (int s = 0; s < CAPACITY; s++) {
      float weight = random.nextFloat();
      format.accumulate(block, s, CAPACITY, HEAD_DIM, weight, fused, work);
      format.accumulateReference(block, s, CAPACITY, HEAD_DIM, weight, reference);
      format.decode(block, s, CAPACITY, HEAD_DIM, decoded, 0);
      for (int j = 0; j < HEAD_DIM; j++) {
        magnitude[j] += Math.abs(weight * decoded[j]);
      }
    }
    for (int j = 0; j < HEAD_DIM; j++) {
      assertThat(Math.abs(fused[j] - reference[j]))
          .as("%s channel %d", format.name(), j)
          .isLessThanOrEqualTo(1e-5f * magnitude[j]);
    }
  }

  /**
   * A per-token format's block scores (the decode kernel: several rows interleaved, their lane sums
   * taken together) equal its one-row score of each slot, bit for bit.
   */
  @ParameterizedTest
  @MethodSource("blockFormats")
  void blockScoresEqualEachRowsScore(KvFormat format) {
    org.junit.jupiter.api.Assumptions.assumeTrue(format instanceof RowFormat);
    RowFormat rowFormat = (RowFormat) format;
    MemorySegment block = encode(format, randomRows(25, CAPACITY));
    float[] prepared = new float[format.preparedQueryLength(HEAD_DIM) + 2];
    format.prepareQuery(randomRows(26, 1), 0, HEAD_DIM, prepared, 2);
    float[] work = new float[KvFormat.workLength(HEAD_DIM)];
    float[] scores = new float[CAPACITY];
    format.scores(block, CAPACITY, CAPACITY, HEAD_DIM, prepared, 2, scores, work);
    for (int s = 0; s < CAPACITY; s++) {
      float row =
          rowFormat.dotRow(
              block, (long) s * rowFormat.rowBytes(HEAD_DIM), HEAD_DIM, prepared, 2, work);
      assertThat(Float.floatToRawIntBits(scores[s]))
          .as("%s slot %d", format.name(), s)
          .isEqualTo(Float.floatToRawIntBits(row));
    }
  }

  /** The block weighted sum equals slot-by-slot fused sums, bit for bit, skipping zero weights. */
  @ParameterizedTest
  @MethodSource("blockFormats")
  void blockWeightedSumEqualsTheSlotBySlotSum(KvFormat format) {
    float[] rows = randomRows(17, CAPACITY);
    MemorySegment block = encode(format, rows);
    float[] weights = new float[CAPACITY + 3];
    Random random = new Random(18);
    for (int s = 0; s < CAPACITY; s++) {
      weights[3 + s] = s % 5 == 2 ? 0f : random.nextFloat();
    }
    float[] work = new float[KvFormat.workLength(HEAD_DIM)];
    float[] blockwise = new float[HEAD_DIM + 8];
    format.accumulateBlock(block, CAPACITY, CAPACITY, HEAD_DIM, weights, 3, blockwise, 8, work);
    float[] slotwise = new float[HEAD_DIM];
    for (int s = 0; s < CAPACITY; s++) {
      if (weights[3 + s] != 0f) {
        format.accumulate(block, s, CAPACITY, HEAD_DIM, weights[3 + s], slotwise, work);
      }
    }
    assertThat(java.util.Arrays.copyOfRange(blockwise, 8, 8 + HEAD_DIM)).isEqualTo(slotwise);
  }

  /**
   * One query row over a block (the decode step's kernel, which computes a run of slots' weighted
   * scales first and holds the row in registers) equals the block sum slot by slot, bit for bit:
   * blocks longer than one run of the work array, partly filled, with zero weights, for value
   * groups of 16 and 32 channels.
   */
  @ParameterizedTest
  @MethodSource("oneRowFormats")
  void oneRowOverALongBlockEqualsTheBlockSum(KvFormat format) {
    int capacity = 160;
    MemorySegment block =
        MemorySegment.ofArray(new byte[(int) format.blockBytes(capacity, HEAD_DIM)]);
    format.encode(randomRows(31, capacity), 0, HEAD_DIM, capacity, block, 0, capacity, HEAD_DIM);
    Random random = new Random(32);
    float[] weights = new float[5 + capacity];
    for (int s = 0; s < capacity; s++) {
      weights[5 + s] = s % 9 == 4 ? 0f : random.nextFloat();
    }
    float[] work = new float[KvFormat.workLength(HEAD_DIM)];
    for (int count : new int[] {1, 31, 64, 65, 150, capacity}) {
      float[] start = randomRows(33, 1);
      float[] oneRow = java.util.Arrays.copyOf(start, HEAD_DIM + 3);
      format.accumulateBlockRows(
          block, count, capacity, HEAD_DIM, weights, 5, 0, new int[] {0}, 1, oneRow, 0, work);
      float[] blockwise = java.util.Arrays.copyOf(start, HEAD_DIM + 3);
      format.accumulateBlock(block, count, capacity, HEAD_DIM, weights, 5, blockwise, 0, work);
      assertThat(oneRow).as("%s, %d slots", format.name(), count).isEqualTo(blockwise);
    }
  }

  static Stream<KvFormat> oneRowFormats() {
    return Stream.of(
        new KiviValueFormat(1, 32),
        new KiviValueFormat(1, 16),
        new KiviValueFormat(2, 32),
        new KiviValueFormat(2, 16),
        new KiviValueFormat(4, 32),
        KvFormats.F16,
        KvFormats.F32);
  }

  /**
   * A slot's score does not depend on how many slots are scored with it: kernels that score several
   * slots together (four at a time, lane sums combined) give each slot the bits of the one-slot
   * path that handles a block's tail.
   */
  @ParameterizedTest
  @MethodSource("formats")
  void eachSlotScoresTheSameWhateverTheCount(KvFormat format) {
    MemorySegment block = encode(format, randomRows(23, CAPACITY));
    float[] prepared = new float[format.preparedQueryLength(HEAD_DIM)];
    format.prepareQuery(randomRows(24, 1), 0, HEAD_DIM, prepared, 0);
    float[] work = new float[KvFormat.workLength(HEAD_DIM)];
    float[] all = new float[CAPACITY];
    format.scores(block, CAPACITY, CAPACITY, HEAD_DIM, prepared, 0, all, work);
    for (int count = 1; count < CAPACITY; count++) {
      float[] some = new float[CAPACITY];
      format.scores(block, count, CAPACITY, HEAD_DIM, prepared, 0, some, work);
      assertThat(java.util.Arrays.copyOf(some, count))
          .as("%s, %d slots", format.name(), count)
          .isEqualTo(java.util.Arrays.copyOf(all, count));
    }
  }

  @ParameterizedTest
  @MethodSource("formats")
  void severalQueriesScoreAsEachAlone(KvFormat format) {
    float[] rows = randomRows(21, CAPACITY);
    MemorySegment block = encode(format, rows);
    int queries = 5;
    int pStride = format.preparedQueryLength(HEAD_DIM) + 3;
    float[] raw = randomRows(22, queries);
    float[] prepared = new float[queries * pStride];
    for (int r = 0; r < queries; r++) {
      format.prepareQuery(raw, r * HEAD_DIM, HEAD_DIM, prepared, r * pStride);
    }
    int[] list = {4, 0, 3};
    int count = CAPACITY - 3; // a partly filled block
    float[] work = new float[KvFormat.workLength(HEAD_DIM)];
    float[] together = new float[list.length * (CAPACITY + 1)];
    format.scoresRows(
        block,
        count,
        CAPACITY,
        HEAD_DIM,
        prepared,
        pStride,
        list,
        list.length,
        together,
        CAPACITY + 1,
        work,
        new float[CAPACITY * HEAD_DIM]);
    float[] alone = new float[CAPACITY];
    for (int i = 0; i < list.length; i++) {
      format.scores(block, count, CAPACITY, HEAD_DIM, prepared, list[i] * pStride, alone, work);
      int o = i * (CAPACITY + 1);
      assertThat(java.util.Arrays.copyOfRange(together, o, o + count))
          .as(format.name() + " query " + list[i])
          .isEqualTo(java.util.Arrays.copyOf(alone, count));
    }
  }

  @ParameterizedTest
  @MethodSource("formats")
  void severalRowsAtOnceEqualEachRowAlone(KvFormat format) {
    float[] rows = randomRows(19, CAPACITY);
    MemorySegment block = encode(format, rows);
    int queryRows = 6;
    int stride = CAPACITY + 5;
    float[] weights = new float[2 + queryRows * stride];
    Random random = new Random(20);
    for (int i = 0; i < weights.length; i++) {
      weights[i] = random.nextInt(7) == 0 ? 0f : random.nextFloat();
    }
    int[] list = {0, 2, 3, 5}; // rows 1 and 4 take no part (their queries precede the block)
    float[] work = new float[KvFormat.workLength(HEAD_DIM)];
    float[] together = new float[queryRows * HEAD_DIM];
    float[] alone = new float[queryRows * HEAD_DIM];
    for (int i = 0; i < together.length; i++) {
      together[i] = alone[i] = (float) random.nextGaussian();
    }
    format.accumulateBlockRows(
        block,
        CAPACITY,
        CAPACITY,
        HEAD_DIM,
        weights,
        2,
        stride,
        list,
        list.length,
        together,
        HEAD_DIM,
        work);
    for (int r : list) {
      format.accumulateBlock(
          block, CAPACITY, CAPACITY, HEAD_DIM, weights, 2 + r * stride, alone, r * HEAD_DIM, work);
    }
    assertThat(together).isEqualTo(alone);
  }

  /**
   * Scores from a prepared query equal {@link KvFormat#dots}, and for the llama.cpp formats the
   * quantized query stays close to the exact score (within q8's rounding of the query).
   */
  @ParameterizedTest
  @MethodSource("formats")
  void preparedQueryScoresStayCloseToExactScores(KvFormat format) {
    float[] rows = randomRows(19, CAPACITY);
    float[] query = randomRows(20, 1);
    MemorySegment block = encode(format, rows);
    float[] work = new float[KvFormat.workLength(HEAD_DIM)];
    float[] prepared = new float[format.preparedQueryLength(HEAD_DIM) + 2];
    format.prepareQuery(query, 0, HEAD_DIM, prepared, 2);
    float[] fromPrepared = new float[CAPACITY];
    float[] viaDots = new float[CAPACITY];
    format.scores(block, CAPACITY, CAPACITY, HEAD_DIM, prepared, 2, fromPrepared, work);
    format.dots(block, CAPACITY, CAPACITY, HEAD_DIM, query, 0, viaDots, work);
    assertThat(fromPrepared).isEqualTo(viaDots);
    float[] decoded = new float[HEAD_DIM];
    for (int s = 0; s < CAPACITY; s++) {
      format.decode(block, s, CAPACITY, HEAD_DIM, decoded, 0);
      double exact = 0;
      double magnitude = 0;
      for (int j = 0; j < HEAD_DIM; j++) {
        exact += (double) query[j] * decoded[j];
        magnitude += Math.abs((double) query[j] * decoded[j]);
      }
      // q8 query: relative error 1/254 per value; f16 query: 2^-11; s = fp16(d·Σq): 2^-11
      assertThat(Math.abs(fromPrepared[s] - exact))
          .as("%s slot %d", format.name(), s)
          .isLessThanOrEqualTo(0.01 * magnitude + 1e-5);
    }
  }

  @ParameterizedTest
  @MethodSource("formats")
  void perTokenRowsCanBeWrittenOneAtATime(KvFormat format) {
    if (!format.perToken()) {
      return;
    }
    float[] rows = randomRows(16, CAPACITY);
    MemorySegment whole = encode(format, rows);
    MemorySegment oneByOne =
        MemorySegment.ofArray(new byte[(int) format.blockBytes(CAPACITY, HEAD_DIM)]);
    for (int s = CAPACITY - 1; s >= 0; s--) {
      format.encode(rows, s * HEAD_DIM, HEAD_DIM, 1, oneByOne, s, CAPACITY, HEAD_DIM);
    }
    assertThat(oneByOne.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE))
        .isEqualTo(whole.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE));
  }

  @org.junit.jupiter.api.Test
  void formatsAreFoundByName() {
    for (KvFormat f : KvFormats.NAMED) {
      assertThat(KvFormats.byName(f.name())).isSameAs(f);
    }
    assertThat(KvFormats.byName("kivi_k2")).isEqualTo(new KiviKeyFormat(2));
    assertThat(KvFormats.byName("kivi_v4_g16")).isEqualTo(new KiviValueFormat(4, 16));
    assertThat(List.of("q3_0", "kivi_kx"))
        .allSatisfy(
            bad ->
                org.assertj.core.api.Assertions.assertThatThrownBy(() -> KvFormats.byName(bad))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining(bad)
                    .hasMessageContaining("q8_0"));
  }
}
