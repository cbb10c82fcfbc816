package io.kvslim.bench;

import io.kvslim.model.Numerics;
import java.io.IOException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** What every bench command shares: the fields stamped on records, and writing the reports. */
public final class BenchOutput {
  private BenchOutput() {}

  /**
   * Model hash, threads, numerics and the environment's CPU, JVM and commit, added to every record.
   */
  public static Map<String, Object> stamp(
      Path model, int threads, Numerics numerics, Map<String, Object> env) {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("model_sha256", Environment.sha256(model));
    m.put("threads", threads);
    m.put("numerics", numerics.name());
    m.put("cpu", env.get("cpu"));
    m.put("jvm", env.get("jvm"));
    m.put("commit", env.get("commit"));
    return m;
  }

  /** results.csv, report.md, report.html and the charts from the store; prints where they are. */
  public static List<Charts.Saved> writeReports(Path dir, ResultStore store) throws IOException {
    List<Charts.Saved> charts = new ReportWriter(dir, store).write();
    System.out.println(
        "wrote "
            + dir.resolve("report.md")
            + ", report.html, results.json, results.csv and "
            + charts.size()
            + " charts");
    return charts;
  }
}
