package io.kvslim.cli;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.SharedData;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code --kv-tier} on generate: the second run restores the prompt's prefix, same text. */
class KvTierOptionsTest {
  @TempDir Path tmp;

  private record Run(int code, String out, String err) {}

  private static Run generate(String... args) {
    PrintStream out = System.out;
    PrintStream err = System.err;
    ByteArrayOutputStream o = new ByteArrayOutputStream();
    ByteArrayOutputStream e = new ByteArrayOutputStream();
    try {
      System.setOut(new PrintStream(o, true, StandardCharsets.UTF_8));
      System.setErr(new PrintStream(e, true, StandardCharsets.UTF_8));
      CliResult r = CliResult.run(args);
      return new Run(r.exitCode(), o.toString(StandardCharsets.UTF_8), e + r.err());
    } finally {
      System.setOut(out);
      System.setErr(err);
    }
  }

  @Test
  void generateRestoresAStoredPrefixAndWritesTheSameText() throws IOException {
    String model = SharedData.require().resolve("models/llama-spm-f32.gguf").toString();
    String prompt = "Once upon a time there was a little fox who lived in the woods. ".repeat(6);
    String[] args = {
      "generate",
      "-m",
      model,
      "-p",
      prompt,
      "-n",
      "8",
      "--temp",
      "0",
      "-t",
      "1",
      "--kv-tier",
      "disk:" + tmp.resolve("kv")
    };
    Run first = generate(args);
    assertThat(first.code()).as(first.err()).isZero();
    assertThat(first.err()).contains("KV tiers: 0 of ");
    try (Stream<Path> files = Files.list(tmp.resolve("kv"))) {
      assertThat(files.filter(f -> f.toString().endsWith(".kvb")).count()).isPositive();
    }
    Run second = generate(args);
    assertThat(second.code()).isZero();
    assertThat(second.out()).isEqualTo(first.out());
    assertThat(second.err()).containsPattern("KV tiers: [1-9][0-9]* of ");
  }

  @Test
  void aBadTierIsOneSentence() {
    String model = SharedData.require().resolve("models/llama-spm-f32.gguf").toString();
    CliResult r = CliResult.run("generate", "-m", model, "-p", "hi", "--kv-tier", "tape:/x");
    assertThat(r.exitCode()).isEqualTo(1);
    assertThat(r.err().strip())
        .startsWith("kvslim: ")
        .contains("--kv-tier must be disk:DIR or redis://HOST:PORT")
        .doesNotContain("\n");
  }
}
