package io.kvslim.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.kvslim.SharedData;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The bench commands end to end on the tiny shared model, with a reduced config. */
class BenchCommandsTest {
  static final String CONFIG =
      """
      {
        "specs": ["f32", "streaming:sinks=4,window=24", "q8_0"],
        "tasks": ["ppl", "passkey", "niah", "ruler", "code"],
        "lengths": [200],
        "depths": [0.5],
        "samples": 1,
        "seed": 3,
        "ppl": {"ctx": 64, "windows": 1, "decode": 16},
        "rulerVariants": ["mk", "cwe"]
      }
      """;

  @TempDir Path tmp;

  private static String model() {
    return SharedData.model("llama-spm-f32.gguf").toString();
  }

  private static JsonNode records(Path dir) throws IOException {
    return new ObjectMapper().readTree(dir.resolve("results.json").toFile()).get("records");
  }

  private static JsonNode find(JsonNode records, String spec, String task, String variant) {
    for (JsonNode r : records) {
      if (r.get("spec").asText().equals(spec)
          && r.get("task").asText().equals(task)
          && r.get("variant").asText().equals(variant)) {
        return r;
      }
    }
    throw new AssertionError("no record " + spec + " " + task + " " + variant);
  }

  @Test
  void quickRunWritesEveryOutputAndTheOtherBenchesAddToIt() throws IOException {
    Path cfg = tmp.resolve("cfg.json");
    Files.writeString(cfg, CONFIG);
    Path out = tmp.resolve("out");
    CliResult r =
        CliResult.run(
            "bench",
            "quality",
            "-m",
            model(),
            "-t",
            "1",
            "--config",
            cfg.toString(),
            "--out",
            out.toString());
    assertThat(r.exitCode()).as(r.err()).isZero();
    for (String f :
        List.of("results.json", "results.csv", "report.md", "report.html", "config.json")) {
      assertThat(out.resolve(f)).isNotEmptyFile();
    }
    JsonNode recs = records(out);
    // the baseline against an independent full-precision run of itself
    JsonNode self = find(recs, "f32", "ppl", "");
    assertThat(self.get("kld_mean").asDouble()).isCloseTo(0.0, within(1e-9));
    assertThat(self.get("kld_max").asDouble()).isCloseTo(0.0, within(1e-9));
    assertThat(self.get("top1_agreement").asDouble()).isEqualTo(1.0);
    // F32 holds twice the F16 baseline's payload, plus positions and partly filled blocks
    assertThat(find(recs, "full", "ppl", "").get("compression_ratio").asDouble())
        .isBetween(0.4, 0.5);
    JsonNode q8 = find(recs, "q8_0", "ppl", "");
    assertThat(q8.get("kld_mean").asDouble()).isGreaterThan(0).isLessThan(0.1);
    assertThat(q8.get("compression_ratio").asDouble()).isGreaterThan(1.5);
    // a decode step reads the whole cache it holds: less for a 28-token window
    double fullRead = find(recs, "full", "ppl", "").get("kv_read_per_step").asDouble();
    assertThat(fullRead).isPositive();
    assertThat(
            find(recs, "streaming:sinks=4,window=24", "ppl", "").get("kv_read_per_step").asDouble())
        .isLessThan(fullRead);
    assertThat(find(recs, "f32", "passkey", "").get("match_full").asDouble()).isEqualTo(1.0);
    assertThat(find(recs, "streaming:sinks=4,window=24", "ruler", "mk").get("n").asInt())
        .isEqualTo(1);
    find(recs, "q8_0", "code", "next_line");
    find(recs, "q8_0", "ruler", "cwe");
    find(recs, "q8_0", "code", "nll");
    JsonNode any = recs.get(0);
    for (String f : List.of("model_sha256", "threads", "cpu", "jvm", "commit")) {
      assertThat(any.has(f)).as(f).isTrue();
    }
    String md = Files.readString(out.resolve("report.md"));
    assertThat(md).contains("random weights").contains("| full | 0.4");
    assertThat(Files.readString(out.resolve("report.html"))).contains("data:image/png;base64,");
    assertThat(Files.readString(out.resolve("results.csv")).lines().count())
        .isEqualTo(recs.size() + 1);

    // --resume keeps every record and redoes none
    int before = recs.size();
    r =
        CliResult.run(
            "bench", "quality", "-m", model(), "-t", "1", "--resume", "--out", out.toString());
    assertThat(r.exitCode()).as(r.err()).isZero();
    assertThat(records(out).size()).isEqualTo(before);

    r =
        CliResult.run(
            "bench",
            "speed",
            "-m",
            model(),
            "-t",
            "1",
            "--kv",
            "q8_0",
            "--depths",
            "16,48",
            "--prompt",
            "16",
            "--gen",
            "4",
            "--repeat",
            "1",
            "--out",
            out.toString(),
            "--json",
            tmp.resolve("speed.json").toString());
    assertThat(r.exitCode()).as(r.err()).isZero();
    JsonNode speed = new ObjectMapper().readTree(tmp.resolve("speed.json").toFile());
    assertThat(speed.size()).isEqualTo(4); // full and q8_0 at two depths
    assertThat(speed.get(0).get("decode_tokens_per_second").asDouble()).isPositive();
    assertThat(speed.get(0).has("prefill_tokens_per_second")).isTrue();

    r =
        CliResult.run(
            "bench",
            "throughput",
            "-m",
            model(),
            "-t",
            "1",
            "--kv",
            "q8_0",
            "--kv-memory",
            "300KiB",
            "--length",
            "32",
            "--gen",
            "4",
            "--out",
            out.toString());
    assertThat(r.exitCode()).as(r.err()).isZero();
    recs = records(out);
    JsonNode fullMax = find(recs, "full", "throughput", "max");
    JsonNode q8Max = find(recs, "q8_0", "throughput", "max");
    assertThat(fullMax.get("max_sequences").asInt()).isPositive();
    assertThat(q8Max.get("max_sequences").asInt())
        .isGreaterThan(2 * fullMax.get("max_sequences").asInt());
    assertThat(q8Max.get("pool_peak_bytes").asLong()).isLessThanOrEqualTo(300 * 1024);

    r =
        CliResult.run(
            "bench",
            "import-llamacpp",
            resource("perplexity-kld-q8_0.txt"),
            resource("bench.jsonl"),
            "--out",
            out.toString());
    assertThat(r.exitCode()).as(r.err()).isZero();
    assertThat(find(records(out), "q8_0/q8_0", "ppl", "").get("peer").asText())
        .isEqualTo("llama.cpp");

    // llama-batched-bench: its table with the log, and its jsonl lines (no model named in them)
    r =
        CliResult.run(
            "bench",
            "import-llamacpp",
            resource("batched-bench.txt"),
            resource("batched-bench.jsonl"),
            "--model",
            "llama-spm-f32.gguf",
            "--out",
            out.toString());
    assertThat(r.exitCode()).as(r.err()).isZero();
    int peerSpeed = 0;
    for (JsonNode rec : records(out)) {
      if (rec.get("peer").asText().equals("llama.cpp")
          && rec.get("task").asText().equals("speed")) {
        peerSpeed += rec.get("variant").asText().startsWith("batched") ? 1 : 0;
      }
    }
    assertThat(peerSpeed).isEqualTo(2); // depths 16 and 48; the jsonl's rows replace the table's
    JsonNode peer = find(records(out), "f16/f16", "speed", "batched-b1-tg4");
    assertThat(peer.get("model").asText()).isEqualTo("llama-spm-f32.gguf");
    assertThat(peer.get("decode_tokens_per_second").asDouble()).isPositive();
    assertThat(Files.readString(out.resolve("report.md")))
        .contains("Decode vs llama.cpp at the same depth — llama-spm-f32.gguf")
        .contains("| q8_0 | 48 |");
    assertThat(Files.readString(out.resolve("report.md")))
        .contains("Speed — llama-spm-f32.gguf")
        .contains("Throughput under a fixed KV budget")
        .contains("Peer results");

    List<Path> pngs = new ArrayList<>();
    try (Stream<Path> s = Files.list(out.resolve("charts"))) {
      s.filter(p -> p.toString().endsWith(".png")).forEach(pngs::add);
    }
    assertThat(pngs).hasSizeGreaterThanOrEqualTo(8);
    for (Path p : pngs) {
      byte[] b = Files.readAllBytes(p);
      assertThat(b.length).as(p.toString()).isGreaterThan(1024);
      assertThat(new String(b, 1, 3, java.nio.charset.StandardCharsets.US_ASCII)).isEqualTo("PNG");
      String svg = p.toString().replaceAll("\\.png$", ".svg");
      assertThat(Path.of(svg)).isNotEmptyFile();
    }
  }

  private String resource(String name) throws IOException {
    Path p = tmp.resolve(name);
    try (InputStream in = getClass().getResourceAsStream("/llamacpp/" + name)) {
      Files.write(p, in.readAllBytes());
    }
    return p.toString();
  }

  @Test
  void aSpecThatNeedsACalibrationProfileIsCalibratedForOnce() throws IOException {
    Path cfg = tmp.resolve("calibrated.json");
    Files.writeString(
        cfg,
        """
        {
          "specs": ["duo:ratio=0.5,sinks=4,recent=16"],
          "tasks": ["ppl"],
          "seed": 3,
          "ppl": {"ctx": 64, "windows": 1, "decode": 16}
        }
        """);
    Path out = tmp.resolve("calibrated");
    CliResult r =
        CliResult.run(
            "bench",
            "quality",
            "-m",
            model(),
            "-t",
            "1",
            "--config",
            cfg.toString(),
            "--out",
            out.toString());
    assertThat(r.exitCode()).as(r.err()).isZero();
    assertThat(out.resolve("calibration-profile.json")).isNotEmptyFile();
    String spec =
        "duo:ratio=0.5,sinks=4,recent=16@profile=" + out.resolve("calibration-profile.json");
    assertThat(find(records(out), spec, "ppl", "").get("kld_mean").asDouble())
        .isGreaterThanOrEqualTo(0);
  }

  @Test
  void badInputsGiveOneLineErrors() throws IOException {
    String out = tmp.resolve("bad").toString();
    Path unreadable = tmp.resolve("broken.json");
    Files.writeString(unreadable, "{ not json");
    List<String[]> cases =
        List.of(
            new String[] {"bench", "quality", "-m", model(), "--task", "nope", "--out", out},
            new String[] {
              "bench", "quality", "-m", model(), "--kv", "snapkv:budgit=3", "--out", out
            },
            new String[] {
              "bench", "quality", "-m", tmp.resolve("missing.gguf").toString(), "--out", out
            },
            new String[] {
              "bench", "quality", "-m", model(), "--config", unreadable.toString(), "--out", out
            },
            new String[] {
              "bench",
              "quality",
              "-m",
              model(),
              "--config",
              tmp.resolve("none.json").toString(),
              "--out",
              out
            },
            new String[] {"bench", "throughput", "-m", model(), "--kv-memory", "lots"},
            new String[] {"bench", "import-llamacpp", unreadable.toString(), "--out", out});
    for (String[] args : cases) {
      CliResult r = CliResult.run(args);
      assertThat(r.exitCode()).as(String.join(" ", args)).isNotZero();
      assertThat(r.err().strip()).as(String.join(" ", args)).startsWith("kvslim: ");
      assertThat(r.err().strip().lines().count()).as(r.err()).isEqualTo(1);
    }
  }
}
