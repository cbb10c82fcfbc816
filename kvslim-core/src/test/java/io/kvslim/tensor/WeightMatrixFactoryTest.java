package io.kvslim.tensor;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.gguf.GgmlType;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import org.junit.jupiter.api.Test;

class WeightMatrixFactoryTest {

  @Test
  void everySupportedTypeGetsItsOwnMatrixClass() {
    for (GgmlType type : RandomWeights.TYPES) {
      int cols = type.blockSize() == 256 ? 256 : 32;
      WeightMatrix w = RandomWeights.matrix(type, 2, cols, 1);
      assertThat(w.type()).isEqualTo(type);
      assertThat(w.byteSize()).isEqualTo(2 * type.bytesFor(cols));
      assertThat(w.getClass().getSimpleName()).isEqualTo(type.name() + "Matrix");
    }
  }

  @Test
  void unsupportedTypeNamesTheTypeAndTheSupportedOnes() {
    MemorySegment data = Arena.ofAuto().allocate(1024);
    assertThatThrownBy(() -> WeightMatrix.of(GgmlType.Q2_K, data, 1, 256))
        .isInstanceOf(UnsupportedOperationException.class)
        .hasMessageContaining("Q2_K is not supported")
        .hasMessageContaining("Q6_K");
  }

  @Test
  void columnsMustFillWholeBlocks() {
    MemorySegment data = Arena.ofAuto().allocate(1024);
    assertThatThrownBy(() -> WeightMatrix.of(GgmlType.Q8_0, data, 1, 33))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("multiple of 32");
  }

  @Test
  void tooFewBytesAreRejected() {
    MemorySegment data = Arena.ofAuto().allocate(34);
    assertThatThrownBy(() -> WeightMatrix.of(GgmlType.Q8_0, data, 2, 32))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("needs 68 bytes, got 34");
  }
}
