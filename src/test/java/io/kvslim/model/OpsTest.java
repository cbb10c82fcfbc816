package io.kvslim.model;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class OpsTest {
  @Test
  void swigluOverRangesOfEachRowEqualsSwigluOfTheWholeRows() {
    SplittableRandom r = new SplittableRandom(9);
    for (int cols : new int[] {16, 100, 2048}) {
      int rows = 3;
      float[] gate = new float[rows * cols];
      float[] up = new float[rows * cols];
      for (int i = 0; i < gate.length; i++) {
        gate[i] = (float) (r.nextGaussian() * 4);
        up[i] = (float) r.nextGaussian();
      }
      float[] whole = gate.clone();
      Ops.swiglu(whole, up, rows, cols);
      float[] pieces = gate.clone();
      int[] cuts = {0, cols / 3, cols / 2 + 1, cols};
      for (int row = 0; row < rows; row++) {
        for (int c = 0; c + 1 < cuts.length; c++) {
          Ops.swigluRange(pieces, up, cols, row * cols, cuts[c], cuts[c + 1]);
        }
      }
      assertThat(pieces).as("cols %d", cols).containsExactly(whole);
    }
  }
}
