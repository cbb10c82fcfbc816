package io.kvslim.kv.attention;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.kv.format.F32Format;
import java.lang.foreign.MemorySegment;
import java.util.Random;
import jdk.incubator.vector.FloatVector;
import org.junit.jupiter.api.Test;

/** The fixed-order kernels against scalar references, and their lane and tail paths agreeing. */
class AttentionKernelsTest {

  @Test
  void fourLaneSumsTogetherEqualEachAlone() {
    Random random = new Random(37);
    int lanes = VectorKernels.FLOATS.length();
    float[] scratch = new float[lanes + 5];
    for (int round = 0; round < 2000; round++) {
      FloatVector[] v = new FloatVector[4];
      for (int i = 0; i < 4; i++) {
        float[] a = new float[lanes];
        for (int j = 0; j < lanes; j++) {
          // mixed magnitudes, so a different order of additions would round differently
          a[j] = (float) (random.nextGaussian() * Math.pow(10, random.nextInt(7) - 3));
        }
        v[i] = FloatVector.fromArray(VectorKernels.FLOATS, a, 0);
      }
      float[] out = new float[6];
      AttentionKernels.sumLanes4(v[0], v[1], v[2], v[3], out, 1, scratch, 5);
      for (int i = 0; i < 4; i++) {
        assertThat(out[1 + i]).isEqualTo(AttentionKernels.sumLanes(v[i]));
        // the scalar tree over the stored lanes: the same bits
        float[] stored = new float[lanes + 3];
        v[i].intoArray(stored, 3);
        assertThat(AttentionKernels.sumLanes(stored, 3)).isEqualTo(AttentionKernels.sumLanes(v[i]));
      }
    }
  }

  @Test
  void expIsWithinTwoUlpOfTheExactValue() {
    Random random = new Random(31);
    double worst = 0;
    for (int i = 0; i < 200_000; i++) {
      float x = i < 1000 ? -i / 10f : -random.nextFloat() * 87f;
      double exact = Math.exp(x);
      float e = AttentionKernels.exp(x);
      if (x < -87f) {
        assertThat(e).isZero(); // flushed: the exact value is below 2^-125
        continue;
      }
      double ulps = Math.abs(e - exact) / Math.ulp((float) exact);
      worst = Math.max(worst, ulps);
    }
    System.out.printf("exp: worst error %.2f ulp%n", worst);
    assertThat(worst).isLessThanOrEqualTo(2.0);
    assertThat(AttentionKernels.exp(0f)).isEqualTo(1f);
    assertThat(AttentionKernels.exp(Float.NEGATIVE_INFINITY)).isZero();
    assertThat(AttentionKernels.exp(-100f)).isZero();
  }

  @Test
  void vectorLanesComputeTheSameExpAsTheScalarTail() {
    Random random = new Random(32);
    int n = 1003; // not a multiple of any lane count
    float[] x = new float[n];
    for (int i = 0; i < n; i++) {
      x[i] = (float) (random.nextGaussian() * 8);
    }
    x[7] = Float.NEGATIVE_INFINITY;
    x[8] = -200f;
    float[] lanes = x.clone();
    float max = AttentionKernels.max(x, 0, n);
    float sum = AttentionKernels.expAndSum(lanes, 0, n, max);
    double exactSum = 0;
    for (int i = 0; i < n; i++) {
      assertThat(lanes[i]).as("element %d", i).isEqualTo(AttentionKernels.exp(x[i] - max));
      exactSum += lanes[i];
    }
    assertThat((double) sum)
        .isCloseTo(exactSum, org.assertj.core.data.Offset.offset(1e-5 * exactSum));
  }

  @Test
  void dotsAndWeightedSumsMatchSequentialReferences() {
    Random random = new Random(33);
    for (int n : new int[] {1, 7, 16, 32, 64, 80, 128, 131}) {
      float[] a = new float[n + 3];
      float[] b = new float[n + 5];
      for (int i = 0; i < a.length; i++) {
        a[i] = (float) random.nextGaussian();
      }
      for (int i = 0; i < b.length; i++) {
        b[i] = (float) random.nextGaussian();
      }
      double exact = 0;
      double magnitude = 0;
      for (int j = 0; j < n; j++) {
        exact += (double) a[3 + j] * b[5 + j];
        magnitude += Math.abs((double) a[3 + j] * b[5 + j]);
      }
      float fromArray = AttentionKernels.dot(a, 3, b, 5, n);
      MemorySegment segment = MemorySegment.ofArray(new byte[4 * b.length]);
      for (int j = 0; j < b.length; j++) {
        segment.set(F32Format.FLOAT_LE, 4L * j, b[j]);
      }
      float fromSegment = AttentionKernels.dot(a, 3, segment, 20, n);
      assertThat(fromSegment).as("n=%d", n).isEqualTo(fromArray);
      assertThat((double) fromArray)
          .isCloseTo(exact, org.assertj.core.data.Offset.offset(1e-6 * magnitude));

      float[] acc = new float[n];
      float[] accFromSegment = new float[n];
      AttentionKernels.addWeighted(0.75f, b, 5, acc, 0, n);
      AttentionKernels.addWeighted(0.75f, segment, 20, accFromSegment, 0, n);
      for (int j = 0; j < n; j++) {
        assertThat(acc[j]).isEqualTo(Math.fma(b[5 + j], 0.75f, 0f));
      }
      assertThat(accFromSegment).isEqualTo(acc);
    }
  }
}
