package io.kvslim.cli;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.SharedData;
import io.kvslim.calibrate.CalibrationProfile;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code kvslim calibrate}: a deterministic profile file; bad input is one line. */
class CalibrateCommandTest {
  @TempDir Path dir;

  /** Runs calibrate with small settings; {@code more} pairs replace or add options. */
  CliResult calibrate(Path text, Path out, String... more) {
    java.util.Map<String, String> options = new java.util.LinkedHashMap<>();
    options.put("-m", SharedData.model("llama-spm-f32.gguf").toString());
    options.put("-f", text.toString());
    options.put("--tokens", "300");
    options.put("--sequences", "1");
    options.put("--sequence-length", "20");
    options.put("-t", "2");
    options.put("--out", out.toString());
    for (int i = 0; i < more.length; i += 2) {
      options.put(more[i], more[i + 1]);
    }
    java.util.List<String> args = new java.util.ArrayList<>(java.util.List.of("calibrate"));
    options.forEach(
        (k, v) -> {
          args.add(k);
          args.add(v);
        });
    return CliResult.run(args.toArray(String[]::new));
  }

  @Test
  void twoRunsWriteTheSameBytes() throws Exception {
    SharedData.require();
    Path text = dir.resolve("calib.txt");
    Files.writeString(text, "The quick brown fox jumps over the lazy dog. ".repeat(40));
    Path a = dir.resolve("a.json");
    Path b = dir.resolve("b.json");
    assertThat(calibrate(text, a).exitCode()).isZero();
    assertThat(calibrate(text, b).exitCode()).isZero();
    assertThat(Files.readAllBytes(b)).isEqualTo(Files.readAllBytes(a));
    CalibrationProfile p = CalibrationProfile.read(a);
    assertThat(p.model().file()).isEqualTo("llama-spm-f32.gguf");
    assertThat(p.calibration().text()).isEqualTo("calib.txt");
    assertThat(p.calibration().razorSequenceLength()).isEqualTo(20);
    Path c = dir.resolve("c.json");
    assertThat(calibrate(text, c, "--seed", "9").exitCode()).isZero();
    assertThat(Files.readString(c)).isNotEqualTo(Files.readString(a));
  }

  /**
   * {@code --calib TEXT} is {@code kvslim calibrate -f TEXT} made on the fly: the same pass and
   * settings, so the same profile bytes; {@code generate} and {@code bench speed} run a spec that
   * needs a profile with it, and without it or {@code @profile=} the error names both.
   */
  @Test
  void calibOnTheFlyIsTheProfileCalibrateWrites() throws Exception {
    SharedData.require();
    Path text = dir.resolve("calib.txt");
    Files.writeString(text, "def add(a, b):\n    return a + b\n\n".repeat(30));
    Path model = SharedData.model("llama-spm-f32.gguf");
    Path a = dir.resolve("a.json");
    CliResult made =
        CliResult.run(
            "calibrate",
            "-m",
            model.toString(),
            "-f",
            text.toString(),
            "-t",
            "2",
            "--out",
            a.toString());
    assertThat(made.exitCode()).as(made.err()).isZero();
    Path onTheFly;
    try (io.kvslim.model.Model m = io.kvslim.model.Model.load(model)) {
      onTheFly = io.kvslim.bench.ProfileRun.onTheFly(m, model, 2, text);
    }
    assertThat(Files.readAllBytes(onTheFly)).isEqualTo(Files.readAllBytes(a));
    assertThat(CalibrationProfile.read(onTheFly).cq()).isNotNull();

    CliResult without =
        CliResult.run(
            "generate",
            "-m",
            model.toString(),
            "-p",
            "def f(x):",
            "-n",
            "2",
            "--temp",
            "0",
            "-t",
            "2",
            "--kv",
            "cq:c=4");
    assertThat(without.exitCode()).isEqualTo(1);
    assertThat(without.err().strip())
        .contains("cq needs a calibration profile")
        .contains("@profile=profile.json")
        .contains("--calib TEXT")
        .doesNotContain("\n");
    CliResult gen =
        CliResult.run(
            "generate",
            "-m",
            model.toString(),
            "-p",
            "def f(x):",
            "-n",
            "2",
            "--temp",
            "0",
            "-t",
            "2",
            "--kv",
            "cq:c=4",
            "--calib",
            text.toString());
    assertThat(gen.exitCode()).as(gen.err()).isZero();
    CliResult speed =
        CliResult.run(
            "bench",
            "speed",
            "-m",
            model.toString(),
            "-t",
            "2",
            "--prompt",
            "16",
            "--gen",
            "2",
            "--repeat",
            "1",
            "--kv",
            "lexico:s=8",
            "--calib",
            text.toString(),
            "--json",
            dir.resolve("speed.json").toString());
    assertThat(speed.exitCode()).as(speed.err()).isZero();
    // the spec ran with the profile made on the fly
    assertThat(Files.readString(dir.resolve("speed.json"))).contains("lexico:s=8@profile=");
    CliResult missing =
        CliResult.run(
            "generate",
            "-m",
            model.toString(),
            "-p",
            "x",
            "-n",
            "1",
            "--kv",
            "cq:c=4",
            "--calib",
            dir.resolve("none.txt").toString());
    assertThat(missing.exitCode()).isEqualTo(1);
    assertThat(missing.err().strip())
        .isEqualTo(
            "kvslim: --calib text " + dir.resolve("none.txt") + " does not exist or is not a file");
  }

  @Test
  void badInputIsOneLine() throws Exception {
    SharedData.require();
    Path text = dir.resolve("t.txt");
    Files.writeString(text, "x = 1\n");
    CliResult missing = calibrate(dir.resolve("none.txt"), dir.resolve("o.json"));
    assertThat(missing.exitCode()).isEqualTo(1);
    assertThat(missing.err()).startsWith("kvslim: text file").contains("does not exist");
    CliResult tooLong = calibrate(text, dir.resolve("o.json"), "--sequence-length", "5000");
    assertThat(tooLong.exitCode()).isEqualTo(1);
    assertThat(tooLong.err().strip())
        .contains("does not fit the model's context")
        .doesNotContain("\n");
    CliResult tokens = calibrate(text, dir.resolve("o.json"), "--tokens", "1");
    assertThat(tokens.err().strip()).isEqualTo("kvslim: --tokens must be at least 2, got 1");
  }
}
