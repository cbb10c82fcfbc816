package io.kvslim.bench;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/** Progress through the progressbar library: plain log lines off a terminal, a bar on one. */
class ProgressTest {
  private static final Pattern LINE =
      Pattern.compile("progress +(\\d+)% \\(elapsed \\d+s, ETA (\\?|\\d+s)\\) .*");

  private static String run(boolean terminal) {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    try (PrintStream out = new PrintStream(bytes, true, StandardCharsets.UTF_8)) {
      Progress p = new Progress(out, terminal, 100);
      for (int i = 0; i < 4; i++) {
        p.advance(20, "step " + i);
      }
      p.finish();
    }
    return bytes.toString(StandardCharsets.UTF_8);
  }

  @Test
  void offATerminalEachLineIsAPlainLogLineAndTheLastOneIsComplete() {
    String log = run(false);
    assertThat(log).doesNotContain("\r").doesNotContain("\u001b").endsWith("\n");
    List<Integer> percents = new ArrayList<>();
    for (String line : log.strip().split("\n")) {
      Matcher m = LINE.matcher(line);
      assertThat(m.matches()).as(line).isTrue();
      percents.add(Integer.parseInt(m.group(1)));
    }
    assertThat(percents).isSorted().doesNotHaveDuplicates().endsWith(100);
    assertThat(log.strip()).endsWith("done");
  }

  @Test
  void onATerminalTheBarIsRedrawnInPlace() {
    String out = run(true);
    assertThat(out).contains("\r").contains("kvslim").contains("100%").contains("done");
  }

  @Test
  void durationsReadLikeAClock() {
    assertThat(Progress.duration(59.4)).isEqualTo("59s");
    assertThat(Progress.duration(65)).isEqualTo("1m05s");
    assertThat(Progress.duration(3 * 3600 + 7 * 60 + 5)).isEqualTo("3h07m");
  }
}
