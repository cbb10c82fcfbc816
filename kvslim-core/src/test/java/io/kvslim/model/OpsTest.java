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

  /**
   * The vector part equals ggml's SiLU times up element by element, bit for bit, over gates from
   * subnormal to beyond the exponential's range (where a vector falls back to the scalar function),
   * signed zeros, infinities and NaN; the row's last {@code cols mod 16} use the C library's expf.
   */
  @Test
  void swigluEqualsTheScalarSiluOfEveryElement() {
    SplittableRandom r = new SplittableRandom(10);
    int cols = 4099; // 256 vectors of 16 and a tail of 3
    float[] gate = new float[cols];
    float[] up = new float[cols];
    float[] specials = {
      0f,
      -0f,
      1e-40f,
      -1e-40f,
      86f,
      -86f,
      87.5f,
      -87.5f,
      88.8f,
      -88.8f,
      89f,
      -89f,
      103f,
      -104f,
      150f,
      -150f,
      200f,
      -200f,
      Float.MAX_VALUE,
      -Float.MAX_VALUE,
      Float.POSITIVE_INFINITY,
      Float.NEGATIVE_INFINITY,
      Float.NaN,
      Float.MIN_VALUE,
      0.5f,
      -0.5f
    };
    for (int i = 0; i < cols; i++) {
      gate[i] =
          i < 1024 && i % 4 == 0
              ? specials[(i / 4) % specials.length]
              : (float) (r.nextGaussian() * (i % 7 == 0 ? 40 : 3));
      up[i] = (float) r.nextGaussian();
    }
    float[] out = gate.clone();
    Ops.swiglu(out, up, 1, cols);
    for (int i = 0; i < cols; i++) {
      float g = gate[i];
      float expected =
          (i < (cols & ~15)
                  ? io.kvslim.tensor.LlamaCppMath.silu(g)
                  : io.kvslim.tensor.LlamaCppMath.siluTail(g))
              * up[i];
      assertThat(Float.floatToIntBits(out[i]))
          .as("element %d, gate %s", i, g)
          .isEqualTo(Float.floatToIntBits(expected));
    }
  }
}
