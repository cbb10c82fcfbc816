package io.kvslim.bench;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.TreeSet;
import java.util.function.Predicate;

/**
 * Writes {@code results.csv}, {@code report.md}, {@code report.html} and the charts from the
 * records of a {@link ResultStore}. Tables list the full cache first, then the specs by compression
 * ratio; every number is read from the records.
 */
public final class ReportWriter {
  static final String RANDOM_WEIGHTS_NOTE =
      "The shared test models and `kvslim synth` models have random weights: their text is"
          + " gibberish, so retrieval accuracy is near zero for every cache. On such models the"
          + " retrieval tasks show what each method keeps (agreement with the full cache, KL"
          + " divergence at the question), not how a trained model answers.";

  /** A table: a title, a header row and rows of cells. */
  record Table(String title, List<String> header, List<List<String>> rows) {}

  private final Path dir;
  private final List<Map<String, Object>> records;
  private final Map<String, Object> environment;
  private final List<Object> sections = new ArrayList<>(); // Table, String (text) or Charts.Saved

  public ReportWriter(Path dir, ResultStore store) {
    this.dir = dir;
    this.records = store.records();
    this.environment = store.environment();
  }

  /** Writes every output file; returns the charts written. */
  public List<Charts.Saved> write() throws IOException {
    Files.createDirectories(dir);
    writeCsv();
    List<Charts.Saved> charts = new ArrayList<>();
    sections.add(RANDOM_WEIGHTS_NOTE);
    sections.add(environmentTable());
    nllSection("ppl", "", "Perplexity and KL divergence vs the full cache (ppl)", charts);
    nllSection("code", "nll", "Code NLL and KL divergence vs the full cache (code)", charts);
    retrievalSection(charts);
    sections.addAll(CodeRetrievalReport.sections(records));
    speedSection(charts);
    throughputSection(charts);
    peerSection();
    Files.writeString(dir.resolve("report.md"), markdown(), StandardCharsets.UTF_8);
    Files.writeString(dir.resolve("report.html"), html(), StandardCharsets.UTF_8);
    return charts;
  }

  // ---- CSV --------------------------------------------------------------------------------

  private void writeCsv() throws IOException {
    Set<String> cols = new LinkedHashSet<>();
    for (Map<String, Object> r : records) {
      cols.addAll(r.keySet());
    }
    StringBuilder sb = new StringBuilder();
    sb.append(String.join(",", cols)).append('\n');
    for (Map<String, Object> r : records) {
      List<String> cells = new ArrayList<>();
      for (String c : cols) {
        cells.add(csvCell(r.get(c)));
      }
      sb.append(String.join(",", cells)).append('\n');
    }
    Files.writeString(dir.resolve("results.csv"), sb.toString(), StandardCharsets.UTF_8);
  }

  static String csvCell(Object v) {
    if (v == null) {
      return "";
    }
    // one line per record: line breaks inside a cell (model outputs) are written as \n
    String s =
        (v instanceof Double d ? number(d) : v.toString())
            .replace("\r", "\\r")
            .replace("\n", "\\n");
    if (s.contains(",") || s.contains("\"")) {
      return "\"" + s.replace("\"", "\"\"") + "\"";
    }
    return s;
  }

  private static String number(double d) {
    if (Double.isNaN(d)) {
      return "NaN";
    }
    return d == Math.rint(d) && Math.abs(d) < 1e15
        ? Long.toString((long) d)
        : String.format(Locale.ROOT, "%.6g", d);
  }

  // ---- helpers ------------------------------------------------------------------------------

  private List<Map<String, Object>> select(Predicate<Map<String, Object>> p) {
    List<Map<String, Object>> out = new ArrayList<>();
    for (Map<String, Object> r : records) {
      if (p.test(r)) {
        out.add(r);
      }
    }
    return out;
  }

  private static boolean isPeer(Map<String, Object> r) {
    return !"kvslim".equals(r.get("peer"));
  }

  public static double num(Map<String, Object> r, String key) {
    Object v = r.get(key);
    return v instanceof Number n ? n.doubleValue() : Double.NaN;
  }

  static String str(Map<String, Object> r, String key) {
    return Objects.toString(r.get(key), "");
  }

  private static String fmt(double v, int decimals) {
    if (Double.isNaN(v)) {
      return "–";
    }
    return String.format(Locale.ROOT, "%." + decimals + "f", v);
  }

  private static String fmtG(double v) {
    return Double.isNaN(v) ? "–" : String.format(Locale.ROOT, "%.4g", v);
  }

  public static String bytes(double b) {
    if (Double.isNaN(b)) {
      return "–";
    }
    if (b < 1024) {
      return String.format(Locale.ROOT, "%.0f B", b);
    }
    if (b < 1024 * 1024) {
      return String.format(Locale.ROOT, "%.1f KiB", b / 1024);
    }
    if (b < 1024.0 * 1024 * 1024) {
      return String.format(Locale.ROOT, "%.2f MiB", b / (1024 * 1024));
    }
    return String.format(Locale.ROOT, "%.2f GiB", b / (1024.0 * 1024 * 1024));
  }

  /** Full cache first, then by compression ratio, then by spec. */
  static final Comparator<Map<String, Object>> BY_COMPRESSION =
      Comparator.<Map<String, Object>, Integer>comparing(r -> "full".equals(r.get("spec")) ? 0 : 1)
          .thenComparingDouble(r -> nanLast(num(r, "compression_ratio")))
          .thenComparing(r -> str(r, "spec"));

  private static double nanLast(double v) {
    return Double.isNaN(v) ? Double.MAX_VALUE : v;
  }

  private static Set<String> models(List<Map<String, Object>> rs) {
    Set<String> m = new LinkedHashSet<>();
    for (Map<String, Object> r : rs) {
      m.add(str(r, "model"));
    }
    return m;
  }

  private Table environmentTable() {
    List<List<String>> rows = new ArrayList<>();
    for (Map.Entry<String, Object> e : environment.entrySet()) {
      rows.add(List.of(e.getKey(), Objects.toString(e.getValue(), "")));
    }
    Map<String, String> hashes = new LinkedHashMap<>();
    for (Map<String, Object> r : records) {
      if (!isPeer(r) && r.get("model_sha256") != null) {
        hashes.put(str(r, "model"), str(r, "model_sha256"));
      }
    }
    for (Map.Entry<String, String> e : hashes.entrySet()) {
      rows.add(List.of("model " + e.getKey() + " sha256", e.getValue()));
    }
    return new Table("Environment", List.of("what", "value"), rows);
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

  // ---- sections -----------------------------------------------------------------------------

  private void nllSection(String task, String variant, String title, List<Charts.Saved> charts)
      throws IOException {
    List<Map<String, Object>> all =
        select(r -> !isPeer(r) && task.equals(r.get("task")) && variant.equals(r.get("variant")));
    if (all.isEmpty()) {
      return;
    }
    for (String model : models(all)) {
      List<Map<String, Object>> rs =
          new ArrayList<>(select(r -> all.contains(r) && model.equals(r.get("model"))));
      rs.sort(BY_COMPRESSION);
      List<List<String>> rows = new ArrayList<>();
      for (Map<String, Object> r : rs) {
        rows.add(
            List.of(
                str(r, "spec"),
                fmt(num(r, "compression_ratio"), 2),
                bytes(num(r, "kv_bytes")),
                fmt(num(r, "ppl"), 3),
                fmt(num(r, "ppl_ratio"), 4),
                fmtG(num(r, "kld_mean")),
                fmtG(num(r, "kld_p99")),
                fmtG(num(r, "kld_max")),
                fmt(num(r, "top1_agreement"), 4),
                fmtG(num(r, "kld_mean_decode")),
                fmt(num(r, "top1_agreement_decode"), 4),
                fmt(num(r, "policy_ms_per_step"), 3)));
      }
      sections.add(
          new Table(
              title
                  + " — "
                  + model
                  + " (ctx "
                  + str(rs.get(0), "length")
                  + ", "
                  + str(rs.get(0), "n_tokens")
                  + " tokens)",
              List.of(
                  "spec",
                  "compression",
                  "KV bytes",
                  "PPL",
                  "PPL/full",
                  "KLD mean",
                  "KLD p99",
                  "KLD max",
                  "top-1",
                  "KLD decode",
                  "top-1 decode",
                  "policy ms/step"),
              rows));
      sections.add(
          "Columns 'decode' cover only the positions scored by single-token decode steps, after"
              + " the eviction methods compressed the prefilled part.");
      Map<String, double[][]> series = familySeries(rs, "kld_mean");
      String name = Slug.of("kld-vs-compression-" + task + "-" + model);
      Charts.Saved s =
          Charts.save(
              Charts.lines(
                  "KL divergence vs compression (" + task + ", " + model + ")",
                  "compression ratio (F16 full bytes / bytes held)",
                  "mean KLD vs full cache",
                  series,
                  true),
              dir.resolve("charts"),
              name,
              "KLD vs compression");
      charts.add(s);
      sections.add(s);
    }
  }

  /** Series per method family: x = compression ratio, y = metric, sorted by x. */
  private static Map<String, double[][]> familySeries(List<Map<String, Object>> rs, String metric) {
    Map<String, List<double[]>> pts = new LinkedHashMap<>();
    for (Map<String, Object> r : rs) {
      double x = num(r, "compression_ratio");
      double y = num(r, metric);
      if (!Double.isNaN(x) && !Double.isNaN(y) && x > 0) {
        pts.computeIfAbsent(str(r, "family"), k -> new ArrayList<>()).add(new double[] {x, y});
      }
    }
    return toSeries(pts);
  }

  private static Map<String, double[][]> toSeries(Map<String, List<double[]>> pts) {
    Map<String, double[][]> out = new LinkedHashMap<>();
    for (Map.Entry<String, List<double[]>> e : pts.entrySet()) {
      List<double[]> p = e.getValue();
      p.sort(Comparator.comparingDouble(a -> a[0]));
      double[] x = new double[p.size()];
      double[] y = new double[p.size()];
      for (int i = 0; i < p.size(); i++) {
        x[i] = p.get(i)[0];
        y[i] = p.get(i)[1];
      }
      out.put(e.getKey(), new double[][] {x, y});
    }
    return out;
  }

  private void retrievalSection(List<Charts.Saved> charts) throws IOException {
    List<Map<String, Object>> all =
        select(
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
          select(r -> all.contains(r) && model.equals(r.get("model")));
      Set<String> taskNames = new LinkedHashSet<>();
      for (Map<String, Object> r : byModel) {
        taskNames.add(
            str(r, "task") + (str(r, "variant").isEmpty() ? "" : ":" + str(r, "variant")));
      }
      Map<String, List<double[]>> accPts = new LinkedHashMap<>();
      Map<String, List<double[]>> matchPts = new LinkedHashMap<>();
      for (String tn : taskNames) {
        List<Map<String, Object>> rs =
            select(
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
        sections.add(
            new Table(
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
          heatMaps(rs, tn, model, charts);
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
                dir.resolve("charts"),
                name,
                e.getKey() + " vs compression");
        charts.add(s);
        sections.add(s);
      }
    }
  }

  private void heatMaps(
      List<Map<String, Object>> rs, String task, String model, List<Charts.Saved> charts)
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
          java.util.Arrays.fill(row, Double.NaN);
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
                dir.resolve("charts"),
                name,
                task + " " + what + " " + spec);
        charts.add(s);
        sections.add(s);
      }
    }
  }

  private void speedSection(List<Charts.Saved> charts) throws IOException {
    List<Map<String, Object>> all = select(r -> !isPeer(r) && "speed".equals(r.get("task")));
    if (all.isEmpty()) {
      return;
    }
    for (String model : models(all)) {
      List<Map<String, Object>> rs = select(r -> all.contains(r) && model.equals(r.get("model")));
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
                fmt(num(r, "policy_ms_per_step"), 3)));
        decode
            .computeIfAbsent(str(r, "spec"), k -> new ArrayList<>())
            .add(new double[] {num(r, "depth"), num(r, "decode_tokens_per_second")});
        prefill
            .computeIfAbsent(str(r, "spec"), k -> new ArrayList<>())
            .add(new double[] {num(r, "depth"), num(r, "prefill_tokens_per_second")});
      }
      sections.add(
          new Table(
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
                  "policy ms/step"),
              rows));
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
                dir.resolve("charts"),
                name,
                e.getKey() + " tokens/s vs depth");
        charts.add(s);
        sections.add(s);
      }
    }
  }

  private void throughputSection(List<Charts.Saved> charts) throws IOException {
    List<Map<String, Object>> all = select(r -> !isPeer(r) && "throughput".equals(r.get("task")));
    if (all.isEmpty()) {
      return;
    }
    for (String model : models(all)) {
      List<Map<String, Object>> summary =
          select(
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
      sections.add(
          new Table(
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
          select(
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
              dir.resolve("charts"),
              name,
              "throughput vs batch size");
      charts.add(s);
      sections.add(s);
    }
  }

  private void peerSection() {
    List<Map<String, Object>> rs = select(ReportWriter::isPeer);
    if (rs.isEmpty()) {
      return;
    }
    List<String> metrics =
        List.of(
            "ppl",
            "kld_mean",
            "kld_p99",
            "kld_max",
            "top1_agreement",
            "prefill_tokens_per_second",
            "decode_tokens_per_second");
    List<List<String>> rows = new ArrayList<>();
    for (Map<String, Object> r : rs) {
      List<String> row =
          new ArrayList<>(
              List.of(
                  str(r, "peer"),
                  str(r, "model"),
                  str(r, "spec"),
                  str(r, "task"),
                  str(r, "length")));
      for (String m : metrics) {
        row.add(fmtG(num(r, m)));
      }
      rows.add(row);
    }
    List<String> header = new ArrayList<>(List.of("peer", "model", "KV types", "task", "tokens"));
    header.addAll(
        List.of("PPL", "KLD mean", "KLD p99", "KLD max", "top-1", "prefill tok/s", "decode tok/s"));
    sections.add(new Table("Peer results (imported)", header, rows));
  }

  // ---- rendering ----------------------------------------------------------------------------

  private String markdown() {
    StringBuilder sb = new StringBuilder("# kvslim bench report\n\n");
    for (Object s : sections) {
      switch (s) {
        case String text -> sb.append("> ").append(text).append("\n\n");
        case Table t -> {
          sb.append("## ").append(t.title()).append("\n\n");
          sb.append("| ").append(String.join(" | ", t.header())).append(" |\n");
          sb.append("|").append("---|".repeat(t.header().size())).append('\n');
          for (List<String> row : t.rows()) {
            sb.append("| ").append(String.join(" | ", row).replace("\n", " ")).append(" |\n");
          }
          sb.append('\n');
        }
        case Charts.Saved c ->
            sb.append("![")
                .append(c.title())
                .append("](charts/")
                .append(c.name())
                .append(".png) ([svg](charts/")
                .append(c.name())
                .append(".svg))\n\n");
        default -> throw new IllegalStateException("unknown section " + s);
      }
    }
    return sb.toString();
  }

  private static String esc(String s) {
    return s.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("\"", "&quot;");
  }

  private String html() {
    StringBuilder sb =
        new StringBuilder(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                + "<title>kvslim bench report</title><style>"
                + "body{font-family:sans-serif;margin:2em;max-width:1100px}"
                + "table{border-collapse:collapse;margin:1em 0}"
                + "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
                + "td:first-child,th:first-child{text-align:left}"
                + "blockquote{background:#fff8e1;padding:.5em 1em;border-left:4px solid #f0b400}"
                + "img{max-width:100%;display:block;margin:1em 0}"
                + "</style></head><body>\n<h1>kvslim bench report</h1>\n");
    for (Object s : sections) {
      switch (s) {
        case String text -> sb.append("<blockquote>").append(esc(text)).append("</blockquote>\n");
        case Table t -> {
          sb.append("<h2>").append(esc(t.title())).append("</h2>\n<table><tr>");
          for (String h : t.header()) {
            sb.append("<th>").append(esc(h)).append("</th>");
          }
          sb.append("</tr>\n");
          for (List<String> row : t.rows()) {
            sb.append("<tr>");
            for (String c : row) {
              sb.append("<td>").append(esc(c)).append("</td>");
            }
            sb.append("</tr>\n");
          }
          sb.append("</table>\n");
        }
        case Charts.Saved c ->
            sb.append("<img alt=\"")
                .append(esc(c.title()))
                .append("\" src=\"data:image/png;base64,")
                .append(Base64.getEncoder().encodeToString(c.png()))
                .append("\">\n");
        default -> throw new IllegalStateException("unknown section " + s);
      }
    }
    return sb.append("</body></html>\n").toString();
  }
}
