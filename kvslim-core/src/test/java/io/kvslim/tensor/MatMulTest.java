package io.kvslim.tensor;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import io.kvslim.gguf.GgmlType;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

class MatMulTest {
  private static final int ROWS = 67; // not a multiple of the row grain
  private static Parallel pool;

  @BeforeAll
  static void startPool() {
    pool = new Parallel(3);
  }

  @AfterAll
  static void stopPool() {
    pool.close();
  }

  private static int colsFor(GgmlType type) {
    return type.blockSize() == 256 ? 512 : 96;
  }

  @ParameterizedTest
  @EnumSource(
      value = GgmlType.class,
      names = {
        "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"
      })
  void matvecOnThreadsEqualsDotPerRow(GgmlType type) {
    int cols = colsFor(type);
    WeightMatrix w = RandomWeights.matrix(type, ROWS, cols, 17);
    float[] x = RandomWeights.activations(cols, 18);
    float[] out = new float[ROWS];
    MatMul.matvec(w, x, out, pool);
    for (int r = 0; r < ROWS; r++) {
      assertThat(out[r]).as("row %d", r).isEqualTo(w.dot(r, x, 0));
    }
  }

  @ParameterizedTest
  @EnumSource(
      value = GgmlType.class,
      names = {
        "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"
      })
  void matmulEqualsMatvecPerActivationRow(GgmlType type) {
    int cols = colsFor(type);
    WeightMatrix w = RandomWeights.matrix(type, ROWS, cols, 23);
    for (int n : new int[] {1, 3, 5, 8}) {
      float[] x = RandomWeights.activations(n * cols, 24 + n);
      float[] out = new float[n * ROWS];
      MatMul.matmul(w, x, n, out, pool);
      float[] xt = new float[cols];
      float[] expected = new float[ROWS];
      for (int t = 0; t < n; t++) {
        System.arraycopy(x, t * cols, xt, 0, cols);
        MatMul.matvec(w, xt, expected, pool);
        for (int r = 0; r < ROWS; r++) {
          assertThat(out[t * ROWS + r])
              .as("%s n=%d activation %d row %d", type, n, t, r)
              .isCloseTo(expected[r], within((float) RandomWeights.tolerance(w, r, xt, 0)));
        }
      }
    }
  }

  @ParameterizedTest
  @EnumSource(
      value = GgmlType.class,
      names = {
        "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"
      })
  void matmulIsBitIdenticalToDotForEveryBatchSize(GgmlType type) {
    int cols = colsFor(type);
    WeightMatrix w = RandomWeights.matrix(type, ROWS, cols, 41);
    for (int n = 2; n <= 9; n++) {
      float[] x = RandomWeights.activations(n * cols, 42 + n);
      float[] out = new float[n * ROWS];
      MatMul.matmul(w, x, n, out, pool);
      for (int t = 0; t < n; t++) {
        for (int r = 0; r < ROWS; r++) {
          assertThat(out[t * ROWS + r])
              .as("%s n=%d activation %d row %d", type, n, t, r)
              .isEqualTo(w.dot(r, x, t * cols));
        }
      }
    }
  }

  /**
   * A prompt-sized product whose weight rows span two decoded chunks (plus rows outside any panel)
   * and whose activation rows span several cache blocks, the last one partial: every product still
   * has {@code dot}'s bits.
   */
  @ParameterizedTest
  @EnumSource(
      value = GgmlType.class,
      names = {"Q8_0", "Q4_0"})
  void matmulAcrossPanelChunksAndActivationBlocksIsBitIdenticalToDot(GgmlType type) {
    int cols = 4096;
    int rows = PanelKernel.CHUNK_FLOATS / cols + 11; // a full chunk, a partial one, 3 single rows
    int n = 2 * PanelKernel.activationBlock(cols) + 7;
    WeightMatrix w = RandomWeights.matrix(type, rows, cols, 61);
    float[] x = RandomWeights.activations(n * cols, 62);
    float[] out = new float[n * rows];
    try (Parallel single = new Parallel(1)) {
      MatMul.matmul(w, x, n, out, single);
    }
    for (int t = 0; t < n; t++) {
      for (int r = 0; r < rows; r++) {
        assertThat(out[t * rows + r])
            .as("%s activation %d row %d", type, t, r)
            .isEqualTo(w.dot(r, x, t * cols));
      }
    }
  }

  @Test
  void matmulsOfSeveralMatricesEqualEachMatmulBitForBit() {
    int cols = 96;
    WeightMatrix[] ws = {
      RandomWeights.matrix(GgmlType.Q8_0, ROWS, cols, 51),
      RandomWeights.matrix(GgmlType.F32, 29, cols, 52),
      RandomWeights.matrix(GgmlType.Q4_0, 40, cols, 53)
    };
    for (int n = 1; n <= 11; n++) {
      float[] x = RandomWeights.activations(n * cols, 54 + n);
      float[][] outs = new float[ws.length][];
      for (int i = 0; i < ws.length; i++) {
        outs[i] = new float[n * ws[i].rows()];
      }
      MatMul.matmuls(ws, x, n, outs, pool);
      for (int i = 0; i < ws.length; i++) {
        float[] alone = new float[n * ws[i].rows()];
        MatMul.matmul(ws[i], x, n, alone, pool);
        assertThat(outs[i]).as("matrix %d, n=%d", i, n).containsExactly(alone);
      }
    }
  }

  @Test
  void singleThreadPoolGivesTheSameResults() {
    WeightMatrix w = RandomWeights.matrix(GgmlType.Q8_0, ROWS, 128, 31);
    float[] x = RandomWeights.activations(3 * 128, 32);
    float[] many = new float[3 * ROWS];
    float[] one = new float[3 * ROWS];
    MatMul.matmul(w, x, 3, many, pool);
    try (Parallel single = new Parallel(1)) {
      MatMul.matmul(w, x, 3, one, single);
    }
    assertThat(many).containsExactly(one);
  }

  @Test
  void rejectsActivationsOfTheWrongLength() {
    WeightMatrix w = RandomWeights.matrix(GgmlType.F32, 4, 8, 1);
    assertThatThrownBy(() -> MatMul.matmul(w, new float[15], 2, new float[8], pool))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("need 2 x 8");
  }
}
