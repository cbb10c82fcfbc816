package io.kvslim.cli;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.kvslim.SharedData;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class InspectCommandTest {
  @TempDir Path dir;

  @Test
  void printsHeaderMetadataTensorsAndTotals() {
    Path model = SharedData.model("llama-spm-q4_0.gguf");
    CliResult r = CliResult.run("inspect", model.toString());
    assertThat(r.exitCode()).isZero();
    assertThat(r.err()).isEmpty();
    assertThat(r.out())
        .contains("GGUF v3, alignment 32")
        .containsPattern("general\\.architecture\\s+STRING\\s+\"llama\"")
        .containsPattern("tokenizer\\.ggml\\.tokens\\s+ARRAY\\[STRING\\]\\s+\\[\"<unk>\", \"<s>\"")
        .contains("(32000 items)")
        .containsPattern("token_embd\\.weight\\s+\\w+\\s+\\[128, 32000\\]")
        .contains("total:");
    // abbreviated: no line carries the whole vocabulary
    assertThat(r.out().lines().mapToInt(String::length).max().orElse(0)).isLessThan(400);
  }

  @Test
  void jsonOutputIsMachineReadable() throws Exception {
    Path model = SharedData.model("llama-spm-q4_0.gguf");
    CliResult r = CliResult.run("inspect", "--json", "--items", "3", model.toString());
    assertThat(r.exitCode()).isZero();
    JsonNode root = new ObjectMapper().readTree(r.out());
    assertThat(root.get("version").asInt()).isEqualTo(3);
    JsonNode tokens = root.get("metadata").get("tokenizer.ggml.tokens");
    assertThat(tokens.get("element_type").asText()).isEqualTo("STRING");
    assertThat(tokens.get("count").asInt()).isEqualTo(32000);
    assertThat(tokens.get("values")).hasSize(3);
    assertThat(tokens.get("truncated").asBoolean()).isTrue();
    assertThat(root.get("metadata").get("llama.block_count").get("value").asInt()).isEqualTo(4);
    JsonNode tensors = root.get("tensors");
    assertThat(tensors.size()).isEqualTo(root.get("totals").get("tensors").asInt());
    long bytes = 0;
    for (JsonNode t : tensors) {
      bytes += t.get("bytes").asLong();
    }
    assertThat(root.get("totals").get("bytes").asLong()).isEqualTo(bytes);
  }

  @Test
  void missingFileIsOneErrorLineAndExitCode1() {
    Path missing = dir.resolve("missing.gguf");
    CliResult r = CliResult.run("inspect", missing.toString());
    assertThat(r.exitCode()).isEqualTo(1);
    assertThat(r.out()).isEmpty();
    assertThat(r.err().strip()).isEqualTo("kvslim: " + missing + ": no such file");
  }

  @Test
  void corruptFileIsOneErrorLineAndExitCode1() throws Exception {
    Path bad = dir.resolve("bad.gguf");
    Files.writeString(bad, "this is not a model");
    CliResult r = CliResult.run("inspect", bad.toString());
    assertThat(r.exitCode()).isEqualTo(1);
    assertThat(r.err().lines()).hasSize(1);
    assertThat(r.err()).startsWith("kvslim: " + bad).contains("not a GGUF file");
    assertThat(r.err()).doesNotContain("Exception").doesNotContain("\tat ");
  }

  @Test
  void directoryIsRejected() {
    CliResult r = CliResult.run("inspect", dir.toString());
    assertThat(r.exitCode()).isEqualTo(1);
    assertThat(r.err()).startsWith("kvslim: ").contains("directory");
  }
}
