package io.kvslim.kv.policy;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** Ada-KV's head budgets ({@link SnapKvPolicy#adaptiveBudgets}): reference rounding, capped sum. */
class AdaKvBudgetsTest {
  /** Votes where head h has {@code counts[h]} tokens voted {@code 1 − h/100} and the rest 0. */
  static float[][] votes(int prefix, int... counts) {
    float[][] v = new float[counts.length][prefix];
    for (int h = 0; h < counts.length; h++) {
      Arrays.fill(v[h], 0, counts[h], 1f - h / 100f);
    }
    return v;
  }

  static int[] budgets(float[][] votes, int prefix, int base, double alpha) {
    int[] keep = new int[votes.length];
    SnapKvPolicy.adaptiveBudgets(votes, prefix, base, alpha, keep);
    return keep;
  }

  @Test
  void tiesRoundHalfToEvenAsTorchRoundDoes() {
    // alpha 0.5, B = 4: floor 2; counts 5 and 3 give 4.5 and 3.5, both to 4 (Math.round: 5 and 4)
    assertThat(budgets(votes(10, 5, 3), 10, 4, 0.5)).containsExactly(4, 4);
    // counts 7 and 1 give 5.5 and 2.5: 6 and 2 (Math.round: 6 and 3, one over the budget)
    assertThat(budgets(votes(10, 7, 1), 10, 4, 0.5)).containsExactly(6, 2);
  }

  @Test
  void headsThatRoundedUpMostGiveBackWhatPassesTheBudget() {
    // alpha 0.3, B = 10: floor 3; counts 8, 8, 8, 16 give 8.6, 8.6, 8.6, 14.2, rounded 9, 9, 9, 14
    // = 41 > 40: the first of the heads that rounded up by 0.4 gives one back
    assertThat(budgets(votes(20, 8, 8, 8, 16), 20, 10, 0.3)).containsExactly(8, 9, 9, 14);
  }

  @Test
  void alphaOneIsUniform() {
    assertThat(budgets(votes(30, 20, 0, 3), 30, 7, 1.0)).containsExactly(7, 7, 7);
  }

  @Test
  void aLayerNeverKeepsMoreThanItsBudgetAndRoundingIsTheReferencesOtherwise() {
    SplittableRandom r = new SplittableRandom(42);
    double[] alphas = {0, 0.05, 0.2, 0.3, 0.5, 0.7, 1};
    int roundedUpPastBudget = 0;
    for (int trial = 0; trial < 5000; trial++) {
      int g = 1 + r.nextInt(8);
      int prefix = 1 + r.nextInt(120);
      int base = r.nextInt(prefix + 1);
      double alpha = r.nextInt(4) == 0 ? r.nextDouble() : alphas[r.nextInt(alphas.length)];
      int levels = r.nextBoolean() ? 0 : 1 + r.nextInt(4); // few levels: many equal votes
      float[][] v = new float[g][prefix];
      for (int h = 0; h < g; h++) {
        float spread = (float) Math.pow(10, -3 * r.nextDouble()); // concentrated or diffuse heads
        for (int j = 0; j < prefix; j++) {
          v[h][j] = levels == 0 ? r.nextFloat() * spread : r.nextInt(levels) * spread;
        }
      }
      int[] keep = budgets(v, prefix, base, alpha);
      long sum = 0;
      for (int k : keep) {
        assertThat(k).isBetween(0, prefix);
        sum += k;
      }
      assertThat(sum).as("trial %d", trial).isLessThanOrEqualTo((long) g * base);
      // below by less than the floor's truncation (< 1 per head) plus rounding down (<= 1/2)
      assertThat((double) sum).as("trial %d", trial).isGreaterThanOrEqualTo(g * base - 1.5 * g);
      if (levels == 0) {
        // distinct votes: the counts of the global top-(G·B) are known, so is the reference's
        // rounding, which is kept exactly unless it passed the budget
        float[] all = new float[g * prefix];
        for (int h = 0; h < g; h++) {
          System.arraycopy(v[h], 0, all, h * prefix, prefix);
        }
        float[] sorted = all.clone();
        Arrays.sort(sorted);
        float cut = g * base == 0 ? Float.POSITIVE_INFINITY : sorted[sorted.length - g * base];
        int floor = (int) Math.floor(alpha * base);
        long rounded = 0;
        int counted = 0;
        int[] want = new int[g];
        for (int h = 0; h < g; h++) {
          int c = 0;
          for (int j = 0; j < prefix; j++) {
            c += v[h][j] >= cut ? 1 : 0;
          }
          counted += c;
          want[h] = (int) Math.rint((float) c * (float) (1 - alpha) + (float) floor);
          rounded += want[h];
        }
        if (counted != g * base) {
          continue; // two equal votes at the cut (rare): the top-k's tie-break decides
        }
        if (rounded <= (long) g * base) {
          assertThat(keep).as("trial %d", trial).containsExactly(want);
        } else {
          roundedUpPastBudget++;
          for (int h = 0; h < g; h++) {
            assertThat(keep[h]).isBetween(want[h] - 1, want[h]);
          }
        }
      }
    }
    assertThat(roundedUpPastBudget).isPositive(); // the cap was exercised
  }
}
