package io.kvslim.tensor;

import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;

/** Factory from GGML type to the {@link WeightMatrix} subclass that reads it. */
final class WeightMatrices {
  private WeightMatrices() {}

  static WeightMatrix create(GgmlType type, MemorySegment data, int rows, int cols) {
    return switch (type) {
      case F32 -> new F32Matrix(data, rows, cols);
      case F16 -> new F16Matrix(data, rows, cols);
      case BF16 -> new BF16Matrix(data, rows, cols);
      case Q8_0 -> new Q8_0Matrix(data, rows, cols);
      case Q4_0 -> new Q4_0Matrix(data, rows, cols);
      case Q4_1 -> new Q4_1Matrix(data, rows, cols);
      case Q5_0 -> new Q5_0Matrix(data, rows, cols);
      case Q5_1 -> new Q5_1Matrix(data, rows, cols);
      case Q4_K -> new Q4_KMatrix(data, rows, cols);
      case Q5_K -> new Q5_KMatrix(data, rows, cols);
      case Q6_K -> new Q6_KMatrix(data, rows, cols);
      default ->
          throw new UnsupportedOperationException(
              "weight type "
                  + type
                  + " is not supported (supported: F32, F16, BF16, Q8_0,"
                  + " Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)");
    };
  }
}
