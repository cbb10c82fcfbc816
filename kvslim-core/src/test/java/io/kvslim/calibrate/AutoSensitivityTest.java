package io.kvslim.calibrate;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.policy.AutoPlanner;
import io.kvslim.kv.policy.AutoPolicy;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The adaptive controller's calibration section: its measure, its KL divergence, its JSON. */
class AutoSensitivityTest {

  @Test
  void klDivergenceMatchesAHandComputedValue() {
    float[][] p = {{0f, (float) Math.log(3)}}; // softmax (1/4, 3/4)
    float[][] q = {{0f, 0f}}; // (1/2, 1/2)
    double expected = 0.25 * Math.log(0.25 / 0.5) + 0.75 * Math.log(0.75 / 0.5);
    assertThat(AutoSensitivity.kld(p, q))
        .isCloseTo(expected, org.assertj.core.data.Offset.offset(1e-7));
    assertThat(AutoSensitivity.kld(p, p)).isCloseTo(0, org.assertj.core.data.Offset.offset(1e-12));
  }

  @Test
  void measuresEveryHeadAtEverySettingDeterministicallyAndRoundTripsThroughTheProfile()
      throws Exception {
    SharedData.require();
    Path file = SharedData.model("llama-spm-f32.gguf");
    try (Model model = Model.load(file);
        Engine engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      int[] text = new int[96];
      SplittableRandom r = new SplittableRandom(9);
      for (int i = 0; i < text.length; i++) {
        text[i] = 3 + r.nextInt(model.config().vocabSize() - 3);
      }
      AutoSensitivity a = AutoSensitivity.measure(engine, text);
      AutoSensitivity b = AutoSensitivity.measure(engine, text);
      int layers = model.config().layers();
      int kvHeads = model.config().kvHeads();
      assertThat(a.prefill() + a.decode()).isEqualTo(96);
      assertThat(a.evict()).hasDimensions(layers, kvHeads);
      double evictSum = 0;
      double mergedSum = 0;
      double q8 = 0;
      double q4 = 0;
      for (int l = 0; l < layers; l++) {
        for (int g = 0; g < kvHeads; g++) {
          assertThat(a.evict()[l][g])
              .hasSize(AutoPlanner.KEEP.length)
              .containsExactly(b.evict()[l][g]);
          assertThat(a.quant()[l][g])
              .hasSize(AutoPolicy.LEVELS.size())
              .containsExactly(b.quant()[l][g]);
          assertThat(a.merged()[l][g]).containsExactly(b.merged()[l][g]);
          assertThat(a.evict()[l][g][0]).isZero();
          assertThat(a.merged()[l][g][0]).isZero();
          mergedSum += a.merged()[l][g][AutoPlanner.KEEP.length - 1];
          assertThat(a.quant()[l][g][0]).isZero();
          evictSum += a.evict()[l][g][AutoPlanner.KEEP.length - 1];
          q8 += a.quant()[l][g][level("q8_0")];
          q4 += a.quant()[l][g][level("q4_0")];
        }
      }
      assertThat(evictSum).as("dropping 15/16 of a head's prompt changes something").isPositive();
      assertThat(mergedSum)
          .as("merging the 15/16 a head lets go costs less than dropping them")
          .isLessThan(evictSum);
      assertThat(q4).as("q4_0 costs more than q8_0 over all heads").isGreaterThan(q8);

      Path profile = TestProfiles.quick(engine, file);
      a.addTo(profile);
      AutoSensitivity read = AutoSensitivity.of(CalibrationProfile.read(profile));
      assertThat(read.prefill()).isEqualTo(a.prefill());
      for (int l = 0; l < layers; l++) {
        assertThat(read.evict()[l]).isDeepEqualTo(a.evict()[l]);
        assertThat(read.quant()[l]).isDeepEqualTo(a.quant()[l]);
        assertThat(read.merged()[l]).isDeepEqualTo(a.merged()[l]);
      }
      String good = Files.readString(profile);
      Files.writeString(profile, good.replace("\"merged\"", "\"merges\""));
      assertThatThrownBy(() -> AutoSensitivity.of(CalibrationProfile.read(profile)))
          .isInstanceOf(CalibrationProfile.ProfileException.class)
          .hasMessageContaining("no merged eviction curves");
      Files.writeString(profile, good);
      Files.writeString(profile, Files.readString(profile).replace("\"evict\"", "\"evicted\""));
      assertThatThrownBy(() -> AutoSensitivity.of(CalibrationProfile.read(profile)))
          .isInstanceOf(CalibrationProfile.ProfileException.class)
          .hasMessageContaining("bad 'auto.evict'");
    }
  }

  static int level(String name) {
    return AutoPolicy.LEVELS.stream().map(AutoPolicy.Level::name).toList().indexOf(name);
  }
}
