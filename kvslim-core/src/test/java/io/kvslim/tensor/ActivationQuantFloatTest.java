package io.kvslim.tensor;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.gguf.GgmlType;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * F32 and F16 weights in llama.cpp's numerics: tinyBLAS's 16 lanes for prompt batches whose shape
 * fits its tiles, {@code ggml_vec_dot_f32}/{@code _f16}'s 64-element steps otherwise.
 */
class ActivationQuantFloatTest {

  @ParameterizedTest(name = "{0} {1}x{2}, {3} rows of activations")
  @CsvSource({
    "F32, 8, 96, 3", // tinyBLAS
    "F32, 8, 96, 1", // one row: ggml_vec_dot_f32, 32 leftovers
    "F32, 6, 96, 3", // rows not a multiple of 4: ggml_vec_dot_f32
    "F32, 8, 40, 2", // cols not a multiple of 16: ggml_vec_dot_f32, no full step
    "F16, 8, 96, 3",
    "F16, 8, 80, 1", // ggml_vec_dot_f16, 16 leftovers summed in double
    "F16, 5, 128, 2"
  })
  void matmulFollowsLlamaCppsOrder(GgmlType type, int rows, int cols, int n) {
    WeightMatrix w = RandomWeights.matrix(type, rows, cols, 11);
    Random random = new Random(12);
    float[] x = new float[n * cols];
    for (int i = 0; i < x.length; i++) {
      x[i] = (float) random.nextGaussian();
    }
    float[] out = new float[n * rows];
    try (Parallel pool = new Parallel(2)) {
      ActivationQuant.matmul(w, x, n, out, pool);
    }
    boolean tiles = n >= 2 && cols % 16 == 0 && rows % 4 == 0;
    float[] row = new float[cols];
    float[] act = new float[cols];
    for (int r = 0; r < rows; r++) {
      w.dequantizeRow(r, row, 0);
      for (int t = 0; t < n; t++) {
        for (int i = 0; i < cols; i++) {
          float v = x[t * cols + i];
          act[i] = type == GgmlType.F16 ? Float.float16ToFloat(Float.floatToFloat16(v)) : v;
        }
        float expected;
        if (tiles) {
          float[] lanes = new float[16];
          for (int i = 0; i < cols; i++) {
            lanes[i % 16] = Math.fma(row[i], act[i], lanes[i % 16]);
          }
          expected = LlamaCppMath.sum16(lanes, 0);
        } else if (type == GgmlType.F32) {
          expected = LlamaCppMath.dot(row, 0, act, 0, cols, new float[64]);
        } else {
          int steps = cols & ~63;
          double sum = LlamaCppMath.dot(row, 0, act, 0, steps, new float[64]);
          for (int i = steps; i < cols; i++) {
            sum += row[i] * act[i];
          }
          expected = (float) sum;
        }
        assertThat(out[t * rows + r]).as("row %d, activation row %d", r, t).isEqualTo(expected);
      }
    }
  }
}
