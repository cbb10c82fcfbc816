package io.kvslim.cli;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.kvslim.SharedData;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** {@code --numerics}: llama.cpp's NLL files from the command line, and bad names. */
class NumericsOptionTest {
  @TempDir Path tmp;

  /**
   * {@code perplexity --numerics llamacpp} on llama.cpp's tokens writes the golden NLL file of a
   * quantized-weight model line for line, to its 6 decimals. The case holds an NLL whose 6th
   * decimal depends on rounding below 1e-9 (line 301: 11.6523995002 as llama.cpp's logits give it
   * in double, 11.6523994999 when the log-sum-exp subtracts the maximum in float). (GoldenTest
   * checks every case in-process; llama256-spm-q4_k_m.code, line 140, is the other such line.)
   */
  @ParameterizedTest
  @ValueSource(strings = {"llama-spm-q8_0.code.kv-f32"})
  void perplexityReproducesTheGoldenNllFile(String id) throws Exception {
    Path shared = SharedData.require();
    JsonNode c = goldenCase(shared, id);
    List<String> ids = new ArrayList<>();
    c.get("token_ids").forEach(t -> ids.add(t.asText()));
    Path tokens = Files.writeString(tmp.resolve("ids.txt"), String.join(" ", ids));
    Path nll = tmp.resolve("nll.txt");
    Path json = tmp.resolve("ppl.json");
    CliResult r =
        CliResult.run(
            "perplexity",
            "-m",
            shared.resolve(c.get("model").asText()).toString(),
            "--tokens-in",
            tokens.toString(),
            "--numerics",
            "llamacpp",
            "-t",
            "2",
            "--nll-out",
            nll.toString(),
            "--json",
            json.toString());
    assertThat(r.exitCode()).as(r.err()).isZero();
    List<String> gold =
        Files.readAllLines(shared.resolve("golden").resolve(c.get("nll_file").asText()));
    assertThat(gold).hasSize(c.get("n_tokens").asInt() - 1);
    assertThat(Files.readAllLines(nll)).containsExactlyElementsOf(gold);
    assertThat(new ObjectMapper().readTree(json.toFile()).get("numerics").asText())
        .isEqualTo("llamacpp");
  }

  @Test
  void anUnknownNumericsIsOneErrorLine() {
    Path shared = SharedData.require();
    String model = shared.resolve("models/llama-spm-q8_0.gguf").toString();
    String text = shared.resolve("golden/texts/short.txt").toString();
    String out = tmp.resolve("out").toString();
    String[][] cases = {
      {"perplexity", "-m", model, "-f", text, "--numerics", "fast"},
      {"generate", "-m", model, "-p", "hi", "--numerics", "fast"},
      {"bench", "speed", "-m", model, "--numerics", "fast"},
      {"bench", "throughput", "-m", model, "--numerics", "fast"},
      {"bench", "quality", "-m", model, "--out", out, "--numerics", "fast"},
    };
    for (String[] args : cases) {
      CliResult r = CliResult.run(args);
      assertThat(r.exitCode()).as(String.join(" ", args)).isEqualTo(1);
      assertThat(r.err())
          .as(String.join(" ", args))
          .isEqualTo(
              "kvslim: unknown --numerics 'fast' (expected one of: default, llamacpp)"
                  + System.lineSeparator());
      assertThat(r.out()).as(String.join(" ", args)).isEmpty();
    }
  }

  private static JsonNode goldenCase(Path shared, String id) throws Exception {
    for (JsonNode c : new ObjectMapper().readTree(shared.resolve("golden/cases.json").toFile())) {
      if (c.get("id").asText().equals(id)) {
        return c;
      }
    }
    throw new AssertionError("no golden case " + id);
  }
}
