package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.policy.LayerAllocator;
import io.kvslim.kv.policy.LayerAllocator.LayerVotes;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The per-layer allocators (ZigZagKV, SqueezeAttention, XKV): the tests METHODS.md §5 lists for
 * each, the shared apportioning rule, the spec's composition rules, and on a real model that the
 * budgets are really spent layer by layer with the total kept.
 */
class LayerAllocatorsTest {

  static LayerVotes votes(int layer, float[]... heads) {
    return new LayerVotes(layer, heads);
  }

  static long sum(int[] a) {
    return Arrays.stream(a).asLongStream().sum();
  }

  @Test
  void apportionKeepsTheTotalExactlyWithinFloorsAndCaps() {
    SplittableRandom r = new SplittableRandom(3);
    for (int trial = 0; trial < 2000; trial++) {
      int n = 1 + r.nextInt(8);
      double[] w = new double[n];
      int[] floor = new int[n];
      int[] cap = new int[n];
      long capSum = 0;
      for (int i = 0; i < n; i++) {
        w[i] = r.nextInt(4) == 0 ? 0 : r.nextDouble();
        cap[i] = r.nextInt(50);
        floor[i] = r.nextInt(10);
        capSum += cap[i];
      }
      long total = r.nextInt(300);
      int[] got = LayerAllocator.apportion(w, total, floor, cap);
      assertThat(sum(got)).as("trial %d", trial).isEqualTo(Math.min(total, capSum));
      long floorSum = 0;
      for (int i = 0; i < n; i++) {
        floorSum += Math.min(floor[i], cap[i]);
      }
      for (int i = 0; i < n; i++) {
        assertThat(got[i]).isBetween(0, cap[i]);
        if (floorSum <= total) {
          assertThat(got[i]).isGreaterThanOrEqualTo(Math.min(floor[i], cap[i]));
        }
      }
    }
    // equal weights share equally; the rounding goes to the lower indices
    assertThat(
            LayerAllocator.apportion(
                new double[] {1, 1, 1}, 10, new int[3], new int[] {100, 100, 100}))
        .containsExactly(4, 3, 3);
  }

  @Test
  void zigzagLmbaOfAOneHotRowIsOneAndOfAFlatRowIsTauOfIt() {
    assertThat(ZigZagKvMethod.Allocator.lmba(new float[] {0, 0, 1, 0}, 0.9)).isEqualTo(1);
    float[] flat = new float[10];
    Arrays.fill(flat, 0.1f);
    assertThat(ZigZagKvMethod.Allocator.lmba(flat, 0.9)).isEqualTo(9);
    assertThat(ZigZagKvMethod.Allocator.lmba(new float[] {0.5f, 0.3f, 0.2f}, 0.8)).isEqualTo(2);
  }

  @Test
  void zigzagBudgetsFollowUncertaintyKeepTheTotalAndTheFloor() {
    float[] peaked = new float[100];
    peaked[7] = 1;
    float[] flat = new float[100];
    Arrays.fill(flat, 0.01f);
    ZigZagKvMethod.Allocator a = new ZigZagKvMethod.Allocator(0.9, 0.2);
    // layer 0 needs 1 token for 90% of its attention, layer 1 needs 90
    int[] b = a.allocate(new LayerVotes[] {votes(0, peaked), votes(1, flat)}, 80);
    assertThat(sum(b)).isEqualTo(80);
    int floor = (int) Math.floor(0.2 * 40);
    assertThat(b[0]).isGreaterThanOrEqualTo(floor).isLessThan(b[1]);
    // B_l = B_min + (T − L·B_min)·u_l with u = (1/91, 90/91)
    assertThat(b[0]).isEqualTo(floor + (int) Math.round((80 - 2 * floor) / 91.0));
    // equal LMBA: uniform
    int[] u = a.allocate(new LayerVotes[] {votes(0, flat), votes(1, flat), votes(2, flat)}, 90);
    assertThat(u).containsExactly(30, 30, 30);
  }

  @Test
  void squeezeCosineIsOneWhenTheBlockAddsNothing() {
    float[] x = {1, -2, 3, 0.5f};
    assertThat(SqueezeAttentionMethod.Allocator.cosine(x, new float[4], 0, 4)).isEqualTo(1.0);
    float[] opposite = {-2, 4, -6, -1};
    assertThat(SqueezeAttentionMethod.Allocator.cosine(x, opposite, 0, 4))
        .isCloseTo(-1.0, org.assertj.core.api.Assertions.within(1e-12));
  }

  @Test
  void squeezeClustersThreeGroupsAndGivesTheTopOneP() {
    double[] cos = {0.50, 0.98, 0.52, 0.97, 0.75, 0.99, 0.74};
    boolean[] top = SqueezeAttentionMethod.Allocator.highestCluster(cos);
    assertThat(top).containsExactly(false, true, false, true, false, true, false);
    int[] cap = new int[7];
    Arrays.fill(cap, 1000);
    int[] b = SqueezeAttentionMethod.Allocator.budgets(top, 700, cap, 0.3);
    assertThat(sum(b)).isEqualTo(700);
    assertThat(b[1]).isEqualTo(30);
    // the freed (1 − p)·B·|U| = 210 spread over the 4 others
    assertThat(b[0]).isEqualTo(100 + 210 / 4 + 1); // 152.5 each, remainders to the lower indices
    // p = 1: the inner policy's uniform budgets
    assertThat(SqueezeAttentionMethod.Allocator.budgets(top, 700, cap, 1.0)).containsOnly(100);
    // fewer than 3 distinct values: no cluster is singled out
    assertThat(SqueezeAttentionMethod.Allocator.highestCluster(new double[] {0.9, 0.9, 0.5}))
        .containsOnly(false);
  }

  @Test
  void xkvGreedyEqualsBruteForceOnSmallInstances() {
    SplittableRandom r = new SplittableRandom(5);
    for (int trial = 0; trial < 300; trial++) {
      int layers = 2 + r.nextInt(2);
      int prefix = 1 + r.nextInt(5);
      LayerVotes[] v = new LayerVotes[layers];
      double[][] gains = new double[layers][];
      for (int l = 0; l < layers; l++) {
        float[][] heads = new float[1 + r.nextInt(2)][prefix];
        for (float[] h : heads) {
          for (int i = 0; i < prefix; i++) {
            h[i] = (float) r.nextDouble();
          }
        }
        v[l] = votes(l, heads);
        gains[l] = XkvMethod.Allocator.increments(heads);
      }
      long total = r.nextInt(layers * prefix + 1);
      int[] got = new XkvMethod.Allocator(0).allocate(v, total);
      assertThat(sum(got)).isEqualTo(total);
      double best = bestCoverage(gains, new int[layers], 0, total);
      assertThat(coverage(gains, got)).as("trial %d", trial).isGreaterThanOrEqualTo(best - 1e-9);
    }
  }

  static double coverage(double[][] gains, int[] c) {
    double f = 0;
    for (int l = 0; l < c.length; l++) {
      for (int i = 0; i < c[l]; i++) {
        f += gains[l][i];
      }
    }
    return f;
  }

  static double bestCoverage(double[][] gains, int[] c, int l, long left) {
    if (l == c.length) {
      return left == 0 ? coverage(gains, c) : Double.NEGATIVE_INFINITY;
    }
    double best = Double.NEGATIVE_INFINITY;
    for (int k = 0; k <= Math.min(left, gains[l].length); k++) {
      c[l] = k;
      best = Math.max(best, bestCoverage(gains, c, l + 1, left - k));
    }
    c[l] = 0;
    return best;
  }

  @Test
  void specsComposeAnAllocatorWithSnapKvOrAdaKvOnly() {
    assertThat(KvSpec.parse("zigzagkv + adakv:budget=25%").rules().get(0).calls()).hasSize(2);
    assertThat(KvSpec.parse("xkv + snapkv:budget=64 + kivi").rules().get(0).calls()).hasSize(3);
    assertThatThrownBy(() -> KvSpec.parse("zigzagkv + h2o:budget=64"))
        .isInstanceOf(KvSpecException.class)
        .hasMessage(
            "zigzagkv splits a budget over layers for snapkv or adakv, not for 'h2o'"
                + " (e.g. 'zigzagkv + snapkv:budget=25%')");
    assertThatThrownBy(() -> KvSpec.parse("xkv + snapkv:budget=64,chunk=32"))
        .isInstanceOf(KvSpecException.class)
        .hasMessageContaining("does not combine with snapkv:chunk=32");
    assertThatThrownBy(() -> KvSpec.parse("zigzagkv + xkv + snapkv"))
        .isInstanceOf(KvSpecException.class)
        .hasMessageContaining("two budget allocators in one rule ('zigzagkv' and 'xkv')");
  }

  /** Prefill 96 random tokens, then the tokens each layer holds per head (head 0). */
  static int[] heldPerLayer(Engine engine, Model model, String spec, float[] logits) {
    int[] tokens = new int[96];
    SplittableRandom r = new SplittableRandom(17);
    for (int i = 0; i < tokens.length; i++) {
      tokens[i] = 3 + r.nextInt(model.config().vocabSize() - 3);
    }
    try (ManagedKvCache c =
        KvSpecs.caches(KvSpec.parse(spec), new BlockPool(), model.config()).create()) {
      engine.prefill(c, tokens, 0, tokens.length, 0, false, logits);
      int[] held = new int[c.layerCount()];
      for (int l = 0; l < held.length; l++) {
        held[l] = c.paged(l).size(0);
      }
      return held;
    }
  }

  @Test
  void onAModelTheLayersKeepTheTotalAndANeutralAllocatorIsSnapKv() {
    SharedData.require();
    try (Model model = Model.load(SharedData.model("llama-spm-f32.gguf"));
        Engine engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      int vocab = model.config().vocabSize();
      float[] snap = new float[vocab];
      int[] uniform = heldPerLayer(engine, model, "snapkv:budget=40,window=8", snap);
      assertThat(uniform).containsOnly(40);
      for (String alloc : new String[] {"zigzagkv", "squeezeattention", "xkv"}) {
        float[] logits = new float[vocab];
        int[] held = heldPerLayer(engine, model, alloc + " + snapkv:budget=40,window=8", logits);
        assertThat(sum(held)).as(alloc).isEqualTo(40L * held.length);
        for (int h : held) {
          assertThat(h).as(alloc).isBetween(8, 96);
        }
      }
      // neutral settings give SnapKV's budgets and so its cache exactly
      for (String neutral : new String[] {"zigzagkv:mu=1", "squeezeattention:p=1"}) {
        float[] logits = new float[vocab];
        int[] held = heldPerLayer(engine, model, neutral + " + snapkv:budget=40,window=8", logits);
        assertThat(held).as(neutral).containsOnly(40);
      }
    }
  }
}
