package io.kvslim.kv.policy;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.Rotary;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.method.Budget;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.model.Model;
import io.kvslim.model.ModelConfig;
import io.kvslim.model.Rope;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** Expected Attention (METHODS.md N5): its formula, its RoPE averaging and its selection. */
class ExpectedAttentionPolicyTest {
  static Rope rope(ModelConfig.RopeType type, int headDim, int ropeDims) {
    ModelConfig c =
        new ModelConfig(
            "llama", 64, 1, 2, 1, headDim, 64, 10, 4096, 1e-5f, 10000f, ropeDims, type, 1f, false);
    return new Rope(c, null);
  }

  /** Rotation matrix of one position: {@code rope} applied to each basis vector, in double. */
  static double[][] rotation(Rotary rope, int pos, int d) {
    float[] cos = new float[rope.dims() / 2];
    float[] sin = new float[rope.dims() / 2];
    rope.angles(pos, cos, sin, 0);
    double[][] r = new double[d][d];
    for (int b = 0; b < d; b++) {
      float[] e = new float[d];
      e[b] = 1f;
      rope.rotate(e, 0, 1, d, cos, sin, 0);
      for (int a = 0; a < d; a++) {
        r[a][b] = e[a];
      }
    }
    return r;
  }

  @Test
  void theAverageRotationIsTheMeanOfThePositionsRotationsInEitherPairing() {
    for (ModelConfig.RopeType type : ModelConfig.RopeType.values()) {
      for (int dims : new int[] {16, 8}) { // full and partial rotary dimensions
        Rope rope = rope(type, 16, dims);
        double[] got = ExpectedAttentionPolicy.averageRotation(rope, 37, 50, 16);
        double[][] want = new double[16][16];
        for (int t = 37; t < 87; t++) {
          double[][] r = rotation(rope, t, 16);
          for (int a = 0; a < 16; a++) {
            for (int b = 0; b < 16; b++) {
              want[a][b] += r[a][b] / 50;
            }
          }
        }
        for (int a = 0; a < 16; a++) {
          for (int b = 0; b < 16; b++) {
            assertThat(got[a * 16 + b])
                .as("%s %d (%d,%d)", type, dims, a, b)
                .isCloseTo(want[a][b], within(1e-6));
          }
        }
        // a pair of dimensions rotates together: adjacent (normal) or half apart (NEOX)
        int partner = type == ModelConfig.RopeType.NORMAL ? 1 : dims / 2;
        assertThat(Math.abs(got[partner * 16])).isGreaterThan(1e-3);
        if (dims < 16) {
          assertThat(got[15 * 16 + 15]).isEqualTo(1.0); // beyond the rotary dimensions: identity
        }
      }
    }
  }

  @Test
  void zIsTheLogOfTheExpectedExponentialUnderGaussianQueriesMonteCarlo() {
    int d = 8;
    SplittableRandom r = new SplittableRandom(17);
    double[] mu = new double[d];
    double[][] a = new double[d][d]; // Σ = A·Aᵀ
    for (int i = 0; i < d; i++) {
      mu[i] = r.nextDouble(-1, 1);
      for (int j = 0; j < d; j++) {
        a[i][j] = r.nextDouble(-0.25, 0.25);
      }
    }
    double[] sigma = new double[d * d];
    for (int i = 0; i < d; i++) {
      for (int j = 0; j < d; j++) {
        for (int k = 0; k < d; k++) {
          sigma[i * d + j] += a[i][k] * a[j][k];
        }
      }
    }
    int keys = 5;
    float[] k = new float[keys * d];
    for (int i = 0; i < k.length; i++) {
      k[i] = (float) r.nextDouble(-1.5, 1.5);
    }
    double[] z = ExpectedAttentionPolicy.logits(k, 0, keys, d, mu, sigma);
    int draws = 100_000;
    double[] sum = new double[keys];
    double[] q = new double[d];
    double[] xi = new double[d];
    for (int s = 0; s < draws; s++) {
      for (int j = 0; j < d; j++) {
        xi[j] = gaussian(r);
      }
      for (int i = 0; i < d; i++) {
        q[i] = mu[i];
        for (int j = 0; j < d; j++) {
          q[i] += a[i][j] * xi[j];
        }
      }
      for (int i = 0; i < keys; i++) {
        double dot = 0;
        for (int j = 0; j < d; j++) {
          dot += q[j] * k[i * d + j];
        }
        sum[i] += Math.exp(dot / Math.sqrt(d));
      }
    }
    for (int i = 0; i < keys; i++) {
      assertThat(sum[i] / draws / Math.exp(z[i])).as("key %d", i).isCloseTo(1.0, within(0.01));
    }
    // without the covariance term the estimate is off by exp(kᵀΣk/2d), more than 1% here
    double[] meanOnly = ExpectedAttentionPolicy.logits(k, 0, keys, d, mu, null);
    double worst = 0;
    for (int i = 0; i < keys; i++) {
      worst = Math.max(worst, Math.abs(sum[i] / draws / Math.exp(meanOnly[i]) - 1));
    }
    assertThat(worst).isGreaterThan(0.01);
  }

  static double gaussian(SplittableRandom r) {
    double u = 1 - r.nextDouble();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r.nextDouble());
  }

  @Test
  void withNoCovarianceOneFuturePositionAndTheTrueQueryItIsThatQuerysSoftmaxRow() {
    for (ModelConfig.RopeType type : ModelConfig.RopeType.values()) {
      int d = 16;
      int n = 30;
      Rope rope = rope(type, d, d);
      SplittableRandom r = new SplittableRandom(9);
      float[] keys = new float[n * d]; // post-RoPE keys at positions 0..n-1
      float[] cos = new float[d / 2];
      float[] sin = new float[d / 2];
      for (int i = 0; i < n; i++) {
        for (int j = 0; j < d; j++) {
          keys[i * d + j] = (float) r.nextDouble(-1, 1);
        }
        rope.angles(i, cos, sin, 0);
        rope.rotate(keys, i * d, 1, d, cos, sin, 0);
      }
      float[] q = new float[d]; // the next query, before RoPE
      double[] mu = new double[d];
      for (int j = 0; j < d; j++) {
        q[j] = (float) r.nextDouble(-2, 2);
        mu[j] = q[j];
      }
      double[] rBar = ExpectedAttentionPolicy.averageRotation(rope, n, 1, d);
      double[] z =
          ExpectedAttentionPolicy.logits(
              keys, 4, n, d, ExpectedAttentionPolicy.times(rBar, mu, d), null);
      double[] a = ExpectedAttentionPolicy.softmax(z);
      // the model's attention row of that query at position n, over the non-sink keys
      rope.angles(n, cos, sin, 0);
      rope.rotate(q, 0, 1, d, cos, sin, 0);
      double[] logit = new double[n];
      double max = Double.NEGATIVE_INFINITY;
      for (int i = 0; i < n; i++) {
        for (int j = 0; j < d; j++) {
          logit[i] += q[j] * keys[i * d + j] / Math.sqrt(d);
        }
        max = Math.max(max, logit[i]);
      }
      double total = 0;
      for (int i = 4; i < n; i++) {
        total += Math.exp(logit[i] - max);
      }
      for (int i = 4; i < n; i++) {
        assertThat(a[i - 4])
            .as("%s key %d", type, i)
            .isCloseTo(Math.exp(logit[i] - max) / total, within(1e-6));
      }
    }
  }

  @Test
  void headScoresFollowTheFormulaOnAHandBuiltExample() {
    // d = 2, one sink, two query heads; keys and values written out
    float[] keys = {9, 9, 1, 0, 0, 1, 1, 1};
    float[] values = {5, 5, 3, 4, 0, 2, 1, 0};
    double[][] mu = {{1, 0}, {0, 2}};
    double[][] sigma = {{0.5, 0, 0, 0}, {0, 0, 0, 0}};
    float[] got = ExpectedAttentionPolicy.headScores(keys, values, 4, 2, mu, sigma, 1, true, 0.01);
    // head 0: z = k0/√2 + 0.5·k0²/4 ; head 1: z = 2·k1/√2
    double[] z0 = {1 / Math.sqrt(2) + 0.125, 0, 1 / Math.sqrt(2) + 0.125};
    double[] z1 = {0, 2 / Math.sqrt(2), 2 / Math.sqrt(2)};
    double[] a0 = softmax(z0);
    double[] a1 = softmax(z1);
    double[] norms = {5, 2, 1};
    assertThat(got[0]).isEqualTo(0f); // the sink is set by the layer
    for (int i = 0; i < 3; i++) {
      double want = ((a0[i] + a1[i]) / 2 + 0.01) * norms[i];
      assertThat((double) got[i + 1]).as("key %d", i + 1).isCloseTo(want, within(1e-6));
    }
    float[] plain =
        ExpectedAttentionPolicy.headScores(keys, values, 4, 2, mu, sigma, 1, false, 0.01);
    assertThat((double) plain[2]).isCloseTo((a0[1] + a1[1]) / 2, within(1e-7)); // no ε, no ‖v‖
  }

  static double[] softmax(double[] z) {
    double s = Arrays.stream(z).map(Math::exp).sum();
    return Arrays.stream(z).map(v -> Math.exp(v) / s).toArray();
  }

  @Test
  void adaKvKeepsEachHeadsSafeguardThenTheLayersTopScores() {
    float[][] s = {{9, 1, 2, 3, 4, 5}, {8, 0.1f, 0.2f, 0.3f, 0.4f, 0.5f}};
    BitSet[] kept = ExpectedAttentionPolicy.adaKvKeep(s, new int[] {6, 6}, 3, 0.4);
    // safeguard ⌊3·0.4⌋ = 1 per head (both index 0), then the top 6 of all: 5, 4, 3, 2 of head 0
    assertThat(kept[0].toString()).isEqualTo("{0, 2, 3, 4, 5}");
    assertThat(kept[1].toString()).isEqualTo("{0}");
    float[][] t = {{9, 1, 2, 3, 4, 5}, {8, 0.1f, 0.2f, 0.3f, 0.4f, 0.5f}};
    BitSet[] uniform = ExpectedAttentionPolicy.adaKvKeep(t, new int[] {6, 6}, 3, 1.0);
    assertThat(uniform[0].toString()).isEqualTo("{0, 4, 5}"); // safeguard 1: each head its top 3
    assertThat(uniform[1].toString()).isEqualTo("{0, 4, 5}");
  }

  /** Reads the expected policy's statistics of every layer before it compresses. */
  static final class Probe implements KvPolicy {
    final ExpectedAttentionPolicy policy;
    final List<double[][]> means = new ArrayList<>();

    Probe(ExpectedAttentionPolicy policy) {
      this.policy = policy;
    }

    @Override
    public void afterStep(ManagedKvCache cache, KvCache.StepKind kind) {
      if (kind != KvCache.StepKind.PREFILL || !means.isEmpty()) {
        return;
      }
      for (int l = 0; l < cache.layerCount(); l++) {
        ExpectedAttentionPolicy.QueryStats st = policy.statsOf(l);
        double[][] m = new double[st.heads][];
        for (int h = 0; h < st.heads; h++) {
          m[h] = st.mean(h);
        }
        means.add(m);
      }
    }
  }

  @Test
  void onTheModelItSeesThePreRopeQueriesAndKeepsTheBudgetPerLayerWithSinks() {
    SharedData.require();
    try (Model model = Model.load(SharedData.model("llama-spm-f32.gguf"));
        Engine engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      ModelConfig c = model.config();
      int n = 60;
      int budget = 16;
      SplittableRandom r = new SplittableRandom(4);
      int[] tokens = new int[n];
      for (int i = 0; i < n; i++) {
        tokens[i] = 3 + r.nextInt(c.vocabSize() - 3);
      }
      double[][][] sums = new double[c.layers()][c.heads()][c.headDim()];
      engine
          .forward()
          .setProjectionListener(
              (layer, rows, q, k) -> {
                for (int row = 4; row < rows; row++) { // the prompt is one step here
                  for (int h = 0; h < c.heads(); h++) {
                    for (int j = 0; j < c.headDim(); j++) {
                      sums[layer][h][j] += q[row * c.qDim() + h * c.headDim() + j];
                    }
                  }
                }
              });
      boolean[] all = new boolean[c.layers()];
      Arrays.fill(all, true);
      ExpectedAttentionPolicy policy =
          new ExpectedAttentionPolicy(
              all,
              new ExpectedAttentionPolicy.Settings(
                  Budget.parse(String.valueOf(budget)), 512, 4, true, true, 0.01, 0.2),
              model.rope(),
              1);
      Probe probe = new Probe(policy);
      KvCacheFormat[] formats = new KvCacheFormat[c.layers()];
      Arrays.fill(formats, KvCacheFormat.of(KvFormats.F32));
      float[] logits = new float[c.vocabSize()];
      try (ManagedKvCache cache =
          new ManagedKvCache(
              new BlockPool(), c.kvHeads(), c.headDim(), formats, List.of(probe, policy))) {
        engine.prefill(cache, tokens, 0, n, 0, false, logits);
        engine.forward().setProjectionListener(null);
        for (int l = 0; l < c.layers(); l++) {
          for (int h = 0; h < c.heads(); h++) {
            for (int j = 0; j < c.headDim(); j++) {
              double want = sums[l][h][j] / (n - 4);
              assertThat(probe.means.get(l)[h][j])
                  .as("layer %d head %d dim %d", l, h, j)
                  .isCloseTo(want, within(1e-5 * (1 + Math.abs(want))));
            }
          }
          PagedLayerKv layer = cache.paged(l);
          int held = 0;
          for (int g = 0; g < c.kvHeads(); g++) {
            held += layer.size(g);
            assertThat(layer.size(g)).isGreaterThanOrEqualTo((int) (budget * 0.2));
            int[] pos = layer.positions(g);
            assertThat(Arrays.copyOf(pos, 4)).as("sinks").containsExactly(0, 1, 2, 3);
          }
          assertThat(held).as("layer %d", l).isEqualTo(c.kvHeads() * budget);
        }
      }
    }
  }
}
