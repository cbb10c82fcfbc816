package io.kvslim.kv.format;

import static org.assertj.core.api.Assertions.assertThat;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The f16 block kernels widen halves without checking each vector for infinities and NaNs and redo
 * a block exactly when it held one: their results must equal the row-by-row exact path with and
 * without such values, over several vectors of channels.
 */
class F16FormatTest {
  private static final KvFormat F16 = KvFormats.F16;
  private static final int HEAD_DIM = 128;
  private static final int CAPACITY = 24;

  private static MemorySegment block(boolean specials) {
    Random random = new Random(3);
    float[] rows = new float[CAPACITY * HEAD_DIM];
    for (int i = 0; i < rows.length; i++) {
      // values of every fp16 exponent, subnormals included
      rows[i] = (float) (random.nextGaussian() * Math.pow(2, random.nextInt(40) - 24));
    }
    if (specials) {
      rows[5 * HEAD_DIM + 7] = 1e6f; // +infinity in fp16
      rows[9 * HEAD_DIM + 100] = Float.NaN;
      rows[18 * HEAD_DIM + 70] = Float.NEGATIVE_INFINITY;
    }
    MemorySegment block = MemorySegment.ofArray(new byte[(int) F16.blockBytes(CAPACITY, HEAD_DIM)]);
    F16.encode(rows, 0, HEAD_DIM, CAPACITY, block, 0, CAPACITY, HEAD_DIM);
    return block;
  }

  @Test
  void blockScoresEqualRowByRowScores() {
    for (boolean specials : new boolean[] {false, true}) {
      MemorySegment block = block(specials);
      float[] prepared = new float[2 * HEAD_DIM];
      Random random = new Random(4);
      for (int j = 0; j < HEAD_DIM; j++) {
        prepared[j] = prepared[HEAD_DIM + j] = (float) random.nextGaussian();
      }
      float[] work = new float[KvFormat.workLength(HEAD_DIM)];
      float[] fast = new float[CAPACITY];
      F16.scores(block, CAPACITY, CAPACITY, HEAD_DIM, prepared, 0, fast, work);
      // two identical queries take the decode-each-row-once path, row by row
      float[] rowwise = new float[2 * CAPACITY];
      F16.scoresRows(
          block,
          CAPACITY,
          CAPACITY,
          HEAD_DIM,
          prepared,
          HEAD_DIM,
          new int[] {0, 1},
          2,
          rowwise,
          CAPACITY,
          work,
          new float[CAPACITY * HEAD_DIM]);
      assertThat(fast).as("specials " + specials).isEqualTo(Arrays.copyOf(rowwise, CAPACITY));
      if (specials) {
        assertThat(fast[5]).isInfinite();
        assertThat(fast[9]).isNaN();
      }
    }
  }

  @Test
  void blockWeightedSumsEqualRowByRowSums() {
    for (boolean specials : new boolean[] {false, true}) {
      MemorySegment block = block(specials);
      float[] weights = new float[CAPACITY];
      Random random = new Random(5);
      for (int s = 0; s < CAPACITY; s++) {
        weights[s] = s % 7 == 3 ? 0f : random.nextFloat();
      }
      float[] work = new float[KvFormat.workLength(HEAD_DIM)];
      float[] blockwise = new float[HEAD_DIM];
      float[] rowwise = new float[HEAD_DIM];
      for (int j = 0; j < HEAD_DIM; j++) {
        blockwise[j] = rowwise[j] = j * 0.25f;
      }
      F16.accumulateBlock(block, CAPACITY, CAPACITY, HEAD_DIM, weights, 0, blockwise, 0, work);
      for (int s = 0; s < CAPACITY; s++) {
        if (weights[s] != 0f) {
          F16.accumulate(block, s, CAPACITY, HEAD_DIM, weights[s], rowwise, work);
        }
      }
      assertThat(blockwise).as("specials " + specials).isEqualTo(rowwise);
      if (specials) {
        assertThat(blockwise[7]).isInfinite();
        assertThat(blockwise[100]).isNaN();
        assertThat(blockwise[70]).isInfinite();
      }
    }
  }
}
