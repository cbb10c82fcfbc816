package io.kvslim.bench;

import static io.kvslim.bench.ReportWriter.BY_COMPRESSION;
import static io.kvslim.bench.ReportWriter.bytes;
import static io.kvslim.bench.ReportWriter.fmt;
import static io.kvslim.bench.ReportWriter.isPeer;
import static io.kvslim.bench.ReportWriter.models;
import static io.kvslim.bench.ReportWriter.num;
import static io.kvslim.bench.ReportWriter.str;
import static io.kvslim.bench.ReportWriter.toSeries;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The speed parts of a {@link ReportWriter} report: prefill and decode tokens/s at each depth
 * ({@code bench speed}) and batch throughput under a KV byte budget ({@code bench throughput}).
 */
final class SpeedReport {
  private SpeedReport() {}

  /** Per model, the speed table (every spec at every depth) and tokens/s against depth. */
  static void speed(ReportWriter w, List<Charts.Saved> charts) throws IOException {
    List<Map<String, Object>> all = w.select(r -> !isPeer(r) && "speed".equals(r.get("task")));
    if (all.isEmpty()) {
      return;
    }
    for (String model : models(all)) {
      List<Map<String, Object>> rs = w.select(r -> all.contains(r) && model.equals(r.get("model")));
      rs.sort(BY_COMPRESSION.thenComparingDouble(r -> num(r, "depth")));
      List<List<String>> rows = new ArrayList<>();
      Map<String, List<double[]>> decode = new LinkedHashMap<>();
      Map<String, List<double[]>> prefill = new LinkedHashMap<>();
      for (Map<String, Object> r : rs) {
        rows.add(
            List.of(
                str(r, "spec"),
                fmt(num(r, "depth"), 0),
                fmt(num(r, "compression_ratio"), 2),
                bytes(num(r, "kv_bytes")),
                fmt(num(r, "prefill_tokens_per_second"), 1),
                fmt(num(r, "decode_tokens_per_second"), 1),
                fmt(num(r, "decode_vs_full"), 3),
                fmt(num(r, "decode_tokens_per_second_spread_percent"), 1),
                fmt(num(r, "kv_gb_per_second"), 2),
                fmt(num(r, "policy_ms_per_step"), 3)));
        decode
            .computeIfAbsent(str(r, "spec"), k -> new ArrayList<>())
            .add(new double[] {num(r, "depth"), num(r, "decode_tokens_per_second")});
        prefill
            .computeIfAbsent(str(r, "spec"), k -> new ArrayList<>())
            .add(new double[] {num(r, "depth"), num(r, "prefill_tokens_per_second")});
      }
      w.add(
          new ReportWriter.Table(
              "Speed — " + model,
              List.of(
                  "spec",
                  "depth",
                  "compression",
                  "KV bytes",
                  "prefill tok/s",
                  "decode tok/s",
                  "decode vs full",
                  "decode ±%",
                  "KV GB/s",
                  "policy ms/step"),
              rows));
      peers(w, model, rs, decode, prefill);
      for (var e : List.of(Map.entry("decode", decode), Map.entry("prefill", prefill))) {
        String name = Slug.of(e.getKey() + "-tokens-per-second-vs-depth-" + model);
        Charts.Saved s =
            Charts.save(
                Charts.lines(
                    e.getKey() + " tokens/s vs context depth (" + model + ")",
                    "context depth (tokens)",
                    e.getKey() + " tokens/s",
                    toSeries(e.getValue()),
                    false),
                w.chartsDir(),
                name,
                e.getKey() + " tokens/s vs depth");
        charts.add(s);
        w.add(s);
      }
    }
  }

  /**
   * llama.cpp's imported speed rows of {@code model} ({@code llama-batched-bench}: depth = its
   * prompt) as lines of the charts, and a table of kvslim's specs against llama.cpp at each depth
   * both measured.
   */
  private static void peers(
      ReportWriter w,
      String model,
      List<Map<String, Object>> ours,
      Map<String, List<double[]>> decode,
      Map<String, List<double[]>> prefill) {
    List<Map<String, Object>> peers =
        w.select(
            r ->
                isPeer(r)
                    && "speed".equals(r.get("task"))
                    && model.equals(r.get("model"))
                    && num(r, "depth") > 0
                    && !Double.isNaN(num(r, "decode_tokens_per_second")));
    if (peers.isEmpty()) {
      return;
    }
    peers.sort(Comparator.comparingDouble(r -> num(r, "depth")));
    List<List<String>> rows = new ArrayList<>();
    for (Map<String, Object> p : peers) {
      String name = "llama.cpp " + str(p, "spec");
      decode
          .computeIfAbsent(name, k -> new ArrayList<>())
          .add(new double[] {num(p, "depth"), num(p, "decode_tokens_per_second")});
      prefill
          .computeIfAbsent(name, k -> new ArrayList<>())
          .add(new double[] {num(p, "depth"), num(p, "prefill_tokens_per_second")});
      for (Map<String, Object> r : ours) {
        if (num(r, "depth") == num(p, "depth") && num(r, "batch") == num(p, "batch")) {
          double d = num(r, "decode_tokens_per_second") / num(p, "decode_tokens_per_second");
          rows.add(
              List.of(
                  str(r, "spec"),
                  fmt(num(r, "depth"), 0),
                  fmt(num(r, "decode_tokens_per_second"), 1),
                  name,
                  fmt(num(p, "decode_tokens_per_second"), 1),
                  fmt(d, 3)));
        }
      }
    }
    if (!rows.isEmpty()) {
      w.add(
          new ReportWriter.Table(
              "Decode vs llama.cpp at the same depth — " + model,
              List.of("spec", "depth", "decode tok/s", "peer", "peer tok/s", "kvslim / peer"),
              rows));
    }
  }

  /** Per model, the sequences that fit the KV budget and their tokens/s; tokens/s per batch. */
  static void throughput(ReportWriter w, List<Charts.Saved> charts) throws IOException {
    List<Map<String, Object>> all = w.select(r -> !isPeer(r) && "throughput".equals(r.get("task")));
    if (all.isEmpty()) {
      return;
    }
    for (String model : models(all)) {
      List<Map<String, Object>> summary =
          w.select(
              r ->
                  all.contains(r)
                      && model.equals(r.get("model"))
                      && "max".equals(r.get("variant")));
      summary.sort(BY_COMPRESSION);
      List<List<String>> rows = new ArrayList<>();
      for (Map<String, Object> r : summary) {
        rows.add(
            List.of(
                str(r, "spec"),
                fmt(num(r, "compression_ratio"), 2),
                bytes(num(r, "kv_memory_limit")),
                str(r, "length"),
                str(r, "batch"),
                fmt(num(r, "decode_tokens_per_second"), 1),
                fmt(num(r, "sequences_vs_full"), 2),
                fmt(num(r, "tokens_per_second_vs_full"), 2)));
      }
      w.add(
          new ReportWriter.Table(
              "Throughput under a fixed KV budget — " + model,
              List.of(
                  "spec",
                  "compression",
                  "KV budget",
                  "length",
                  "max sequences",
                  "tok/s at max",
                  "sequences vs full",
                  "tok/s vs full"),
              rows));
      Map<String, List<double[]>> pts = new LinkedHashMap<>();
      for (Map<String, Object> r :
          w.select(
              r ->
                  all.contains(r)
                      && model.equals(r.get("model"))
                      && "sweep".equals(r.get("variant")))) {
        pts.computeIfAbsent(str(r, "spec"), k -> new ArrayList<>())
            .add(new double[] {num(r, "batch"), num(r, "decode_tokens_per_second")});
      }
      String name = Slug.of("throughput-vs-batch-" + model);
      Charts.Saved s =
          Charts.save(
              Charts.lines(
                  "Aggregate decode tokens/s vs batch size (" + model + ")",
                  "sequences decoding together",
                  "tokens/s",
                  toSeries(pts),
                  false),
              w.chartsDir(),
              name,
              "throughput vs batch size");
      charts.add(s);
      w.add(s);
    }
  }
}
