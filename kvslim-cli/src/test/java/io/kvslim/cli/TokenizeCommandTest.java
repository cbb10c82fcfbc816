package io.kvslim.cli;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.SharedData;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

class TokenizeCommandTest {
  private final StringWriter out = new StringWriter();
  private final StringWriter err = new StringWriter();

  private int run(String... args) {
    CommandLine cli = new CommandLine(new Main());
    cli.setOut(new PrintWriter(out));
    cli.setErr(new PrintWriter(err));
    return cli.execute(args);
  }

  private static String vocab(String name) {
    return SharedData.require().resolve("tokenizers/ggml-vocab-" + name + ".gguf").toString();
  }

  @Test
  void printsIdsAndPieces() {
    assertThat(run("tokenize", "-m", vocab("llama-spm"), "-p", "Hello\nworld")).isZero();
    assertThat(out.toString().lines())
        .containsExactly("1\t<s>", "15043\t Hello", "13\t\\n", "11526\tworld");
    assertThat(err.toString()).isEmpty();
  }

  @Test
  void printsOnlyIdsWithoutBos() {
    assertThat(run("tokenize", "-m", vocab("gpt-2"), "-p", "Hello world", "--ids", "--no-bos"))
        .isZero();
    assertThat(out.toString()).isEqualTo("15496 995" + System.lineSeparator());
  }

  @Test
  void parsesSpecialTokensOnRequest() {
    String m = vocab("gpt-2");
    assertThat(run("tokenize", "-m", m, "-p", "<|endoftext|>", "--ids", "--parse-special"))
        .isZero();
    assertThat(out.toString().strip()).isEqualTo("50256");
  }

  @Test
  void tokenizesJsonLines(@TempDir Path dir) throws IOException {
    Path file = dir.resolve("texts.jsonl");
    Files.writeString(file, "\"Hello world\"\n\n\"caf\\u00e9\"\n");
    assertThat(run("tokenize", "-m", vocab("gpt-2"), "--jsonl", file.toString())).isZero();
    assertThat(out.toString().lines()).containsExactly("[15496,995]", "[66,1878,2634]");

    Files.writeString(file, "\"ok\"\n42\n");
    assertThat(run("tokenize", "-m", vocab("gpt-2"), "--jsonl", file.toString())).isEqualTo(1);
    assertThat(err.toString()).contains("texts.jsonl:2: expected a JSON string");
  }

  @Test
  void badModelPathIsOneLineOnStderr(@TempDir Path dir) throws IOException {
    assertThat(run("tokenize", "-m", dir.resolve("missing.gguf").toString(), "-p", "x"))
        .isEqualTo(1);
    assertThat(err.toString()).contains("missing.gguf: no such file").doesNotContain("\tat ");
    assertThat(err.toString().lines()).hasSize(1);

    Path junk = Files.writeString(dir.resolve("junk.gguf"), "not a gguf file at all");
    err.getBuffer().setLength(0);
    assertThat(run("tokenize", "-m", junk.toString(), "-p", "x")).isEqualTo(1);
    assertThat(err.toString()).contains("not a GGUF file").doesNotContain("\tat ");
  }

  @Test
  void missingTextFileIsOneLineOnStderr(@TempDir Path dir) {
    assertThat(run("tokenize", "-m", vocab("gpt-2"), "-f", dir.resolve("none.txt").toString()))
        .isEqualTo(1);
    assertThat(err.toString().strip()).endsWith("none.txt: no such file");
  }
}
