package io.kvslim.cli;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.kvslim.SharedData;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** generate, perplexity and bench speed end to end on a shared model. */
class ModelCommandsTest {
  @TempDir Path tmp;

  @Test
  void perplexityWritesGoldenFormatNllMatchingLlamaCpp() throws Exception {
    Path shared = SharedData.require();
    Path nll = tmp.resolve("nll.txt");
    Path json = tmp.resolve("ppl.json");
    CliResult r =
        CliResult.run(
            "perplexity",
            "-m",
            shared.resolve("models/llama-spm-f32.gguf").toString(),
            "-f",
            shared.resolve("golden/texts/prose.txt").toString(),
            "--ctx",
            "512",
            "-t",
            "2",
            "--nll-out",
            nll.toString(),
            "--json",
            json.toString());
    assertThat(r.exitCode()).as(r.err()).isZero();
    List<String> ours = Files.readAllLines(nll);
    List<String> gold =
        Files.readAllLines(shared.resolve("golden/logits/llama-spm-f32.prose.kv-f32.nll.txt"));
    assertThat(ours).hasSameSizeAs(gold);
    for (int i = 0; i < gold.size(); i++) {
      String[] a = ours.get(i).split(" ");
      String[] b = gold.get(i).split(" ");
      assertThat(a[0]).isEqualTo(b[0]);
      assertThat(a[1]).matches("\\d+\\.\\d{6}");
      assertThat(Double.parseDouble(a[1]))
          .isCloseTo(Double.parseDouble(b[1]), org.assertj.core.data.Offset.offset(1e-3));
    }
    JsonNode j = new ObjectMapper().readTree(json.toFile());
    assertThat(j.get("n_tokens").asInt()).isEqualTo(gold.size());
    assertThat(j.get("ppl").asDouble()).isPositive();
    assertThat(j.has("mean_nll") && j.has("tokens_per_second")).isTrue();
  }

  @Test
  void perplexityWithAKvSpecReportsDivergenceAndCompression() throws Exception {
    Path shared = SharedData.require();
    Path json = tmp.resolve("kv.json");
    CliResult r =
        CliResult.run(
            "perplexity",
            "-m",
            shared.resolve("models/llama-spm-f32.gguf").toString(),
            "-f",
            shared.resolve("golden/texts/prose.txt").toString(),
            "--kv",
            "q8_0",
            "-t",
            "2",
            "--json",
            json.toString());
    assertThat(r.exitCode()).as(r.err()).isZero();
    JsonNode j = new ObjectMapper().readTree(json.toFile());
    for (String key :
        List.of(
            "kld_mean",
            "kld_max",
            "top1_agreement",
            "kv_bytes_peak",
            "kv_bytes_final",
            "kv_tokens",
            "compression_ratio")) {
      assertThat(j.has(key)).as(key).isTrue();
    }
    assertThat(j.get("kld_mean").asDouble()).isBetween(0.0, 0.1);
    assertThat(j.get("compression_ratio").asDouble()).isGreaterThan(1.0);
  }

  @Test
  void benchSpeedWritesTheDocumentedJsonKeys() throws Exception {
    Path shared = SharedData.require();
    Path json = tmp.resolve("speed.json");
    CliResult r =
        CliResult.run(
            "bench",
            "speed",
            "-m",
            shared.resolve("models/llama-spm-f32.gguf").toString(),
            "--prompt",
            "16",
            "--gen",
            "4",
            "--repeat",
            "1",
            "-t",
            "1",
            "--json",
            json.toString());
    assertThat(r.exitCode()).as(r.err()).isZero();
    JsonNode j = new ObjectMapper().readTree(json.toFile());
    for (String key :
        List.of(
            "prefill_tokens_per_second",
            "decode_tokens_per_second",
            "threads",
            "batch",
            "depth",
            "model")) {
      assertThat(j.has(key)).as(key).isTrue();
    }
    assertThat(j.get("decode_tokens_per_second").asDouble()).isPositive();
  }

  @Test
  void badInputGivesOneLineAndExitCode1() {
    Path shared = SharedData.require();
    String model = shared.resolve("models/llama-spm-f32.gguf").toString();
    String[][] cases = {
      {"generate", "-m", model, "-p", "hi", "--kv", "snapkv:bugdet=3"},
      {"generate", "-m", tmp.resolve("missing.gguf").toString(), "-p", "hi"},
      {"generate", "-m", model, "-p", "hi", "--temp", "-1"},
      {"perplexity", "-m", model, "-f", tmp.resolve("none.txt").toString()},
      {"bench", "speed", "-m", model, "--depth", "99999"},
    };
    for (String[] args : cases) {
      CliResult r = CliResult.run(args);
      assertThat(r.exitCode()).as(String.join(" ", args)).isEqualTo(1);
      assertThat(r.err().strip())
          .startsWith("kvslim: ")
          .doesNotContain("\n")
          .doesNotContain("Exception");
    }
  }
}
