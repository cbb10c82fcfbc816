package io.kvslim.bench;

import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Reads llama.cpp's own reports into records marked {@code "peer": "llama.cpp"}: the summary that
 * {@code llama-perplexity} prints (with or without {@code --kl-divergence}), the JSON lines of
 * {@code llama-bench -o jsonl}, and {@code llama-batched-bench}'s table or its {@code
 * --output-format jsonl} lines (prompt PP then TG decode steps for B sequences: kvslim's {@code
 * bench speed} at depth PP).
 */
public final class LlamaCppImport {
  private LlamaCppImport() {}

  private static final ObjectMapper MAPPER = new ObjectMapper();
  private static final String NUM = "(-?[0-9.]+(?:[eE][-+]?[0-9]+)?|nan|inf)";

  /** Records from one file's text; {@code source} names the file in the records. */
  public static List<Map<String, Object>> parse(String source, String text) {
    String t = text.strip();
    if (text.contains("{\"n_kv_max\"") || text.contains("S_TG t/s")) {
      return parseBatchedBench(source, text);
    }
    if (t.startsWith("{") || t.startsWith("[")) {
      return parseBench(source, t);
    }
    Map<String, Object> r = parsePerplexity(source, text);
    if (r == null) {
      throw new IllegalArgumentException(
          source
              + " is neither llama-perplexity output (no 'Final estimate' or 'Mean PPL' line),"
              + " llama-bench -o jsonl output nor llama-batched-bench output");
    }
    return List.of(r);
  }

  private static Double find(String text, String regex) {
    Matcher m = Pattern.compile(regex, Pattern.MULTILINE).matcher(text);
    Double last = null;
    while (m.find()) {
      last = toDouble(m.group(1));
    }
    return last;
  }

  private static String findText(String text, String regex) {
    Matcher m = Pattern.compile(regex, Pattern.MULTILINE).matcher(text);
    String last = null;
    while (m.find()) {
      last = m.group(1).strip();
    }
    return last;
  }

  private static Double toDouble(String s) {
    return switch (s.toLowerCase(Locale.ROOT)) {
      case "nan" -> Double.NaN;
      case "inf" -> Double.POSITIVE_INFINITY;
      default -> Double.parseDouble(s);
    };
  }

  /** The llama-perplexity summary, or null when the text has none. */
  static Map<String, Object> parsePerplexity(String source, String text) {
    Double ppl = find(text, "^Mean PPL\\(Q\\)\\s*:\\s*" + NUM);
    if (ppl == null) {
      ppl = find(text, "Final estimate: PPL = " + NUM);
    }
    if (ppl == null) {
      return null;
    }
    String model = findText(text, "llama_model_loader: loaded meta data .* from (\\S+)");
    if (model == null) {
      model = findText(text, "^\\s*general\\.name\\s+str\\s+=\\s+(.+)$");
    }
    String typeK = findText(text, "type_k\\s*=\\s*'?(\\w+)'?");
    String typeV = findText(text, "type_v\\s*=\\s*'?(\\w+)'?");
    if (typeK == null) {
      typeK = findText(text, "K \\((\\w+)\\)");
      typeV = findText(text, "V \\((\\w+)\\)");
    }
    Double ctx = find(text, "n_ctx\\s*=\\s*" + NUM);
    Map<String, Object> r =
        ResultStore.record(
            model == null ? "unknown" : model.replaceAll(".*/", ""),
            (typeK == null ? "f16" : typeK) + "/" + (typeV == null ? "f16" : typeV),
            "ppl",
            "",
            ctx == null ? null : ctx.intValue(),
            null);
    r.put("peer", "llama.cpp");
    r.put("family", "llama.cpp");
    r.put("source", source);
    r.put("ppl", ppl);
    put(r, "ppl_base", find(text, "^Mean PPL\\(base\\)\\s*:\\s*" + NUM));
    put(r, "ppl_ratio", find(text, "^Mean PPL\\(Q\\)/PPL\\(base\\)\\s*:\\s*" + NUM));
    put(r, "kld_mean", find(text, "^Mean\\s+KLD:\\s*" + NUM));
    put(r, "kld_max", find(text, "^Maximum KLD:\\s*" + NUM));
    put(r, "kld_p99", find(text, "^99\\.0%\\s+KLD:\\s*" + NUM));
    put(r, "kld_median", find(text, "^Median\\s+KLD:\\s*" + NUM));
    Double same = find(text, "^Same top p:\\s*" + NUM);
    put(r, "top1_agreement", same == null ? null : same / 100);
    return r;
  }

  private static void put(Map<String, Object> r, String key, Double v) {
    if (v != null) {
      r.put(key, v);
    }
  }

  /** llama-bench JSON lines (or a JSON array): one record per test line. */
  static List<Map<String, Object>> parseBench(String source, String text) {
    List<Map<String, Object>> lines = new ArrayList<>();
    try {
      if (text.startsWith("[")) {
        lines = MAPPER.readValue(text, new TypeReference<List<Map<String, Object>>>() {});
      } else {
        for (String line : text.split("\n")) {
          if (!line.isBlank()) {
            lines.add(MAPPER.readValue(line, new TypeReference<Map<String, Object>>() {}));
          }
        }
      }
    } catch (IOException e) {
      throw new IllegalArgumentException(
          source
              + " is not valid llama-bench JSON: "
              + e.getMessage().lines().findFirst().orElse(""));
    }
    List<Map<String, Object>> out = new ArrayList<>();
    for (Map<String, Object> l : lines) {
      int prompt = intOf(l.get("n_prompt"));
      int gen = intOf(l.get("n_gen"));
      int depth = intOf(l.get("n_depth"));
      String model =
          String.valueOf(l.getOrDefault("model_filename", "unknown")).replaceAll(".*/", "");
      String types = l.getOrDefault("type_k", "f16") + "/" + l.getOrDefault("type_v", "f16");
      Map<String, Object> r = ResultStore.record(model, types, "speed", "", prompt, (double) depth);
      r.put("peer", "llama.cpp");
      r.put("family", "llama.cpp");
      r.put("source", source);
      r.put("batch", 1);
      r.put("gen", gen);
      r.put("threads", l.get("n_threads"));
      r.put("cpu", l.get("cpu_info"));
      r.put("commit", l.get("build_commit"));
      Object avg = l.get("avg_ts");
      double ts = avg instanceof Number n ? n.doubleValue() : Double.NaN;
      Object sd = l.get("stddev_ts");
      if (prompt > 0 && gen == 0) {
        r.put("prefill_tokens_per_second", ts);
      } else if (gen > 0 && prompt == 0) {
        r.put("decode_tokens_per_second", ts);
      } else {
        r.put("tokens_per_second", ts);
      }
      if (sd instanceof Number n) {
        r.put("stddev_tokens_per_second", n.doubleValue());
      }
      Map<String, Object> ordered = new LinkedHashMap<>(r);
      // a prompt test and a generation test are different records (the key holds both sizes)
      ordered.put("variant", prompt > 0 && gen == 0 ? "pp" + prompt : "tg" + gen);
      out.add(ordered);
    }
    return out;
  }

  private static final Pattern BATCHED_ROW =
      Pattern.compile(
          "^\\|\\s*(\\d+)\\s*\\|\\s*(\\d+)\\s*\\|\\s*(\\d+)\\s*\\|\\s*(\\d+)\\s*\\|"
              + "\\s*NUM\\s*\\|\\s*NUM\\s*\\|\\s*NUM\\s*\\|\\s*NUM\\s*\\|".replace("NUM", NUM),
          Pattern.MULTILINE);

  /**
   * llama-batched-bench: one record per (PP, TG, B) row, at depth PP, its decode and prefill
   * tokens/s; the KV types from the loader's {@code K (f16)} line when the log is included.
   */
  static List<Map<String, Object>> parseBatchedBench(String source, String text) {
    List<Map<String, Object>> rows = new ArrayList<>();
    String model = findText(text, "llama_model_loader: loaded meta data .* from (\\S+)");
    String typeK = findText(text, "K \\((\\w+)\\)");
    String typeV = findText(text, "V \\((\\w+)\\)");
    Double threads = find(text, "n_threads = " + NUM);
    Double flash = find(text, "flash_attn = " + NUM);
    if (text.contains("{\"n_kv_max\"")) {
      for (String line : text.split("\n")) {
        if (!line.strip().startsWith("{")) {
          continue;
        }
        Map<String, Object> l;
        try {
          l = MAPPER.readValue(line, new TypeReference<Map<String, Object>>() {});
        } catch (IOException e) {
          throw new IllegalArgumentException(
              source
                  + " is not valid llama-batched-bench JSON: "
                  + e.getMessage().lines().findFirst().orElse(""));
        }
        rows.add(
            batched(
                source,
                model,
                typeK,
                typeV,
                intOf(l.get("pp")),
                intOf(l.get("tg")),
                intOf(l.get("pl")),
                doubleOf(l.get("speed_pp")),
                doubleOf(l.get("speed_tg")),
                l.get("n_threads"),
                l.get("flash_attn")));
      }
    } else {
      Matcher m = BATCHED_ROW.matcher(text);
      while (m.find()) {
        rows.add(
            batched(
                source,
                model,
                typeK,
                typeV,
                Integer.parseInt(m.group(1)),
                Integer.parseInt(m.group(2)),
                Integer.parseInt(m.group(3)),
                toDouble(m.group(6)),
                toDouble(m.group(8)),
                threads == null ? null : threads.intValue(),
                flash == null ? null : flash.intValue()));
      }
    }
    if (rows.isEmpty()) {
      throw new IllegalArgumentException(source + " has no llama-batched-bench result rows");
    }
    return rows;
  }

  private static Map<String, Object> batched(
      String source,
      String model,
      String typeK,
      String typeV,
      int pp,
      int tg,
      int pl,
      double prefill,
      double decode,
      Object threads,
      Object flash) {
    String types = (typeK == null ? "f16" : typeK) + "/" + (typeV == null ? "f16" : typeV);
    Map<String, Object> r =
        ResultStore.record(
            model == null ? "unknown" : model.replaceAll(".*/", ""),
            types,
            "speed",
            "batched-b" + pl + "-tg" + tg,
            pp,
            (double) pp);
    r.put("peer", "llama.cpp");
    r.put("family", "llama.cpp");
    r.put("source", source);
    r.put("batch", pl);
    r.put("gen", tg);
    r.put("threads", threads);
    r.put("flash_attn", flash);
    r.put("prefill_tokens_per_second", prefill);
    r.put("decode_tokens_per_second", decode);
    return r;
  }

  private static double doubleOf(Object o) {
    return o instanceof Number n ? n.doubleValue() : Double.NaN;
  }

  private static int intOf(Object o) {
    return o instanceof Number n ? n.intValue() : 0;
  }
}
