package io.kvslim.tensor;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.Random;
import jdk.incubator.vector.FloatVector;
import org.junit.jupiter.api.Test;

class SimdTest {

  /** The scalar lane sum adds in the vector tree's order: the same bits for any lanes. */
  @Test
  void scalarLaneSumEqualsTheVectorTree() {
    Random random = new Random(41);
    float[] a = new float[Simd.FL];
    float[] stored = new float[Simd.FL + 7];
    for (int round = 0; round < 5000; round++) {
      for (int j = 0; j < a.length; j++) {
        a[j] = (float) (random.nextGaussian() * Math.pow(10, random.nextInt(9) - 4));
      }
      FloatVector v = FloatVector.fromArray(Simd.F, a, 0);
      v.intoArray(stored, 7);
      assertThat(Simd.sumLanes(stored, 7)).isEqualTo(Simd.sumLanes(v));
    }
  }
}
