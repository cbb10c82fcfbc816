package io.kvslim.cli;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.TinyModel;
import io.kvslim.gguf.GgmlType;
import io.kvslim.gguf.GgufWriter;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Option values at and past their limits, on a tiny model: each is run to completion or refused
 * with one {@code kvslim:} sentence and exit code 1, never a stack trace or a stall.
 */
class CliLimitsTest {
  @TempDir Path dir;
  private String model;

  @BeforeEach
  void writeModel() {
    model = TinyModel.write(dir.resolve("tiny.gguf"), 16).toString();
  }

  private static void assertOneLineError(CliResult r, String... words) {
    assertThat(r.exitCode()).as(r.err()).isEqualTo(1);
    assertThat(r.err()).startsWith("kvslim: ").endsWith("\n");
    assertThat(r.err().strip()).doesNotContain("\n").doesNotContain("Exception");
    for (String w : words) {
      assertThat(r.err()).contains(w);
    }
  }

  /**
   * Runs the CLI with System.out captured too (generate and perplexity print their results there).
   */
  private static CliResult runCapturingStdout(StringBuilder stdout, String... args) {
    PrintStream saved = System.out;
    ByteArrayOutputStream buf = new ByteArrayOutputStream();
    System.setOut(new PrintStream(buf, true, StandardCharsets.UTF_8));
    try {
      return CliResult.run(args);
    } finally {
      System.setOut(saved);
      stdout.append(buf.toString(StandardCharsets.UTF_8));
    }
  }

  @Test
  void generateClampsHugeTokenCountsToTheContext() {
    for (String n : new String[] {"2147483647", "1000000000"}) {
      StringBuilder out = new StringBuilder();
      CliResult r =
          runCapturingStdout(
              out, "generate", "-m", model, "-p", "ab", "-n", n, "--temp", "0", "-t", "1");
      assertThat(r.exitCode()).as(r.err()).isZero();
      assertThat(out).startsWith("ab");
    }
  }

  @Test
  @Timeout(value = 60, unit = TimeUnit.SECONDS)
  void threadCountsAboveFourPerCpuAreRefusedBeforeLoading() {
    int max = 4 * Runtime.getRuntime().availableProcessors();
    String missing = dir.resolve("missing.gguf").toString();
    assertOneLineError(
        CliResult.run("generate", "-m", missing, "-p", "x", "-t", "10000"),
        "--threads 10000 is more than 4 per CPU",
        "at most " + max);
    assertOneLineError(
        CliResult.run("perplexity", "-m", missing, "-f", model, "-t", "" + (max + 1)),
        "--threads " + (max + 1));
    assertOneLineError(
        CliResult.run("generate", "-m", missing, "-p", "x", "-t", "0"), "at least 1");
  }

  @Test
  void perplexityReadsTextAsStrictUtf8() throws Exception {
    Path latin1 = dir.resolve("latin1.txt");
    Files.write(latin1, "caf\u00e9 ab".getBytes(StandardCharsets.ISO_8859_1));
    assertOneLineError(
        CliResult.run("perplexity", "-m", model, "-f", latin1.toString(), "-t", "1"),
        latin1 + ": not valid UTF-8 text");
    Path ids = dir.resolve("ids.bin");
    Files.write(ids, new byte[] {'1', ' ', (byte) 0xff, '2'});
    assertOneLineError(
        CliResult.run("perplexity", "-m", model, "--tokens-in", ids.toString(), "-t", "1"),
        ids + ": not valid UTF-8 text");
  }

  @Test
  void perplexityChecksItsOutputPathsBeforeTheRun() throws Exception {
    Path text = dir.resolve("text.txt");
    Files.writeString(text, "ab ba ab ba ab ab ba");
    Path missingDir = dir.resolve("no-such-dir").resolve("out.json");
    Path aDirectory = Files.createDirectory(dir.resolve("a-dir"));
    StringBuilder out = new StringBuilder();
    CliResult json =
        runCapturingStdout(
            out,
            "perplexity",
            "-m",
            model,
            "-f",
            text.toString(),
            "-c",
            "8",
            "-t",
            "1",
            "--json",
            missingDir.toString());
    assertOneLineError(json, "--json " + missingDir, "does not exist");
    CliResult nll =
        runCapturingStdout(
            out,
            "perplexity",
            "-m",
            model,
            "-f",
            text.toString(),
            "-c",
            "8",
            "-t",
            "1",
            "--nll-out",
            aDirectory.toString());
    assertOneLineError(nll, "--nll-out " + aDirectory + " is a directory");
    assertThat(out).as("nothing was scored").isEmpty();
    assertThat(missingDir.getParent()).doesNotExist();
    // a writable path is left as it was: not created by the check, written by the run
    Path good = dir.resolve("ppl.json");
    CliResult ok =
        runCapturingStdout(
            out,
            "perplexity",
            "-m",
            model,
            "-f",
            text.toString(),
            "-c",
            "8",
            "-t",
            "1",
            "--json",
            good.toString());
    assertThat(ok.exitCode()).as(ok.err()).isZero();
    assertThat(Files.readString(good)).contains("\"ppl\"");
  }

  @Test
  void kvMemoryAcceptsTebibytes() {
    assertThat(ServeCommand.kvMemoryBytes("1TiB")).isEqualTo(1L << 40);
    assertThat(ServeCommand.kvMemoryBytes("2TB")).isEqualTo(2_000_000_000_000L);
    assertThat(ServeCommand.kvMemoryBytes("512MiB")).isEqualTo(512L << 20);
  }

  @Test
  @Timeout(value = 60, unit = TimeUnit.SECONDS)
  void serveRefusesMemoryThatAdmitsNothingAndANegativeGrace() {
    assertOneLineError(
        CliResult.run(
            "serve", "-m", model, "--kv-memory", "1B", "--port", "0", "--warmup-steps", "0"),
        "--kv-memory 1B cannot hold the KV cache of even a one-token request",
        "--kv 'full'");
    assertOneLineError(
        CliResult.run("serve", "-m", model, "--shutdown-grace", "-5", "--port", "0"),
        "--shutdown-grace must be >= 0 seconds, got -5");
  }

  @Test
  void inspectEscapesControlCharactersInNamesAndKeys() {
    GgufWriter w = TinyModel.writer(GgmlType.F32, 16, Map.of());
    w.putString("evil\u001b[2Jkey", "v\u0007");
    w.addTensor("bad\u0000name\u001b]0;x", GgmlType.F32, new long[] {8}, new byte[32]);
    Path p = dir.resolve("evil.gguf");
    w.write(p);
    CliResult r = CliResult.run("inspect", p.toString());
    assertThat(r.exitCode()).as(r.err()).isZero();
    assertThat(r.out())
        .contains("evil\\x1b[2Jkey")
        .contains("bad\\x00name\\x1b]0;x")
        .doesNotContain("\u001b")
        .doesNotContain("\u0000")
        .doesNotContain("\u0007");
  }
}
