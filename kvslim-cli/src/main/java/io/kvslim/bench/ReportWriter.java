package io.kvslim.bench;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.function.Predicate;

/**
 * Writes {@code results.csv}, {@code report.md}, {@code report.html} and the charts from the
 * records of a {@link ResultStore}. Tables list the full cache first, then the specs by compression
 * ratio; every number is read from the records.
 */
public final class ReportWriter {
  static final String RANDOM_WEIGHTS_NOTE =
      "The shared test models (except `pycoder-6m-f16.gguf`, the bundled trained code model) and"
          + " `kvslim synth` models have random weights: their text is"
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
    RetrievalReport.add(this, charts);
    sections.addAll(CodeRetrievalReport.sections(records));
    SpeedReport.speed(this, charts);
    SpeedReport.throughput(this, charts);
    peerSection();
    Files.writeString(
        dir.resolve("report.md"), ReportPages.markdown(sections), StandardCharsets.UTF_8);
    Files.writeString(
        dir.resolve("report.html"), ReportPages.html(sections), StandardCharsets.UTF_8);
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

  /** Appends a section: a {@link Table}, a note (String) or a {@link Charts.Saved} chart. */
  void add(Object section) {
    sections.add(section);
  }

  /** Where the charts go. */
  Path chartsDir() {
    return dir.resolve("charts");
  }

  /** The records {@code p} accepts, in order. */
  List<Map<String, Object>> select(Predicate<Map<String, Object>> p) {
    List<Map<String, Object>> out = new ArrayList<>();
    for (Map<String, Object> r : records) {
      if (p.test(r)) {
        out.add(r);
      }
    }
    return out;
  }

  static boolean isPeer(Map<String, Object> r) {
    return !"kvslim".equals(r.get("peer"));
  }

  public static double num(Map<String, Object> r, String key) {
    Object v = r.get(key);
    return v instanceof Number n ? n.doubleValue() : Double.NaN;
  }

  static String str(Map<String, Object> r, String key) {
    return Objects.toString(r.get(key), "");
  }

  static String fmt(double v, int decimals) {
    if (Double.isNaN(v)) {
      return "–";
    }
    return String.format(Locale.ROOT, "%." + decimals + "f", v);
  }

  static String fmtG(double v) {
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

  static Set<String> models(List<Map<String, Object>> rs) {
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
                Double.isNaN(num(r, "kv_read_per_step")) ? "" : bytes(num(r, "kv_read_per_step")),
                Double.isNaN(num(r, "kv_cold_bytes"))
                    ? ""
                    : bytes(num(r, "kv_cold_bytes")) + " / " + bytes(num(r, "kv_fetched_per_step")),
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
                  "KV read/step",
                  "cold / fetched/step",
                  "policy ms/step"),
              rows));
      sections.add(
          "Columns 'decode' cover only the positions scored by single-token decode steps, after"
              + " the eviction methods compressed the prefilled part. 'KV read/step': bytes of"
              + " keys and values a decode step attended over, mean over the steps (the whole cache"
              + " held, or what Quest and PQCache selected). With spill=true, 'KV bytes' is RAM"
              + " held and 'cold / fetched/step' the bytes in the spill file and those a decode step"
              + " fetched from it.");
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
              chartsDir(),
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

  static Map<String, double[][]> toSeries(Map<String, List<double[]>> pts) {
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
}
