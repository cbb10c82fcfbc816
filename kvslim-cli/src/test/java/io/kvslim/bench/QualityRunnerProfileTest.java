package io.kvslim.bench;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.SharedData;
import io.kvslim.calibrate.CalibrationProfile;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import io.kvslim.tokenizer.Tokenizer;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The quality suite calibrates once for the specs that need a profile and name none. */
class QualityRunnerProfileTest {
  @TempDir Path dir;

  @Test
  void specsNeedingAProfileGetOneCalibratedOnTheModel() {
    Path file = SharedData.model("llama-spm-f32.gguf");
    try (Model model = Model.load(file);
        Engine engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      Tokenizer tok = Tokenizer.fromGguf(model.file());
      List<String> plain = List.of("snapkv:budget=64", "q8_0");
      assertThat(QualityRunner.profiled(engine, tok, plain, 1, null, dir)).isSameAs(plain);
      List<String> out =
          QualityRunner.profiled(
              engine,
              tok,
              List.of("duo:ratio=0.5", "snapkv:budget=64", "razor + q8_0"),
              1,
              null,
              dir);
      Path profile = dir.resolve("calibration-profile.json");
      assertThat(out)
          .containsExactly(
              "duo:ratio=0.5@profile=" + profile,
              "snapkv:budget=64",
              "razor + q8_0@profile=" + profile);
      CalibrationProfile p = CalibrationProfile.read(profile);
      assertThat(p.model().file()).isEqualTo("llama-spm-f32.gguf");
      assertThat(p.calibration().text()).isEqualTo("kvslim built-in code corpus");
      for (String s : out) {
        KvSpecs.caches(KvSpec.parse(s), new BlockPool(), model.config()).create().close();
      }
    }
  }

  /**
   * {@code bench quality --calib TEXT}: the specs' profile is the one {@code kvslim calibrate -f
   * TEXT} writes (the same pass through {@link ProfileRun}, the same bytes), kept in the folder.
   */
  @Test
  void calibTextGivesTheProfileCalibrateWrites() throws Exception {
    Path file = SharedData.model("llama-spm-f32.gguf");
    Path text = dir.resolve("calib.txt");
    java.nio.file.Files.writeString(text, "for i in range(10):\n    print(i)\n".repeat(30));
    Path expected = dir.resolve("expected.json");
    try (Model model = Model.load(file);
        Engine engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      Tokenizer tok = Tokenizer.fromGguf(model.file());
      ProfileRun.write(
          engine,
          file,
          tok,
          java.nio.file.Files.readString(text),
          "calib.txt",
          io.kvslim.calibrate.ModelIdentity.sha256Of(java.nio.file.Files.readAllBytes(text)),
          ProfileRun.DEFAULTS,
          false,
          expected);
      Path out = dir.resolve("out");
      List<String> specs =
          QualityRunner.profiled(engine, tok, List.of("cq:c=4", "q8_0"), 1, text.toString(), out);
      Path profile = out.resolve("calibration-profile.json");
      assertThat(specs).containsExactly("cq:c=4@profile=" + profile, "q8_0");
      assertThat(java.nio.file.Files.readAllBytes(profile))
          .isEqualTo(java.nio.file.Files.readAllBytes(expected));
      assertThat(CalibrationProfile.read(profile).calibration().text()).isEqualTo("calib.txt");
    }
  }
}
