package io.kvslim.tensor;

import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;

/** Factory from GGML type to the {@link WeightMatrix} subclass that reads it. */
final class WeightMatrices {
  private WeightMatrices() {}

  static WeightMatrix create(GgmlType type, MemorySegment data, int rows, int cols) {
    return switch (type) {
      case F32 -> new F32Matrix(data, rows, cols);
      default ->
          throw new UnsupportedOperationException(
              "weight type "
                  + type
                  + " is not supported (supported: F32, F16, BF16, Q8_0,"
                  + " Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)");
    };
  }
}
