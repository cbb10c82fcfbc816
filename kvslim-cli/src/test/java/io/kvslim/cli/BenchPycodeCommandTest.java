package io.kvslim.cli;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code bench quality --task pycode} end to end on the bundled model: with the system's Python
 * standard library it writes a record per variant and spec and the report's per-setting tables;
 * without it, the command stops with one error sentence.
 */
class BenchPycodeCommandTest {
  @TempDir Path tmp;

  private static boolean stdlibPresent() throws IOException {
    Path root = Path.of("/usr/lib");
    if (!Files.isDirectory(root)) {
      return false;
    }
    try (Stream<Path> s = Files.list(root)) {
      return s.anyMatch(
          p ->
              p.getFileName().toString().matches("python3\\.\\d+")
                  && Files.isRegularFile(p.resolve("os.py")));
    }
  }

  @Test
  void pycodeTasksRunForEverySpecOrSayWhatIsMissing() throws IOException {
    Path out = tmp.resolve("out");
    CliResult r =
        CliResult.run(
            "bench",
            "quality",
            "-m",
            "models/pycoder-6m-f16.gguf",
            "-t",
            "1",
            "--task",
            "pycode",
            "--kv",
            "q8_0",
            "--lengths",
            "200",
            "--depths",
            "0.5",
            "--out",
            out.toString());
    if (!stdlibPresent()) {
      System.err.println("SKIPPED (checked the error instead): no /usr/lib/python3.N/os.py");
      assertThat(r.exitCode()).isNotZero();
      assertThat(r.err().strip())
          .startsWith("kvslim: the pycode tasks read the Python standard library's sources from")
          .doesNotContain("\n");
      return;
    }
    assertThat(r.exitCode()).as(r.err()).isZero();
    JsonNode recs =
        new ObjectMapper().readTree(out.resolve("results.json").toFile()).get("records");
    List<String> seen = new ArrayList<>();
    for (JsonNode rec : recs) {
      assertThat(rec.get("task").asText()).isEqualTo("pycode");
      seen.add(rec.get("spec").asText() + " " + rec.get("variant").asText());
      assertThat(rec.get("n").asInt()).isEqualTo(1);
      assertThat(rec.get("prompt_tokens").asInt()).isBetween(180, 200);
      assertThat(rec.get("answer").asText()).matches("[1-9][0-9]{4}");
      assertThat(rec.get("haystack").asText()).startsWith("/usr/lib/python3.");
      assertThat(rec.get("source").asText()).matches("[A-Za-z0-9_]+\\.py:\\d+-\\d+");
      if (rec.get("spec").asText().equals("full")) {
        assertThat(rec.get("match_full").asDouble()).isEqualTo(1.0);
      }
    }
    assertThat(seen)
        .containsExactlyInAnyOrder(
            "full assign", "q8_0 assign", "full vt", "q8_0 vt", "full arg", "q8_0 arg");
    String md = Files.readString(out.resolve("report.md"));
    assertThat(md)
        .contains("read at run time from /usr/lib/python3.")
        .contains("## Code retrieval: pycode:vt — pycoder-6m-f16.gguf")
        .contains("| spec | L=200 d=0.5 | all |")
        .contains("## Retrieval: pycode:arg");
    assertThat(md.indexOf("| full | ", md.indexOf("## Code retrieval: pycode:assign")))
        .isLessThan(md.indexOf("| q8_0 | ", md.indexOf("## Code retrieval: pycode:assign")));
  }
}
