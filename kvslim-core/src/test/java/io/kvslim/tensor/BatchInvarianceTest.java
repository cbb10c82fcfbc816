package io.kvslim.tensor;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.gguf.GgmlType;
import java.util.SplittableRandom;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * A row's matmul result must not depend on the batch it is computed in: batched decode of many
 * sequences must give each the same logits, bit for bit, as decoding it alone.
 */
class BatchInvarianceTest {
  @ParameterizedTest
  @EnumSource(
      value = GgmlType.class,
      names = {
        "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"
      })
  void everyRowOfABatchEqualsTheSingleRowProduct(GgmlType type) {
    int rows = 48;
    int cols = 512;
    WeightMatrix w = RandomWeights.matrix(type, rows, cols, 11);
    SplittableRandom r = new SplittableRandom(5);
    try (Parallel pool = new Parallel(2)) {
      for (int n = 1; n <= 9; n++) {
        float[] x = new float[n * cols];
        for (int i = 0; i < x.length; i++) {
          x[i] = (float) r.nextGaussian();
        }
        float[] out = new float[n * rows];
        MatMul.matmul(w, x, n, out, pool);
        for (int t = 0; t < n; t++) {
          float[] one = new float[rows];
          float[] xt = java.util.Arrays.copyOfRange(x, t * cols, (t + 1) * cols);
          MatMul.matmul(w, xt, 1, one, pool);
          for (int row = 0; row < rows; row++) {
            assertThat(out[t * rows + row])
                .as("%s n=%d token %d row %d", type, n, t, row)
                .isEqualTo(one[row]);
          }
        }
      }
    }
  }
}
