package io.kvslim.bench;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import io.kvslim.server.KvPlan;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * Admission under the byte budget by the server's rule, the batch sweep, and the ratios to the full
 * cache.
 */
class ThroughputRunnerTest {

  @Test
  void compressionAdmitsMoreSequencesUnderTheSameBudgetAndNeverExceedsIt() {
    long limit = 1L << 20;
    int chunk = 32;
    try (Model model = Model.load(SharedData.model("llama-spm-f32.gguf"));
        Engine engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()));
        Progress progress = new Progress(new PrintStream(new ByteArrayOutputStream()), false, 1)) {
      ThroughputRunner runner =
          new ThroughputRunner(engine, new ThroughputRunner.Settings(limit, 96, 8, 64, chunk, 1));
      List<Map<String, Object>> records = new ArrayList<>();
      for (String spec : List.of("full", "q8_0")) {
        records.addAll(runner.run("llama-spm-f32.gguf", spec, progress));
      }
      ThroughputRunner.addRatios(records);
      Map<String, Object> full = max(records, "full");
      Map<String, Object> q8 = max(records, "q8_0");
      double fullSeqs = ReportWriter.num(full, "max_sequences");
      double q8Seqs = ReportWriter.num(q8, "max_sequences");
      assertThat(fullSeqs).isGreaterThanOrEqualTo(1);
      // q8_0 holds 34 bytes per 32 values against 128 for F32
      assertThat(q8Seqs).isGreaterThanOrEqualTo(3 * fullSeqs);
      assertThat(ReportWriter.num(q8, "sequences_vs_full")).isEqualTo(q8Seqs / fullSeqs);
      for (String spec : List.of("full", "q8_0")) {
        // what a server with this --kv-memory admits for 96-token prompts and max_tokens 8: as
        // many reservations of its estimate as the limit holds
        long estimate =
            KvPlan.of(KvSpec.parse(spec), new BlockPool(), model.config(), chunk)
                .estimateBytes(96, 8);
        Map<String, Object> r = max(records, spec);
        assertThat(ReportWriter.num(r, "kv_bytes_reserved")).isEqualTo(estimate);
        assertThat(ReportWriter.num(r, "max_sequences")).isEqualTo(Math.min(64, limit / estimate));
        assertThat(ReportWriter.num(r, "kv_bytes_peak")).isLessThanOrEqualTo(estimate);
      }
      for (Map<String, Object> r : List.of(full, q8)) {
        assertThat(ReportWriter.num(r, "pool_peak_bytes")).isLessThanOrEqualTo(limit);
        assertThat(r.get("exhausted_during_prefill")).isEqualTo(false);
        assertThat(ReportWriter.num(r, "decode_tokens_per_second")).isPositive();
        assertThat(r.get("exhausted_during_decode")).isEqualTo(false);
      }
      // one sweep record per batch size 1, 2, 4, ... and the largest
      long sweeps =
          records.stream()
              .filter(r -> "q8_0".equals(r.get("spec")) && "sweep".equals(r.get("variant")))
              .count();
      assertThat(sweeps).isEqualTo(Integer.toBinaryString((int) q8Seqs - 1).length() + 1);
      // every spec's rate all together covers every decode step from the prompt (same depths)
      for (String spec : List.of("full", "q8_0")) {
        double all = ReportWriter.num(max(records, spec), "max_sequences");
        Map<String, Object> together =
            records.stream()
                .filter(
                    r ->
                        spec.equals(r.get("spec"))
                            && "sweep".equals(r.get("variant"))
                            && ReportWriter.num(r, "batch") == all)
                .findFirst()
                .orElseThrow();
        assertThat(ReportWriter.num(together, "decode_steps")).as(spec).isEqualTo(8);
        assertThat(ReportWriter.num(together, "decode_tokens_per_second"))
            .isEqualTo(ReportWriter.num(max(records, spec), "decode_tokens_per_second"));
      }
    }
  }

  @Test
  void maxBatchCapsAdmissionAsInTheServer() {
    try (Model model = Model.load(SharedData.model("llama-spm-f32.gguf"));
        Engine engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()));
        Progress progress = new Progress(new PrintStream(new ByteArrayOutputStream()), false, 1)) {
      ThroughputRunner runner =
          new ThroughputRunner(engine, new ThroughputRunner.Settings(1L << 20, 32, 4, 3, 64, 1));
      Map<String, Object> q8 = max(runner.run("llama-spm-f32.gguf", "q8_0", progress), "q8_0");
      assertThat(ReportWriter.num(q8, "max_sequences")).isEqualTo(3);
      assertThat(q8.get("capped_by_max_batch")).isEqualTo(true);
    }
  }

  private static Map<String, Object> max(List<Map<String, Object>> records, String spec) {
    return records.stream()
        .filter(r -> spec.equals(r.get("spec")) && "max".equals(r.get("variant")))
        .findFirst()
        .orElseThrow();
  }
}
