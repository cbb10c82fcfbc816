package io.kvslim.calibrate;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.format.KvQuantKeyFormat;
import io.kvslim.kv.format.KvQuantValueFormat;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Forward;
import io.kvslim.model.Model;
import io.kvslim.model.ModelConfig;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * KVQuant's calibration (METHODS.md Q4 step 1): the 1-D k-means and percentiles on known data, and,
 * on the real activations of the shared models, tables whose formats keep every element within the
 * stated bound, written and read back unchanged in a profile.
 */
class KvQuantCalibrationTest {

  @Test
  void kmeansFindsSeparatedClustersAndHonoursWeights() {
    SplittableRandom r = new SplittableRandom(1);
    float[] centers = {-0.8f, -0.2f, 0.3f, 0.9f};
    int n = 4000;
    float[] x = new float[n];
    for (int i = 0; i < n; i++) {
      x[i] = centers[i % 4] + (float) (0.01 * r.nextGaussian());
    }
    float[] c = KvQuantCalibration.kmeans(x, null, n, 4, 50);
    for (int i = 0; i < 4; i++) {
      assertThat((double) c[i]).isCloseTo(centers[i], within(2e-3));
    }
    // two points, one cluster: the weighted mean
    float[] two = {0.1f, 0.5f};
    float[] w = {3f, 1f};
    float[] one = KvQuantCalibration.kmeans(two, w, 2, 1, 50);
    assertThat((double) one[0]).isCloseTo(0.2, within(1e-6));
    // fewer distinct points than centroids: still strictly increasing in [-1, 1]
    float[] few = KvQuantCalibration.kmeans(new float[] {0.5f, 0.5f, 0.5f}, null, 3, 8, 50);
    for (int i = 1; i < few.length; i++) {
      assertThat(few[i]).isGreaterThan(few[i - 1]);
    }
    assertThat(few[0]).isGreaterThanOrEqualTo(-1f);
    assertThat(few[7]).isLessThanOrEqualTo(1f);
  }

  @Test
  void percentilesInterpolateLinearlyAsNumpy() {
    float[] s = {1f, 2f, 3f, 4f};
    assertThat(KvQuantCalibration.percentile(s, 4, 0.25)).isEqualTo(1.75f);
    assertThat(KvQuantCalibration.percentile(s, 4, 0.995)).isCloseTo(3.985f, within(1e-6f));
    assertThat(KvQuantCalibration.percentile(s, 4, 1.0)).isEqualTo(4f);
    assertThat(KvQuantCalibration.percentile(s, 4, 0.0)).isEqualTo(1f);
  }

  /** Pre-RoPE keys and values of every layer for {@code window}, rows × kvHeads × headDim. */
  static float[][][] project(Engine engine, int[] window) {
    ModelConfig c = engine.config();
    int kvDim = c.kvHeads() * c.headDim();
    float[][] keys = new float[c.layers()][window.length * kvDim];
    float[][] values = new float[c.layers()][window.length * kvDim];
    int[] filled = new int[c.layers()];
    engine
        .forward()
        .setProjectionListener(
            new Forward.ProjectionListener() {
              @Override
              public void onProjections(int layer, int rows, float[] q, float[] k) {
                System.arraycopy(k, 0, keys[layer], filled[layer] * kvDim, rows * kvDim);
              }

              @Override
              public void onValues(int layer, int rows, float[] v) {
                System.arraycopy(v, 0, values[layer], filled[layer] * kvDim, rows * kvDim);
                filled[layer] += rows;
              }
            });
    try (KvCache cache = engine.newCache()) {
      engine.prefill(cache, window, 0, window.length, 0, false, new float[c.vocabSize()]);
    } finally {
      engine.forward().setProjectionListener(null);
    }
    return new float[][][] {keys, values};
  }

  @ParameterizedTest
  @ValueSource(strings = {"llama-spm-f32.gguf", "pycoder-6m-f16.gguf"})
  void realActivationsStayWithinTheBoundAndTheTablesRoundTrip(String name, @TempDir Path dir)
      throws Exception {
    Assumptions.assumeTrue(SharedData.present(), "shared data missing");
    try (Model model = Model.load(SharedData.model(name));
        Engine engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      ModelConfig c = model.config();
      SplittableRandom r = new SplittableRandom(3);
      List<int[]> windows = new ArrayList<>();
      for (int w = 0; w < 3; w++) {
        int[] t = new int[96];
        for (int i = 0; i < t.length; i++) {
          t[i] = 3 + r.nextInt(Math.min(c.vocabSize(), 4000) - 3);
        }
        windows.add(t);
      }
      KvQuantTables tables = KvQuantCalibration.run(engine, windows.subList(0, 2), 0.01);
      assertThat(tables.tokens()).isEqualTo(2 * 96 - 2);
      float[][][] held = project(engine, windows.get(2));
      int d = c.headDim();
      int kvDim = c.kvHeads() * d;
      int n = windows.get(2).length;
      long outside = 0;
      long total = 0;
      for (int bits = 2; bits <= 4; bits++) {
        for (int l = 0; l < c.layers(); l++) {
          KvQuantKeyFormat layerKeys =
              new KvQuantKeyFormat(
                  bits,
                  tables.codebook("act2", false, bits, l),
                  tables.keyOffset()[l],
                  tables.keyRange()[l],
                  KvQuantCalibration.keyOutliers(d, 0.01));
          KvQuantValueFormat vf =
              new KvQuantValueFormat(
                  bits,
                  tables.codebook("uniform", true, bits, l),
                  KvQuantCalibration.valueOutliersPerSide(d, 0.01));
          for (int g = 0; g < c.kvHeads(); g++) {
            KvQuantKeyFormat kf = (KvQuantKeyFormat) layerKeys.forHead(g);
            MemorySegment kb = MemorySegment.ofArray(new byte[kf.rowBytes(d)]);
            MemorySegment vb = MemorySegment.ofArray(new byte[vf.rowBytes(d)]);
            float[] y = new float[d];
            for (int t = 0; t < n; t++) {
              int off = t * kvDim + g * d;
              kf.encode(held[0][l], off, kvDim, 1, kb, 0, 1, d);
              kf.decode(kb, 0, 1, d, y, 0);
              for (int j = 0; j < d; j++) {
                float x = held[0][l][off + j];
                float u = Math.abs((x - kf.offset(j)) / kf.range(j));
                float err = Math.abs(x - y[j]);
                float bound =
                    kf.range(j) * (kf.inlierError() + Math.max(0f, u - 1f))
                        + 1e-5f * (Math.abs(kf.offset(j)) + kf.range(j));
                assertThat(err <= bound || err <= Math.abs(x) * 0x1p-11f)
                    .as("%s layer %d head %d token %d channel %d", name, l, g, t, j)
                    .isTrue();
                outside += u > 1 ? 1 : 0;
                total++;
              }
              vf.encode(held[1][l], off, kvDim, 1, vb, 0, 1, d);
              vf.decode(vb, 0, 1, d, y, 0);
              float range = vf.range(vb, 0, d);
              for (int j = 0; j < d; j++) {
                float x = held[1][l][off + j];
                float err = Math.abs(x - y[j]);
                assertThat(
                        err <= range * vf.inlierError() * (1 + 1e-5f) + 1e-6f * range
                            || err <= Math.abs(x) * 0x1p-11f)
                    .isTrue();
              }
            }
          }
        }
      }
      // the thresholds sit at the 0.5% and 99.5% percentiles: few held-out keys fall outside
      assertThat((double) outside / total).isLessThan(0.1);
      // written into a profile and read back: the same tables
      CalibrationProfile p = profile(c, tables);
      Path file = dir.resolve("p.json");
      p.write(file);
      KvQuantTables back = CalibrationProfile.read(file).kvQuant();
      assertThat(back.keyOffset()).isDeepEqualTo(tables.keyOffset());
      assertThat(back.keyRange()).isDeepEqualTo(tables.keyRange());
      assertThat(back.centroids()).isDeepEqualTo(tables.centroids());
      assertThat(back.tokens()).isEqualTo(tables.tokens());
      assertThat(Files.readString(file)).contains("\"kvquant\"");
      // the method's declared tables are the formats' tables: per layer both codebooks and every
      // KV head's offsets and ranges, as f32
      for (int bits = 2; bits <= 4; bits++) {
        var call = KvSpec.parse("kvquant:bits=" + bits + "@profile=" + file).callsFor(0).get(0);
        long want = 4L * (2 * (1 << bits) + 2L * c.kvHeads() * d);
        assertThat(call.method().tableBytes(call, c.kvHeads(), d)).isEqualTo(want);
        for (int l = 0; l < c.layers(); l++) {
          assertThat(call.method().format(call, l, c.layers()).tableBytes()).isEqualTo(want);
        }
      }
    }
  }

  /** A profile of a model of this shape holding {@code tables} (the other sections neutral). */
  static CalibrationProfile profile(ModelConfig c, KvQuantTables tables) {
    double[][] perHead = new double[c.layers()][c.heads()];
    double[][] perKvHead = new double[c.layers()][c.kvHeads()];
    var mass = new AttentionProfile.Head[c.layers()][c.heads()];
    for (AttentionProfile.Head[] row : mass) {
      java.util.Arrays.fill(row, new AttentionProfile.Head(0.1, 0.2, 0.3, 0.4, 0.5, 6));
    }
    return new CalibrationProfile(
        new CalibrationProfile.ModelInfo(
            "m.gguf", "0".repeat(64), c.layers(), c.heads(), c.kvHeads(), c.headDim()),
        new CalibrationProfile.Settings("t", "0", 100, 1, 0, 16, 1, 500),
        perHead,
        perHead,
        perKvHead,
        perKvHead,
        perKvHead,
        new CalibrationProfile.AttentionMass(100, 50, 50, 4, 16, 64, mass),
        null,
        null,
        null,
        tables,
        null,
        null);
  }
}
