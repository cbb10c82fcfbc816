package io.kvslim.example;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.api.GenerateOptions;
import io.kvslim.api.Generation;
import io.kvslim.api.KvConfig;
import io.kvslim.api.KvslimModel;
import io.kvslim.api.KvslimSession;
import io.kvslim.api.StepStats;
import io.kvslim.api.TokenCallback;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The README's library example is {@link ReadmeExample}'s code, line for line, and it runs: what it
 * streams is the generation's text, and its statistics agree with the generation.
 */
class ReadmeExampleTest {
  private static final String BEGIN = "// README example begins";
  private static final String END = "// README example ends";

  @Test
  void theReadmeShowsTheExampleLineForLine() throws IOException {
    List<String> source =
        Files.readAllLines(
            Path.of("kvslim-core/src/test/java/io/kvslim/example/ReadmeExample.java"));
    List<String> example = between(source, BEGIN, END);
    int indent = example.getFirst().indexOf(example.getFirst().strip());
    List<String> expected =
        example.stream().map(l -> l.length() >= indent ? l.substring(indent) : l.strip()).toList();

    String readme = Files.readString(Path.of("README.md"));
    int section = readme.indexOf("## Using kvslim as a library");
    assertThat(section).as("the README's library section").isNotNegative();
    int start = readme.indexOf("```java\n", section) + "```java\n".length();
    int stop = readme.indexOf("```", start);
    List<String> shown = Arrays.asList(readme.substring(start, stop).split("\n", -1));
    shown = shown.subList(0, shown.size() - 1); // the text ends with a newline
    // the README adds the imports the example needs above the code
    int first = shown.indexOf(expected.getFirst());
    assertThat(first).as("the example's first line in the README").isNotNegative();
    assertThat(shown.subList(first, shown.size())).containsExactlyElementsOf(expected);
    for (String line : shown.subList(0, first)) {
      assertThat(line.isEmpty() || source.contains(line + ""))
          .as("README line above the example is one of the example's imports: " + line)
          .isTrue();
    }
  }

  @Test
  void theExampleRunsAndStreamsTheTextItReturns() {
    PrintStream saved = System.out;
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    try {
      System.setOut(new PrintStream(bytes, true, StandardCharsets.UTF_8));
      ReadmeExample.run();
    } finally {
      System.setOut(saved);
    }
    String out = bytes.toString(StandardCharsets.UTF_8);

    // the same generation again, through the API (sampling with a seed is deterministic)
    Generation g;
    try (KvslimModel model = KvslimModel.load(Path.of("models/pycoder-6m-f16.gguf"));
        KvslimSession session = model.newSession(KvConfig.parse("snapkv:budget=64 + q8_0"))) {
      GenerateOptions options =
          GenerateOptions.builder().maxTokens(48).temperature(0.7).seed(7).stop("\n\n").build();
      g = session.generate("def read_config(path):\n", options, TokenCallback.none());
      assertThat(session.kvBytes()).isEqualTo(g.kvBytes());
    }
    assertThat(g.generatedTokens()).isPositive().isLessThanOrEqualTo(48);
    assertThat(g.text()).doesNotContain("\n\n");
    assertThat(g.steps()).hasSize(g.generatedTokens());
    assertThat(g.steps().stream().mapToInt(StepStats::token).toArray()).isEqualTo(g.tokens());
    assertThat(g.kvBytes()).isPositive();
    assertThat(g.kvBytesPeak()).isGreaterThanOrEqualTo(g.kvBytes());
    assertThat(out)
        .startsWith(
            g.text()
                + "\n"
                + g.generatedTokens()
                + " tokens ("
                + g.stopReason()
                + "); KV cache "
                + g.kvBytes()
                + " bytes, peak "
                + g.kvBytesPeak()
                + "; last step ");
  }

  private static List<String> between(List<String> lines, String begin, String end) {
    int b = -1;
    int e = -1;
    for (int i = 0; i < lines.size(); i++) {
      if (lines.get(i).strip().equals(begin)) {
        b = i + 1;
      } else if (lines.get(i).strip().equals(end)) {
        e = i;
      }
    }
    return lines.subList(b, e);
  }
}
