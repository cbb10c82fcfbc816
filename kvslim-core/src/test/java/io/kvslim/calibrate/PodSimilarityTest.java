package io.kvslim.calibrate;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** POD's calibration: the measure, the greedy grouping, and the profile section. */
class PodSimilarityTest {

  @Test
  void jensenShannonIsZeroForEqualAndOneForDisjointDistributions() {
    float[] a = {0.5f, 0.5f, 0f, 0f};
    float[] b = {0f, 0f, 0.25f, 0.75f};
    float[] c = {0.25f, 0.25f, 0.25f, 0.25f};
    assertThat(PodSimilarity.jensenShannonBits(a, a)).isZero();
    assertThat(PodSimilarity.jensenShannonBits(a, b)).isCloseTo(1, within(1e-12));
    // by hand: M = (3/8, 3/8, 1/8, 1/8); ½·2·½·log2(4/3) + ½·(2·¼·log2(2/3) + 2·¼·log2(2))
    double expected =
        0.5 * Math.log(4.0 / 3) / Math.log(2) + 0.5 * (0.5 * Math.log(2.0 / 3) / Math.log(2) + 0.5);
    assertThat(PodSimilarity.jensenShannonBits(a, c)).isCloseTo(expected, within(1e-7));
    assertThat(PodSimilarity.jensenShannonBits(a, c))
        .isCloseTo(PodSimilarity.jensenShannonBits(c, a), within(1e-12));
  }

  @Test
  void theDistantPartIsRenormalized() {
    float[] probs = {0.4f, 0.1f, 0.1f, 0.1f, 0.1f, 0.05f, 0.05f, 0.1f, 0f, 0f};
    // SINKS = 4: positions 4 .. p - window = 7 - 2 = 5
    float[] d = PodSimilarity.distant(probs, 7, 2);
    assertThat(d).hasSize(2);
    assertThat(d[0]).isCloseTo(0.1f / 0.15f, within(1e-6f));
    assertThat(d[1]).isCloseTo(0.05f / 0.15f, within(1e-6f));
  }

  @Test
  void groupsAreConsecutiveGreedyAndAtMostG() {
    double[] sim = {0.5, 0.9, 0.8, 0.95, 0.1};
    // g = 1: every layer alone
    assertThat(PodSimilarity.groups(sim, 1)).containsExactly(0, 1, 2, 3, 4, 5);
    // g = 2: 3-4 (0.95), then 1-2 (0.9); 2-3 (0.8) would make 4 layers; 0-1 (0.5) too; 4-5 too
    assertThat(PodSimilarity.groups(sim, 2)).containsExactly(0, 1, 1, 3, 3, 5);
    // g = 3: 3-4, 1-2, then 2-3 would make 4: no; 0-1 gives {0,1,2}; 4-5 gives {3,4,5}
    assertThat(PodSimilarity.groups(sim, 3)).containsExactly(0, 0, 0, 3, 3, 3);
    // g = layers: one group
    assertThat(PodSimilarity.groups(sim, 6)).containsExactly(0, 0, 0, 0, 0, 0);
    // ties go to the lower boundary
    assertThat(PodSimilarity.groups(new double[] {0.7, 0.7, 0.7}, 2)).containsExactly(0, 0, 2, 2);
    for (int g = 1; g <= 6; g++) {
      int[] f = PodSimilarity.groups(sim, g);
      int[] size = new int[f.length];
      for (int l = 0; l < f.length; l++) {
        assertThat(f[l]).isLessThanOrEqualTo(l);
        assertThat(l == 0 || f[l] == l || f[l] == f[l - 1]).isTrue();
        assertThat(++size[f[l]]).isLessThanOrEqualTo(g);
      }
    }
  }

  @Test
  void calibrationWritesASimilarityPerLayerBoundaryThatReadsBack() throws Exception {
    SharedData.require();
    Path file = SharedData.model("llama-spm-f32.gguf");
    try (Model model = Model.load(file);
        Engine engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      Path p1 = TestProfiles.quick(engine, file);
      Path p2 = TestProfiles.quick(engine, file);
      assertThat(Files.readString(p1)).isEqualTo(Files.readString(p2));
      CalibrationProfile.Pod pod = CalibrationProfile.read(p1).pod();
      assertThat(pod).isNotNull();
      assertThat(pod.windows()).isEqualTo(1);
      assertThat(pod.sinks()).isEqualTo(PodSimilarity.SINKS);
      assertThat(pod.window()).isEqualTo(96 / 4);
      assertThat(pod.similarity()).hasSize(model.config().layers() - 1);
      for (double s : pod.similarity()) {
        assertThat(s).isBetween(0.0, 1.0).isNotZero();
      }
      assertThat(Files.readString(p1)).contains("\"measure\" : \"" + PodSimilarity.MEASURE);
    }
  }
}
