package io.kvslim.bench;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * The report's code-retrieval section: where the haystacks came from, then per model and task a
 * table of correct answers per prompt length and needle depth, the full cache's row first (a
 * compressed cache's accuracy means something only where the full cache answers right).
 */
final class CodeRetrievalReport {
  private CodeRetrievalReport() {}

  /** Text and tables ({@link ReportWriter.Table}) for the pycode records; empty when none. */
  static List<Object> sections(List<Map<String, Object>> records) {
    List<Map<String, Object>> rs = new ArrayList<>();
    Set<String> haystacks = new TreeSet<>();
    for (Map<String, Object> r : records) {
      if ("kvslim".equals(r.get("peer")) && "pycode".equals(r.get("task"))) {
        rs.add(r);
        if (r.get("haystack") != null) {
          haystacks.add(r.get("haystack").toString());
        }
      }
    }
    List<Object> out = new ArrayList<>();
    if (rs.isEmpty()) {
      return out;
    }
    out.add(
        "Code retrieval (pycode:assign, pycode:vt, pycode:arg): the haystacks are top-level modules"
            + " of the Python standard library, read at run time from "
            + (haystacks.isEmpty() ? "/usr/lib/python3.*/" : String.join(", ", haystacks))
            + " (code the bundled pycoder model did not train on), with needles inserted as whole"
            + " lines between top-level statements. The tables give correct answers / cases per"
            + " prompt length and needle depth, the full cache first: a setting tells something"
            + " about a compressed cache only where the full cache answers right.");
    Map<String, List<Map<String, Object>>> groups = new LinkedHashMap<>();
    for (Map<String, Object> r : rs) {
      groups
          .computeIfAbsent(r.get("model") + "\u0000" + r.get("variant"), k -> new ArrayList<>())
          .add(r);
    }
    for (List<Map<String, Object>> g : groups.values()) {
      out.add(table(g));
    }
    return out;
  }

  private static ReportWriter.Table table(List<Map<String, Object>> rs) {
    TreeSet<String> settings =
        new TreeSet<>(
            Comparator.comparingInt((String s) -> Integer.parseInt(s.substring(0, s.indexOf('/'))))
                .thenComparingDouble(s -> Double.parseDouble(s.substring(s.indexOf('/') + 1))));
    Map<String, Map<String, int[]>> bySpec = new LinkedHashMap<>();
    Map<String, Double> ratio = new LinkedHashMap<>();
    for (Map<String, Object> r : rs) {
      String setting = setting(r);
      settings.add(setting);
      String spec = ReportWriter.str(r, "spec");
      int n = (int) ReportWriter.num(r, "n");
      int correct = (int) Math.round(ReportWriter.num(r, "accuracy") * n);
      int[] cell = bySpec.computeIfAbsent(spec, k -> new LinkedHashMap<>()).get(setting);
      if (cell == null) {
        bySpec.get(spec).put(setting, new int[] {correct, n});
      } else {
        cell[0] += correct;
        cell[1] += n;
      }
      ratio.putIfAbsent(spec, ReportWriter.num(r, "compression_ratio"));
    }
    List<String> specs = new ArrayList<>(bySpec.keySet());
    specs.sort(
        Comparator.<String, Integer>comparing(s -> s.equals("full") ? 0 : 1)
            .thenComparingDouble(s -> Double.isNaN(ratio.get(s)) ? Double.MAX_VALUE : ratio.get(s))
            .thenComparing(s -> s));
    List<String> header = new ArrayList<>(List.of("spec"));
    for (String s : settings) {
      header.add("L=" + s.replace("/", " d="));
    }
    header.add("all");
    List<List<String>> rows = new ArrayList<>();
    for (String spec : specs) {
      List<String> row = new ArrayList<>(List.of(spec));
      int c = 0;
      int n = 0;
      for (String s : settings) {
        int[] cell = bySpec.get(spec).get(s);
        row.add(cell == null ? "–" : cell[0] + "/" + cell[1]);
        if (cell != null) {
          c += cell[0];
          n += cell[1];
        }
      }
      row.add(c + "/" + n);
      rows.add(row);
    }
    Map<String, Object> any = rs.get(0);
    return new ReportWriter.Table(
        "Code retrieval: pycode:"
            + ReportWriter.str(any, "variant")
            + " — "
            + ReportWriter.str(any, "model")
            + " (correct / cases per length L and depth d, full cache first)",
        header,
        rows);
  }

  private static String setting(Map<String, Object> r) {
    double d = ReportWriter.num(r, "depth");
    return (int) ReportWriter.num(r, "length")
        + "/"
        + (Double.isNaN(d) ? "0" : String.format(Locale.ROOT, "%s", stripZeros(d)));
  }

  private static String stripZeros(double d) {
    String s = String.format(Locale.ROOT, "%.4f", d);
    s = s.replaceAll("0+$", "");
    return s.endsWith(".") ? s + "0" : s;
  }
}
