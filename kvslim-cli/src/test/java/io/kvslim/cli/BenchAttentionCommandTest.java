package io.kvslim.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code kvslim bench attention} on the bundled model: its files, and one sentence per bad input.
 */
class BenchAttentionCommandTest {
  @TempDir Path dir;

  private static void assertOneLineError(CliResult r, String words) {
    assertThat(r.exitCode()).as(r.err()).isEqualTo(1);
    assertThat(r.err()).startsWith("kvslim: ").contains(words);
    assertThat(r.err().strip()).doesNotContain("\n");
  }

  @Test
  void writesTheProfileAndRefusesBadInput() throws Exception {
    Path text = dir.resolve("code.py");
    Files.writeString(
        text,
        Files.readString(
            Path.of("kvslim-core/src/main/java/io/kvslim/calibrate/AttentionProfile.java")));
    Path out = dir.resolve("out");
    PrintStream saved = System.out;
    ByteArrayOutputStream buf = new ByteArrayOutputStream();
    System.setOut(new PrintStream(buf, true, StandardCharsets.UTF_8));
    CliResult ok;
    try {
      ok =
          CliResult.run(
              "bench",
              "attention",
              "-f",
              text.toString(),
              "--tokens",
              "200",
              "--from",
              "100",
              "--out",
              out.toString(),
              "-t",
              "2");
    } finally {
      System.setOut(saved);
    }
    assertThat(ok.exitCode()).as(ok.err()).isZero();
    assertThat(buf.toString(StandardCharsets.UTF_8)).contains("| layer | bos | sink");
    assertThat(out.resolve("attention.json")).exists();
    assertThat(out.resolve("attention.md")).exists();
    assertThat(out.resolve("local.png")).exists();

    Path latin1 = dir.resolve("latin1.txt");
    Files.write(latin1, new byte[] {(byte) 0xe9, 't', (byte) 0xe9});
    assertOneLineError(
        CliResult.run("bench", "attention", "-f", latin1.toString(), "--out", out.toString()),
        "is not UTF-8 text");
    assertOneLineError(
        CliResult.run(
            "bench",
            "attention",
            "-f",
            dir.resolve("none.txt").toString(),
            "--out",
            out.toString()),
        "does not exist");
    assertOneLineError(
        CliResult.run(
            "bench",
            "attention",
            "-f",
            text.toString(),
            "--tokens",
            "5000",
            "--out",
            out.toString()),
        "more than the model's context of 1024");
    assertOneLineError(
        CliResult.run(
            "bench",
            "attention",
            "-f",
            text.toString(),
            "--tokens",
            "50",
            "--from",
            "100",
            "--out",
            out.toString()),
        "--from 100 is not before the end");
  }
}
