package io.kvslim.tensor;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import io.kvslim.SharedData;
import io.kvslim.gguf.GgmlType;
import io.kvslim.gguf.GgufFile;
import io.kvslim.gguf.TensorInfo;
import java.util.EnumSet;
import java.util.Set;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Vector kernels against scalar references on real rows of the shared GGUF models. */
class RealModelKernelTest {

  @ParameterizedTest
  @ValueSource(
      strings = {
        "llama-spm-q8_0.gguf",
        "llama-spm-q4_0.gguf",
        "llama256-spm-q4_k_m.gguf",
        "llama256-spm-q6_k.gguf"
      })
  void vectorDotMatchesScalarOnRealTensors(String model) {
    Set<GgmlType> seen = EnumSet.noneOf(GgmlType.class);
    try (GgufFile gguf = GgufFile.open(SharedData.model(model))) {
      for (TensorInfo info : gguf.tensors()) {
        if (info.dims().length != 2) {
          continue;
        }
        int cols = (int) info.cols();
        int rows = (int) info.rows();
        WeightMatrix w = WeightMatrix.of(info.type(), gguf.tensorData(info), rows, cols);
        seen.add(info.type());
        float[] x = RandomWeights.activations(cols, info.name().hashCode());
        float[] row = new float[cols];
        for (int r : new int[] {0, rows / 2, rows - 1}) {
          double tolerance = RandomWeights.tolerance(w, r, x, 0);
          float scalar = w.dotScalar(r, x, 0);
          assertThat(w.dot(r, x, 0))
              .as("%s %s row %d", info.name(), info.type(), r)
              .isCloseTo(scalar, within((float) tolerance));
          w.dequantizeRow(r, row, 0);
          float plain = 0f;
          for (int i = 0; i < cols; i++) {
            assertThat(Float.isFinite(row[i])).isTrue();
            plain += row[i] * x[i];
          }
          assertThat(plain).isCloseTo(scalar, within((float) tolerance));
        }
      }
    }
    System.out.println(model + ": checked types " + seen);
    assertThat(seen).isNotEmpty();
  }
}
