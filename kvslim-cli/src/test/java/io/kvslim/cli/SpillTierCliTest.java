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

/**
 * {@code generate --kv-tier disk:DIR} with a {@code spill=true} method: the cold blocks go to a
 * spill file in DIR (deleted at the end), the text is that of the method in RAM, and the spill
 * figures and the pool's peak are printed.
 */
class SpillTierCliTest {
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

  private static String[] args(String model, String spec, String... more) {
    String prompt = "Once upon a time there was a little fox who lived in the woods. ".repeat(12);
    String[] base = {
      "generate", "-m", model, "-p", prompt, "-n", "6", "--temp", "0", "-t", "1", "--kv", spec
    };
    String[] all = new String[base.length + more.length];
    System.arraycopy(base, 0, all, 0, base.length);
    System.arraycopy(more, 0, all, base.length, more.length);
    return all;
  }

  @Test
  void spillIntoADiskTierWritesTheInRamText() throws IOException {
    String model = SharedData.require().resolve("models/llama-spm-f32.gguf").toString();
    String spec = "shadowkv:budget=40,outliers=3";
    Run ram = generate(args(model, spec));
    assertThat(ram.code()).as(ram.err()).isZero();
    Path dir = tmp.resolve("kv");
    Run spilled = generate(args(model, spec + ",spill=true", "--kv-tier", "disk:" + dir));
    assertThat(spilled.code()).as(spilled.err()).isZero();
    assertThat(spilled.out()).isEqualTo(ram.out());
    assertThat(spilled.err())
        .contains("KV RAM peak, inside steps too: ")
        .containsPattern("KV spill \\(disk:[^)]*\\): [1-9][0-9]* blocks");
    try (Stream<Path> files = Files.list(dir)) {
      assertThat(files.filter(f -> f.getFileName().toString().startsWith("kvslim-spill-")))
          .as("the spill file is deleted with the cache")
          .isEmpty();
    }
  }
}
