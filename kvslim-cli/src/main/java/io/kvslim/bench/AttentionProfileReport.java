package io.kvslim.bench;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import io.kvslim.calibrate.AttentionProfile;
import io.kvslim.calibrate.AttentionProfile.Head;
import io.kvslim.calibrate.AttentionProfile.Result;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.ToDoubleFunction;

/**
 * Writes an {@link AttentionProfile} as {@code attention.json} (every head's figures), {@code
 * attention.md} (per layer: means over heads, the extreme heads; the model's counts of local and
 * sink heads) and heat maps of the sink and local masses per layer and head.
 */
public final class AttentionProfileReport {
  private AttentionProfileReport() {}

  /** Writes the files into {@code dir}; returns the Markdown. */
  public static String write(Path dir, String model, String textName, Result r) throws IOException {
    Files.createDirectories(dir);
    Map<String, Object> json = new LinkedHashMap<>();
    json.put("model", model);
    json.put("text", textName);
    json.put("tokens", r.tokens());
    json.put("from", r.from());
    json.put("queries_per_head", r.queries());
    json.put("sink_tokens", AttentionProfile.SINK_TOKENS);
    json.put("near_tokens", AttentionProfile.NEAR_TOKENS);
    json.put("local_tokens", AttentionProfile.LOCAL_TOKENS);
    List<Map<String, Object>> heads = new ArrayList<>();
    for (int l = 0; l < r.heads().length; l++) {
      for (int h = 0; h < r.heads()[l].length; h++) {
        Head x = r.heads()[l][h];
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("layer", l);
        m.put("head", h);
        m.put("bos", x.bos());
        m.put("sink", x.sink());
        m.put("near", x.near());
        m.put("local", x.local());
        m.put("rest", x.rest());
        m.put("distance", x.distance());
        heads.add(m);
      }
    }
    json.put("heads", heads);
    new ObjectMapper()
        .enable(SerializationFeature.INDENT_OUTPUT)
        .writeValue(dir.resolve("attention.json").toFile(), json);
    String md = markdown(model, textName, r);
    Files.writeString(dir.resolve("attention.md"), md);
    List<String> columns = new ArrayList<>();
    for (int h = 0; h < r.heads()[0].length; h++) {
      columns.add("h" + h);
    }
    List<String> rows = new ArrayList<>();
    for (int l = 0; l < r.heads().length; l++) {
      rows.add("L" + l);
    }
    Charts.save(
        Charts.heatMap(
            "Mass on the first " + AttentionProfile.SINK_TOKENS + " tokens (attention sink)",
            "query head",
            "layer",
            columns,
            rows,
            grid(r, Head::sink),
            "sink mass"),
        dir,
        "sink",
        "sink mass per layer and head");
    Charts.save(
        Charts.heatMap(
            "Mass on the last " + AttentionProfile.LOCAL_TOKENS + " tokens (locality)",
            "query head",
            "layer",
            columns,
            rows,
            grid(r, Head::local),
            "local mass"),
        dir,
        "local",
        "local mass per layer and head");
    return md;
  }

  private static double[][] grid(Result r, ToDoubleFunction<Head> f) {
    double[][] g = new double[r.heads().length][];
    for (int l = 0; l < g.length; l++) {
      g[l] = new double[r.heads()[l].length];
      for (int h = 0; h < g[l].length; h++) {
        g[l][h] = Math.round(100 * f.applyAsDouble(r.heads()[l][h])) / 100.0; // shown in cells
      }
    }
    return g;
  }

  /** The Markdown report. */
  static String markdown(String model, String textName, Result r) {
    StringBuilder sb = new StringBuilder();
    int total = r.heads().length * r.heads()[0].length;
    sb.append("# Attention profile: ").append(model).append("\n\n");
    sb.append(
        String.format(
            Locale.ROOT,
            "%d tokens of %s, full cache; each figure is the mean over the %d queries at positions"
                + " %d..%d. sink = mass on the first %d tokens (bos: on position 0), near/local ="
                + " mass on the last %d/%d tokens (the query's own included), rest = mass on"
                + " neither sink nor local window (what a %d+%d StreamingLLM cache drops),"
                + " distance = mean tokens back.%n%n",
            r.tokens(),
            textName,
            r.queries(),
            r.from(),
            r.tokens() - 1,
            AttentionProfile.SINK_TOKENS,
            AttentionProfile.NEAR_TOKENS,
            AttentionProfile.LOCAL_TOKENS,
            AttentionProfile.SINK_TOKENS,
            AttentionProfile.LOCAL_TOKENS));
    sb.append(
        String.format(
            Locale.ROOT,
            "Heads: %d of %d local (local ≥ 0.9), %d sink heads (sink ≥ 0.5), %d that read far"
                + " (rest ≥ 0.25).%n%n",
            r.count(h -> h.local() >= 0.9),
            total,
            r.count(h -> h.sink() >= 0.5),
            r.count(h -> h.rest() >= 0.25)));
    sb.append("## Per layer (mean over heads; min–max over heads)\n\n");
    sb.append("| layer | bos | sink | near | local | rest | distance |\n");
    sb.append("|---|---|---|---|---|---|---|\n");
    for (int l = 0; l < r.heads().length; l++) {
      sb.append("| ").append(l);
      for (ToDoubleFunction<Head> f :
          List.<ToDoubleFunction<Head>>of(
              Head::bos, Head::sink, Head::near, Head::local, Head::rest, Head::distance)) {
        double min = Double.POSITIVE_INFINITY;
        double max = Double.NEGATIVE_INFINITY;
        for (Head h : r.heads()[l]) {
          min = Math.min(min, f.applyAsDouble(h));
          max = Math.max(max, f.applyAsDouble(h));
        }
        sb.append(
            String.format(
                Locale.ROOT, " | %s (%s–%s)", fmt(r.layerMean(l, f)), fmt(min), fmt(max)));
      }
      sb.append(" |\n");
    }
    sb.append("\n## Per head\n\n");
    sb.append("| layer | head | bos | sink | near | local | rest | distance |\n");
    sb.append("|---|---|---|---|---|---|---|---|\n");
    for (int l = 0; l < r.heads().length; l++) {
      for (int h = 0; h < r.heads()[l].length; h++) {
        Head x = r.heads()[l][h];
        sb.append(
            String.format(
                Locale.ROOT,
                "| %d | %d | %s | %s | %s | %s | %s | %s |%n",
                l,
                h,
                fmt(x.bos()),
                fmt(x.sink()),
                fmt(x.near()),
                fmt(x.local()),
                fmt(x.rest()),
                fmt(x.distance())));
      }
    }
    sb.append("\n![sink mass](sink.png) ![local mass](local.png)\n");
    return sb.toString();
  }

  private static String fmt(double v) {
    return v >= 10 ? String.format(Locale.ROOT, "%.1f", v) : String.format(Locale.ROOT, "%.3f", v);
  }
}
