package io.kvslim.tensor;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import io.kvslim.gguf.GgmlType;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** Every type's vector kernel, dequantization and tiled kernel against its scalar reference. */
class WeightKernelTest {
  private static final int ROWS = 3;
  private static final int X_OFFSET = 5;

  static Stream<Arguments> shapes() {
    List<Arguments> cases = new ArrayList<>();
    for (GgmlType type : RandomWeights.TYPES) {
      int block = type.blockSize();
      int[] colsList =
          block == 1
              ? new int[] {1, 7, 16, 31, 33, 100, 4096}
              : new int[] {block, 2 * block, 3 * block, 4 * block, 4096};
      for (int cols : colsList) {
        cases.add(Arguments.of(type, cols));
      }
    }
    return cases.stream();
  }

  @ParameterizedTest(name = "{0} cols={1}")
  @MethodSource("shapes")
  void vectorDotMatchesScalarDot(GgmlType type, int cols) {
    WeightMatrix w = RandomWeights.matrix(type, ROWS, cols, 42 + cols);
    float[] x = RandomWeights.activations(cols + X_OFFSET, 7 + cols);
    for (int r = 0; r < ROWS; r++) {
      float expected = w.dotScalar(r, x, X_OFFSET);
      assertThat(w.dot(r, x, X_OFFSET))
          .as("%s row %d", type, r)
          .isCloseTo(expected, within((float) RandomWeights.tolerance(w, r, x, X_OFFSET)));
    }
  }

  @ParameterizedTest(name = "{0} cols={1}")
  @MethodSource("shapes")
  void dequantizedRowDotEqualsScalarDot(GgmlType type, int cols) {
    WeightMatrix w = RandomWeights.matrix(type, ROWS, cols, 99 + cols);
    float[] x = RandomWeights.activations(cols + X_OFFSET, 3 + cols);
    float[] row = new float[cols + 2];
    for (int r = 0; r < ROWS; r++) {
      w.dequantizeRow(r, row, 2);
      float plain = 0f;
      for (int i = 0; i < cols; i++) {
        assertThat(Float.isFinite(row[2 + i])).isTrue();
        plain += row[2 + i] * x[X_OFFSET + i];
      }
      assertThat(plain)
          .as("%s row %d", type, r)
          .isCloseTo(
              w.dotScalar(r, x, X_OFFSET),
              within((float) RandomWeights.tolerance(w, r, x, X_OFFSET)));
    }
  }

  @ParameterizedTest(name = "{0} cols={1}")
  @MethodSource("shapes")
  void tiledDotMatchesDotForEveryTileSize(GgmlType type, int cols) {
    WeightMatrix w = RandomWeights.matrix(type, ROWS, cols, 5 + cols);
    int maxN = 9;
    int xStride = cols + 3;
    float[] x = RandomWeights.activations(X_OFFSET + maxN * xStride, 11 + cols);
    for (int n = 1; n <= maxN; n++) {
      int outStride = 2;
      float[] out = new float[1 + n * outStride];
      for (int r = 0; r < ROWS; r++) {
        w.dotTile(r, x, X_OFFSET, xStride, n, out, 1, outStride);
        for (int t = 0; t < n; t++) {
          int xo = X_OFFSET + t * xStride;
          assertThat(out[1 + t * outStride])
              .as("%s row %d, tile of %d, activation %d", type, r, n, t)
              .isCloseTo(w.dot(r, x, xo), within((float) RandomWeights.tolerance(w, r, x, xo)));
        }
      }
    }
  }

  /**
   * The decode kernel ({@code dotRows}: several weight rows a fixed distance apart per pass, four
   * or eight depending on the vector width, the rest one at a time) gives each row {@link
   * WeightMatrix#dot}'s bits, for ranges that start anywhere and do not divide into passes.
   */
  @ParameterizedTest(name = "{0} cols={1}")
  @MethodSource("shapes")
  void decodeRowsEqualTheSingleRowDotBitForBit(GgmlType type, int cols) {
    int rows = 77;
    WeightMatrix w = RandomWeights.matrix(type, rows, cols, 17 + cols);
    float[] x = RandomWeights.activations(cols, 23 + cols);
    int[][] ranges = {{0, rows}, {3, 37}, {40, 33}, {0, 8}, {5, 4}, {76, 1}};
    for (int[] range : ranges) {
      float[] out = new float[rows];
      w.dotRows(range[0], range[1], x, out);
      for (int r = range[0]; r < range[0] + range[1]; r++) {
        assertThat(out[r])
            .as("%s rows %s row %d", type, java.util.Arrays.toString(range), r)
            .isEqualTo(w.dot(r, x, 0));
      }
    }
  }
}
