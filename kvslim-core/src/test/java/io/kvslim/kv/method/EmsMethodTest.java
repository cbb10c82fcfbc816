package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.EntryWeights;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.model.Model;
import io.kvslim.model.ModelConfig;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * EMS (METHODS.md E7): the Global-Local score is the formula, τ_merge above 1 is pure Global-Local
 * eviction (against a selection computed here from the full cache's attention), each center's
 * weight is 1 + the tokens it absorbed, and a merged key is a convex combination of its members.
 */
class EmsMethodTest {
  static final int N = 100;
  static final int BUDGET = 24;
  static final int WINDOW = 8;
  static Model model;
  static Engine engine;
  static int[] tokens;

  @BeforeAll
  static void load() {
    if (!SharedData.present()) {
      return;
    }
    model = Model.load(SharedData.model("llama-spm-f32.gguf"));
    engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()));
    SplittableRandom r = new SplittableRandom(5);
    tokens = new int[N];
    for (int i = 0; i < N; i++) {
      tokens[i] = 3 + r.nextInt(model.config().vocabSize() - 3);
    }
  }

  @AfterAll
  static void close() {
    if (engine != null) {
      engine.close();
      model.close();
    }
  }

  @Test
  void theGlobalLocalScoreIsTheFormulaOnAHandBuiltAttentionMatrix() {
    // three queries over three tokens, causal; the window is the last query, the prefix 0..1
    float[][] a = {{1f, 0f, 0f}, {0.5f, 0.5f, 0f}, {0.2f, 0.3f, 0.5f}};
    float[] sums = {1.7f, 0.8f, 0.5f}; // column sums
    float[] local = {0.2f, 0.3f}; // the window row on the prefix
    float[] gl = EmsMethod.globalLocal(sums, new int[] {0, 1, 2}, 3, local, 2, 0.5);
    // G = (1.7/3, 0.8/2) = (0.5667, 0.4) → Ĝ = (0.5862, 0.4138); L̂ = (0.4, 0.6)
    assertThat((double) gl[0])
        .isCloseTo(0.5 * (1.7 / 3) / (1.7 / 3 + 0.4) + 0.5 * 0.4, within(1e-6));
    assertThat((double) gl[1]).isCloseTo(0.5 * 0.4 / (1.7 / 3 + 0.4) + 0.5 * 0.6, within(1e-6));
    assertThat(gl[1]).as("token 1 wins once the causal bias is removed").isGreaterThan(gl[0]);
    assertThat(a[2][0] + a[2][1] + a[2][2]).isEqualTo(1f);
    // a random causal attention matrix, window of 3, against the formula in double
    SplittableRandom r = new SplittableRandom(2);
    int n = 12;
    int w = 3;
    int prefix = n - w;
    double[][] p = new double[n][n];
    for (int q = 0; q < n; q++) {
      double s = 0;
      for (int k = 0; k <= q; k++) {
        p[q][k] = Math.exp(3 * r.nextDouble());
        s += p[q][k];
      }
      for (int k = 0; k <= q; k++) {
        p[q][k] /= s;
      }
    }
    float[] col = new float[n];
    float[] win = new float[prefix];
    for (int q = 0; q < n; q++) {
      for (int k = 0; k < n; k++) {
        col[k] += (float) p[q][k];
        if (q >= n - w && k < prefix) {
          win[k] += (float) (p[q][k] / w);
        }
      }
    }
    int[] pos = new int[n];
    Arrays.setAll(pos, i -> i);
    double lambda = 0.3;
    float[] got = EmsMethod.globalLocal(col, pos, n, win, prefix, lambda);
    double gs = 0;
    double ls = 0;
    double[] g = new double[prefix];
    double[] l = new double[prefix];
    for (int k = 0; k < prefix; k++) {
      for (int q = k; q < n; q++) {
        g[k] += p[q][k];
      }
      g[k] /= n - k; // the queries that see token k
      for (int q = n - w; q < n; q++) {
        l[k] += p[q][k] / w;
      }
      gs += g[k];
      ls += l[k];
    }
    for (int k = 0; k < prefix; k++) {
      assertThat((double) got[k])
          .as("GL of token %d", k)
          .isCloseTo(lambda * g[k] / gs + (1 - lambda) * l[k] / ls, within(1e-6));
    }
  }

  @Test
  void eachCentersWeightIsOnePlusWhatItAbsorbedAndMergedRowsAreConvexCombinations() {
    SplittableRandom r = new SplittableRandom(9);
    int d = 8;
    int prefix = 30;
    float[] keys = new float[prefix * d];
    float[] values = new float[prefix * d];
    for (int i = 0; i < keys.length; i++) {
      keys[i] = (float) r.nextGaussian();
      values[i] = (float) r.nextGaussian();
    }
    float[] gl = new float[prefix];
    for (int i = 0; i < prefix; i++) {
      gl[i] = (float) r.nextDouble();
    }
    BitSet centers = new BitSet();
    io.kvslim.kv.policy.Selection.highest(gl, 0, prefix, 6, centers);
    for (double tau : new double[] {-1, 0, 0.3, 2}) {
      EmsMethod.Merge m = EmsMethod.assign(keys, d, centers, prefix, tau);
      int[] absorbed = new int[prefix];
      for (int e = 0; e < prefix; e++) {
        if (centers.get(e)) {
          assertThat(m.center()[e]).isEqualTo(-1);
          continue;
        }
        // brute force: the most similar center, if similar enough
        int best = -1;
        double bestCos = Double.NEGATIVE_INFINITY;
        for (int c = centers.nextSetBit(0); c >= 0; c = centers.nextSetBit(c + 1)) {
          double cos = cos(keys, e, c, d);
          if (cos > bestCos) {
            bestCos = cos;
            best = c;
          }
        }
        int want = bestCos >= tau ? best : -1;
        assertThat(m.center()[e]).as("tau %s token %d", tau, e).isEqualTo(want);
        if (want >= 0) {
          absorbed[want]++;
        }
      }
      assertThat(m.absorbed()).isEqualTo(absorbed);
      if (tau == -1) {
        int total = 0;
        for (int c = centers.nextSetBit(0); c >= 0; c = centers.nextSetBit(c + 1)) {
          total += 1 + m.absorbed()[c]; // the center's weight
        }
        assertThat(total).as("every token stands in some entry").isEqualTo(prefix);
      }
      for (int c = centers.nextSetBit(0); c >= 0; c = centers.nextSetBit(c + 1)) {
        float[] mk = new float[d];
        float[] mv = new float[d];
        EmsMethod.mergedRow(keys, values, d, c, m.center(), prefix, gl, mk, mv, 0);
        double sum = gl[c];
        double[] want = new double[d];
        for (int j = 0; j < d; j++) {
          want[j] = gl[c] * keys[c * d + j];
        }
        for (int e = 0; e < prefix; e++) {
          if (m.center()[e] == c) {
            sum += gl[e];
            for (int j = 0; j < d; j++) {
              want[j] += gl[e] * keys[e * d + j];
            }
          }
        }
        for (int j = 0; j < d; j++) {
          // convex: inside the members' per-coordinate range, and the GL-weighted mean
          double lo = keys[c * d + j];
          double hi = lo;
          for (int e = 0; e < prefix; e++) {
            if (m.center()[e] == c) {
              lo = Math.min(lo, keys[e * d + j]);
              hi = Math.max(hi, keys[e * d + j]);
            }
          }
          assertThat((double) mk[j]).isBetween(lo - 1e-6, hi + 1e-6);
          assertThat((double) mk[j]).isCloseTo(want[j] / sum, within(1e-5));
        }
        if (m.absorbed()[c] == 0) {
          assertThat(mk).isEqualTo(Arrays.copyOfRange(keys, c * d, c * d + d));
        }
      }
    }
  }

  static double cos(float[] k, int a, int b, int d) {
    double dot = 0;
    double na = 0;
    double nb = 0;
    for (int j = 0; j < d; j++) {
      dot += (double) k[a * d + j] * k[b * d + j];
      na += (double) k[a * d + j] * k[a * d + j];
      nb += (double) k[b * d + j] * k[b * d + j];
    }
    return dot / Math.sqrt(na * nb);
  }

  /** Records the full cache's prompt attention: column sums and every query. */
  static final class Recorder implements KvPolicy {
    final double[][][] sums;
    final List<float[]>[] queries;
    final List<int[]>[] positions;
    int heads;
    float scale;

    @SuppressWarnings("unchecked")
    Recorder(ModelConfig c) {
      sums = new double[c.layers()][c.kvHeads()][N];
      queries = new List[c.layers()];
      positions = new List[c.layers()];
      for (int l = 0; l < c.layers(); l++) {
        queries[l] = new ArrayList<>();
        positions[l] = new ArrayList<>();
      }
    }

    @Override
    public boolean observes(int layer) {
      return true;
    }

    @Override
    public void observe(
        ManagedKvCache cache, int layer, int qi, int head, int g, float[] probs, int count) {
      for (int i = 0; i < count; i++) {
        sums[layer][g][i] += probs[i];
      }
    }

    @Override
    public boolean wantsQueries(int layer) {
      return true;
    }

    @Override
    public void onQueries(
        ManagedKvCache cache, int layer, int n, int[] pos, int heads, float[] q, float scale) {
      this.heads = heads;
      this.scale = scale;
      int row = heads * cache.paged(layer).headDim();
      for (int i = 0; i < n; i++) {
        queries[layer].add(Arrays.copyOfRange(q, i * row, (i + 1) * row));
        positions[layer].add(new int[] {pos[i]});
      }
    }

    @Override
    public void afterStep(ManagedKvCache cache, KvCache.StepKind kind) {}
  }

  static ManagedKvCache prefilled(String spec) {
    ManagedKvCache c = KvSpecs.caches(KvSpec.parse(spec), new BlockPool(), model.config()).create();
    engine.prefill(c, tokens, 0, N, 0, false, new float[model.config().vocabSize()]);
    return c;
  }

  @Test
  void tauAboveOneIsPureGlobalLocalEvictionAndEveryTokenStandsInAnEntryAtTauMinusOne() {
    SharedData.require();
    ModelConfig cfg = model.config();
    KvCacheFormat[] formats = new KvCacheFormat[cfg.layers()];
    Arrays.fill(formats, KvCacheFormat.of(KvFormats.F32));
    Recorder rec = new Recorder(cfg);
    String base = "ems:budget=" + BUDGET + ",window=" + WINDOW + ",lambda=0.4";
    try (ManagedKvCache full =
            new ManagedKvCache(
                new BlockPool(), cfg.kvHeads(), cfg.headDim(), formats, List.of(rec));
        ManagedKvCache evicting = prefilled(base + ",tau=2");
        ManagedKvCache merging = prefilled(base + ",tau=-1");
        ManagedKvCache some = prefilled(base + ",tau=0.5")) {
      engine.prefill(full, tokens, 0, N, 0, false, new float[cfg.vocabSize()]);
      int group = cfg.heads() / cfg.kvHeads();
      int prefix = N - WINDOW;
      int merges = 0;
      for (int l = 0; l < cfg.layers(); l++) {
        for (int g = 0; g < cfg.kvHeads(); g++) {
          double[] gl = referenceScore(rec, full.paged(l).store().head(g), l, g, group, 0.4);
          int[] kept = evicting.paged(l).positions(g);
          assertThat(kept).hasSize(BUDGET).endsWith(92, 93, 94, 95, 96, 97, 98, 99);
          assertThat(evicting.paged(l).store().head(g).weights().any()).isFalse();
          // the reference's top B − w; a token kept instead must tie with the threshold
          double[] sorted = Arrays.copyOf(gl, prefix);
          Arrays.sort(sorted);
          double threshold = sorted[prefix - (BUDGET - WINDOW)];
          BitSet want = new BitSet();
          for (int i = 0; i < prefix; i++) {
            if (gl[i] > threshold) {
              want.set(i);
            }
          }
          for (int i = 0; i < BUDGET - WINDOW; i++) {
            int p = kept[i];
            assertThat(gl[p] >= threshold - 1e-6 * Math.abs(threshold))
                .as("layer %d head %d keeps token %d", l, g, p)
                .isTrue();
            want.clear(p);
          }
          assertThat(want.isEmpty()).as("layer %d head %d misses %s", l, g, want).isTrue();
          // merging keeps the same centers; at tau = −1 every token stands in one entry
          assertThat(merging.paged(l).positions(g)).isEqualTo(kept);
          assertThat(some.paged(l).positions(g)).isEqualTo(kept);
          EntryWeights w = merging.paged(l).store().head(g).weights();
          double total = 0;
          for (int i = 0; i < BUDGET; i++) {
            float wi = w.weight(i);
            assertThat(wi).isEqualTo((float) Math.rint(wi)).isGreaterThanOrEqualTo(1f);
            total += wi;
            if (i >= BUDGET - WINDOW) {
              assertThat(wi).as("window tokens stay raw").isEqualTo(1f);
            }
          }
          assertThat(total).as("layer %d head %d: 1 + absorbed, summed", l, g).isEqualTo(N);
          merges += some.paged(l).store().head(g).weights().count() > 0 ? 1 : 0;
        }
      }
      assertThat(merges).as("tau=0.5 merges somewhere").isPositive();
    }
  }

  /** GL of the prefix tokens from the recorded attention, in double (METHODS.md E7 step 1). */
  static double[] referenceScore(
      Recorder rec, HeadStore head, int l, int g, int group, double lam) {
    int d = head.headDim();
    float[] keys = new float[N * d];
    head.readKeys(keys);
    int prefix = N - WINDOW;
    double[] gs = new double[prefix];
    double[] ls = new double[prefix];
    double gSum = 0;
    double lSum = 0;
    for (int i = 0; i < prefix; i++) {
      gs[i] = rec.sums[l][g][i] / (N - i);
      gSum += gs[i];
    }
    for (int q = N - WINDOW; q < N; q++) {
      float[] row = rec.queries[l].get(q);
      int p = rec.positions[l].get(q)[0];
      for (int h = g * group; h < (g + 1) * group; h++) {
        double[] z = new double[p + 1];
        double max = Double.NEGATIVE_INFINITY;
        for (int j = 0; j <= p; j++) {
          double dot = 0;
          for (int c = 0; c < d; c++) {
            dot += (double) row[h * d + c] * keys[j * d + c];
          }
          z[j] = dot * rec.scale;
          max = Math.max(max, z[j]);
        }
        double s = 0;
        for (int j = 0; j <= p; j++) {
          s += Math.exp(z[j] - max);
        }
        for (int j = 0; j < prefix; j++) {
          ls[j] += Math.exp(z[j] - max) / s;
        }
      }
    }
    for (int i = 0; i < prefix; i++) {
      lSum += ls[i];
    }
    double[] gl = new double[prefix];
    for (int i = 0; i < prefix; i++) {
      gl[i] = lam * gs[i] / gSum + (1 - lam) * ls[i] / lSum;
    }
    return gl;
  }
}
