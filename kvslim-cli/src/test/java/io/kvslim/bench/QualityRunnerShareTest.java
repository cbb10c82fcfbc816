package io.kvslim.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.kvslim.SharedData;
import io.kvslim.cli.Main;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.cache.KvCaches;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import io.kvslim.model.ModelConfig;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Sharing the prefill between specs of the same storage formats and batching their decode steps
 * changes nothing in the results: the records equal those of running every spec alone.
 */
class QualityRunnerShareTest {
  static final List<String> SPECS =
      List.of(
          "streaming:sinks=4,window=24",
          "h2o:budget=25%",
          "tova:budget=25%",
          "snapkv:budget=25%,window=8",
          "pyramidkv:budget=25%,window=8",
          "q8_0",
          "snapkv:budget=25%,window=8 + q8_0",
          "kivi:kbits=2,vbits=2,group=32,residual=32");

  @TempDir Path tmp;

  @Test
  void groupsSpecsByTheirStorageFormats() {
    assumeTrue(SharedData.present());
    ModelConfig config;
    try (Model m = Model.load(SharedData.model("llama-spm-f32.gguf"))) {
      config = m.config();
    }
    List<KvCaches> caches = new ArrayList<>();
    for (String s : new ArrayList<>(List.of("full"))) {
      caches.add(KvSpecs.caches(KvSpec.parse(s), new BlockPool(), config));
    }
    for (String s : SPECS) {
      caches.add(KvSpecs.caches(KvSpec.parse(s), new BlockPool(), config));
    }
    List<int[]> shared = QualityRunner.groups(caches, true);
    // streaming's rolling positions store keys before RoPE: it shares with no F32 cache
    assertThat(shared)
        .containsExactly(new int[] {0, 2, 3, 4, 5}, new int[] {1}, new int[] {6, 7}, new int[] {8});
    assertThat(QualityRunner.groups(caches, false)).hasSize(9);
  }

  private Map<String, JsonNode> run(boolean share) throws Exception {
    String specs = new ObjectMapper().writeValueAsString(SPECS);
    Path cfg = tmp.resolve("cfg-" + share + ".json");
    Files.writeString(
        cfg,
        """
        {
          "specs": %s,
          "tasks": ["ppl", "passkey", "ruler", "code"],
          "lengths": [160],
          "depths": [0.5],
          "samples": 1,
          "seed": 5,
          "ppl": {"ctx": 96, "windows": 2, "decode": 24},
          "rulerVariants": ["mk"],
          "share": %s
        }
        """
            .formatted(specs, share));
    Path out = tmp.resolve("out-" + share);
    StringWriter err = new StringWriter();
    int code =
        Main.run(
            new PrintWriter(new StringWriter()),
            new PrintWriter(err),
            "bench",
            "quality",
            "-m",
            SharedData.model("llama-spm-f32.gguf").toString(),
            "-t",
            "2",
            "--config",
            cfg.toString(),
            "--out",
            out.toString());
    assertThat(code).as(err.toString()).isZero();
    JsonNode recs =
        new ObjectMapper().readTree(out.resolve("results.json").toFile()).get("records");
    Map<String, JsonNode> byKey = new TreeMap<>();
    for (JsonNode r : recs) {
      byKey.put(
          r.get("spec").asText()
              + "|"
              + r.get("task").asText()
              + "|"
              + r.get("variant").asText()
              + "|"
              + r.get("length").asText()
              + "|"
              + r.path("depth").asText(),
          r);
    }
    return byKey;
  }

  @Test
  void sharedRunEqualsEverySpecAlone() throws Exception {
    assumeTrue(SharedData.present());
    Map<String, JsonNode> shared = run(true);
    Map<String, JsonNode> alone = run(false);
    assertThat(shared.keySet()).isEqualTo(alone.keySet()).hasSize(9 * 5);
    for (String k : shared.keySet()) {
      JsonNode a = shared.get(k);
      JsonNode b = alone.get(k);
      for (Iterator<String> it = a.fieldNames(); it.hasNext(); ) {
        String f = it.next();
        if (f.equals("policy_ms_per_step") || f.equals("environment") || f.equals("time")) {
          continue; // measured time
        }
        assertThat(a.get(f)).as(k + " " + f).isEqualTo(b.get(f));
      }
    }
    // the metrics are not all trivially equal: eviction and quantization show up
    JsonNode h2o =
        shared.entrySet().stream()
            .filter(e -> e.getKey().startsWith("h2o:budget=25%|ppl|"))
            .findFirst()
            .orElseThrow()
            .getValue();
    assertThat(h2o.get("kld_mean_decode").asDouble()).isPositive();
  }
}
