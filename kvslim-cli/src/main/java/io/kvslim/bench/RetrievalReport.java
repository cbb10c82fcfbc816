package io.kvslim.bench;

import static io.kvslim.bench.ReportWriter.BY_COMPRESSION;
import static io.kvslim.bench.ReportWriter.bytes;
import static io.kvslim.bench.ReportWriter.fmt;
import static io.kvslim.bench.ReportWriter.fmtG;
import static io.kvslim.bench.ReportWriter.isPeer;
import static io.kvslim.bench.ReportWriter.models;
import static io.kvslim.bench.ReportWriter.num;
import static io.kvslim.bench.ReportWriter.str;
import static io.kvslim.bench.ReportWriter.toSeries;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * The retrieval part of a {@link ReportWriter} report: passkey, needle, RULER-style and code
 * completion records averaged per spec, accuracy and agreement with the full cache against
 * compression, and the needle heat maps over length × depth.
 */
final class RetrievalReport {
  private RetrievalReport() {}

  /** Per model and task, a table of the specs' means over lengths × depths and the charts. */
  static void add(ReportWriter w, List<Charts.Saved> charts) throws IOException {
    List<Map<String, Object>> all =
        w.select(
            r ->
                !isPeer(r)
                    && Set.of("passkey", "niah", "ruler", "code", "pycode").contains(str(r, "task"))
                    && !"nll".equals(r.get("variant")));
    if (all.isEmpty()) {
      return;
    }
    List<String> keys =
        List.of(
            "compression_ratio",
            "kv_bytes",
            "accuracy",
            "match_full",
            "kld_query",
            "top1_agreement");
    for (String model : models(all)) {
      List<Map<String, Object>> byModel =
          w.select(r -> all.contains(r) && model.equals(r.get("model")));
      Set<String> taskNames = new LinkedHashSet<>();
      for (Map<String, Object> r : byModel) {
        taskNames.add(
            str(r, "task") + (str(r, "variant").isEmpty() ? "" : ":" + str(r, "variant")));
      }
      Map<String, List<double[]>> accPts = new LinkedHashMap<>();
      Map<String, List<double[]>> matchPts = new LinkedHashMap<>();
      for (String tn : taskNames) {
        List<Map<String, Object>> rs =
            w.select(
                r ->
                    byModel.contains(r)
                        && tn.equals(
                            str(r, "task")
                                + (str(r, "variant").isEmpty() ? "" : ":" + str(r, "variant"))));
        Map<String, double[]> avg = averageBySpec(rs, keys);
        List<Map<String, Object>> summary = new ArrayList<>();
        for (Map.Entry<String, double[]> e : avg.entrySet()) {
          Map<String, Object> m = new LinkedHashMap<>();
          m.put("spec", e.getKey());
          m.put("family", ResultStore.family(e.getKey()));
          for (int i = 0; i < keys.size(); i++) {
            m.put(keys.get(i), e.getValue()[i]);
          }
          m.put("settings", (int) e.getValue()[keys.size()]);
          summary.add(m);
        }
        summary.sort(BY_COMPRESSION);
        List<List<String>> rows = new ArrayList<>();
        for (Map<String, Object> m : summary) {
          rows.add(
              List.of(
                  str(m, "spec"),
                  fmt(num(m, "compression_ratio"), 2),
                  bytes(num(m, "kv_bytes")),
                  fmt(num(m, "accuracy"), 3),
                  fmt(num(m, "match_full"), 3),
                  fmtG(num(m, "kld_query")),
                  fmt(num(m, "top1_agreement"), 3),
                  str(m, "settings")));
          String fam = str(m, "family");
          accPts.computeIfAbsent(fam + " " + tn, k -> new ArrayList<>());
          accPts
              .get(fam + " " + tn)
              .add(new double[] {num(m, "compression_ratio"), num(m, "accuracy")});
          matchPts.computeIfAbsent(fam + " " + tn, k -> new ArrayList<>());
          matchPts
              .get(fam + " " + tn)
              .add(new double[] {num(m, "compression_ratio"), num(m, "match_full")});
        }
        w.add(
            new ReportWriter.Table(
                "Retrieval: " + tn + " — " + model + " (mean over lengths × depths)",
                List.of(
                    "spec",
                    "compression",
                    "KV bytes",
                    "accuracy",
                    "same answer as full",
                    "KLD at question",
                    "top-1 at question",
                    "settings"),
                rows));
        if (tn.equals("niah")) {
          heatMaps(w, rs, tn, model, charts);
        }
      }
      for (var e : List.of(Map.entry("accuracy", accPts), Map.entry("match_full", matchPts))) {
        String name = Slug.of(e.getKey() + "-vs-compression-" + model);
        Charts.Saved s =
            Charts.save(
                Charts.lines(
                    (e.getKey().equals("accuracy") ? "Task accuracy" : "Same answer as full cache")
                        + " vs compression ("
                        + model
                        + ")",
                    "compression ratio (F16 full bytes / bytes held)",
                    e.getKey().equals("accuracy")
                        ? "exact-match accuracy"
                        : "share of answers equal to full",
                    toSeries(e.getValue()),
                    true),
                w.chartsDir(),
                name,
                e.getKey() + " vs compression");
        charts.add(s);
        w.add(s);
      }
    }
  }

  private static void heatMaps(
      ReportWriter w,
      List<Map<String, Object>> rs,
      String task,
      String model,
      List<Charts.Saved> charts)
      throws IOException {
    Set<String> specs = new LinkedHashSet<>();
    TreeSet<Double> depths = new TreeSet<>();
    TreeSet<Integer> lengths = new TreeSet<>();
    for (Map<String, Object> r : rs) {
      specs.add(str(r, "spec"));
      depths.add(num(r, "depth"));
      lengths.add((int) num(r, "length"));
    }
    List<String> cols = new ArrayList<>();
    for (int l : lengths) {
      cols.add(Integer.toString(l));
    }
    List<String> rowNames = new ArrayList<>();
    for (double d : depths) {
      rowNames.add(fmt(d, 2));
    }
    for (String metric : List.of("accuracy", "match_full")) {
      for (String spec : specs) {
        double[][] v = new double[depths.size()][lengths.size()];
        for (double[] row : v) {
          Arrays.fill(row, Double.NaN);
        }
        for (Map<String, Object> r : rs) {
          if (spec.equals(r.get("spec"))) {
            int ri = depths.headSet(num(r, "depth")).size();
            int ci = lengths.headSet((int) num(r, "length")).size();
            v[ri][ci] = num(r, metric);
          }
        }
        String name = Slug.of("heatmap-" + task + "-" + metric + "-" + spec + "-" + model);
        String what = metric.equals("accuracy") ? "accuracy" : "same answer as full";
        Charts.Saved s =
            Charts.save(
                Charts.heatMap(
                    task + " " + what + ": " + spec,
                    "context length",
                    "needle depth",
                    cols,
                    rowNames,
                    v),
                w.chartsDir(),
                name,
                task + " " + what + " " + spec);
        charts.add(s);
        w.add(s);
      }
    }
  }

  /** Averages a metric of records grouped by spec (records of one model and task). */
  private static Map<String, double[]> averageBySpec(
      List<Map<String, Object>> rs, List<String> keys) {
    Map<String, double[]> sums = new LinkedHashMap<>();
    for (Map<String, Object> r : rs) {
      double[] s = sums.computeIfAbsent(str(r, "spec"), k -> new double[keys.size() + 1]);
      for (int i = 0; i < keys.size(); i++) {
        s[i] += num(r, keys.get(i));
      }
      s[keys.size()]++;
    }
    for (double[] s : sums.values()) {
      for (int i = 0; i < s.length - 1; i++) {
        s[i] /= s[s.length - 1];
      }
    }
    return sums;
  }
}
