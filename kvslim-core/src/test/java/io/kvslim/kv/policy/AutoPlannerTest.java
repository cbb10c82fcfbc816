package io.kvslim.kv.policy;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

/** The adaptive controller's greedy planner against hand-worked cases. */
class AutoPlannerTest {
  static final long[] BYTES = {512, 256, 136, 88, 72}; // f32, f16, q8_0, q5_0, q4_0 at head_dim 64

  static AutoPlanner.Head head(double evictScale, double quantScale) {
    double[] e = new double[AutoPlanner.KEEP.length];
    for (int k = 1; k < e.length; k++) {
      e[k] = evictScale * k;
    }
    double[] q = new double[BYTES.length];
    for (int b = 1; b < q.length; b++) {
      q[b] = quantScale * b;
    }
    return new AutoPlanner.Head(e, q);
  }

  @Test
  void aBudgetThatHoldsEverythingChangesNothing() {
    AutoPlanner.Head[] heads = {head(1, 1), head(1, 1)};
    int[] tokens = {100, 100};
    int[] level = {0, 0};
    long all = 200 * BYTES[0] + 50;
    assertThat(AutoPlanner.plan(heads, tokens, new int[] {8, 8}, level, BYTES, 100, all, 50))
        .isTrue();
    assertThat(tokens).containsExactly(100, 100);
    assertThat(level).containsExactly(0, 0);
  }

  @Test
  void theLeastSensitivePerByteGoesFirstAndTheBudgetHolds() {
    // head 0 barely minds quantization, head 1 barely minds eviction
    AutoPlanner.Head[] heads = {head(1, 1e-6), head(1e-6, 1)};
    int[] tokens = {256, 256};
    int[] level = {0, 0};
    long budget = 256 * BYTES[4] + 64 * BYTES[0];
    assertThat(AutoPlanner.plan(heads, tokens, new int[] {32, 32}, level, BYTES, 256, budget, 0))
        .isTrue();
    assertThat(tokens[0]).isEqualTo(256); // head 0 keeps its tokens, in a lower format
    assertThat(level[0]).isPositive();
    assertThat(level[1]).isZero(); // head 1 keeps F32 and loses tokens
    assertThat(tokens[1]).isLessThan(256).isGreaterThanOrEqualTo(32);
    long held = tokens[0] * BYTES[level[0]] + tokens[1] * BYTES[level[1]];
    assertThat(held).isLessThanOrEqualTo(budget);
  }

  @Test
  void sameInputsSamePlanAndTiesGoToTheEarlierHead() {
    AutoPlanner.Head[] heads = {head(1, 0.1), head(1, 0.1), head(1, 0.1)};
    int[][] runs = new int[2][];
    for (int r = 0; r < 2; r++) {
      int[] tokens = {128, 128, 128};
      int[] level = {0, 0, 0};
      AutoPlanner.plan(
          heads, tokens, new int[] {16, 16, 16}, level, BYTES, 128, 3 * 128 * BYTES[1] + 1, 0);
      runs[r] = new int[] {tokens[0], tokens[1], tokens[2], level[0], level[1], level[2]};
    }
    assertThat(runs[1]).containsExactly(runs[0]);
    // one level down each halves the bytes; equal heads: all three step to f16, in order
    assertThat(runs[0]).containsExactly(128, 128, 128, 1, 1, 1);
  }

  @Test
  void aFormatStepSkipsALevelThatCostsMoreThanTheOneBelowIt() {
    // f16 hurts this head, q8_0 does not (a non-monotone measurement, as KIVI-value levels give):
    // one f16's worth of savings is best taken by going straight to q8_0
    double[] q = {0, 1, 1e-6, 1, 1};
    AutoPlanner.Head[] heads = {new AutoPlanner.Head(new double[AutoPlanner.KEEP.length], q)};
    int[] tokens = {100};
    int[] level = {0};
    assertThat(
            AutoPlanner.plan(heads, tokens, new int[] {100}, level, BYTES, 100, 100 * BYTES[1], 0))
        .isTrue();
    assertThat(level).containsExactly(2);
    assertThat(tokens).containsExactly(100);
  }

  @Test
  void anImpossibleBudgetLeavesEveryHeadAtItsFloorAndLowestLevel() {
    AutoPlanner.Head[] heads = {head(1, 1), head(2, 2)};
    int[] tokens = {300, 40};
    int[] level = {0, 2};
    assertThat(AutoPlanner.plan(heads, tokens, new int[] {32, 32}, level, BYTES, 300, 100, 0))
        .isFalse();
    assertThat(tokens).containsExactly(32, 32);
    assertThat(level).containsExactly(4, 4);
  }

  @Test
  void evictionCostIsInterpolatedAndNeverFallsWithFewerTokens() {
    double[] e = {0, 0.4, 0.2, 0.8, 1.6}; // 0.25's dip below 0.5 is noise
    AutoPlanner.Head h = new AutoPlanner.Head(e, new double[BYTES.length]);
    assertThat(AutoPlanner.evict(h, 100, 100)).isZero();
    assertThat(AutoPlanner.evict(h, 75, 100)).isCloseTo(0.2, within());
    assertThat(AutoPlanner.evict(h, 25, 100)).isCloseTo(0.4, within());
    assertThat(AutoPlanner.evict(h, 125, 1000)).isCloseTo(0.8, within());
    // below the smallest ratio: along the last segment (slope 0.8 per 0.0625)
    assertThat(AutoPlanner.evict(h, 0, 1000)).isCloseTo(2.4, within());
  }

  static org.assertj.core.data.Offset<Double> within() {
    return org.assertj.core.data.Offset.offset(1e-9);
  }
}
