package io.kvslim.bench;

import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.method.MethodCall;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;

/**
 * {@code DIR/results.json}: the environment and one record per model × spec × task × setting. Saved
 * after every added batch of records (atomically), so an interrupted run can {@code --resume}.
 */
public final class ResultStore {
  /** Fields that identify a record; a second record with the same values replaces the first. */
  public static final List<String> KEY_FIELDS =
      List.of("model", "peer", "spec", "task", "variant", "length", "depth", "batch");

  private static final ObjectMapper MAPPER =
      new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

  private final Path file;
  private Map<String, Object> environment = new LinkedHashMap<>();
  private final Map<String, Map<String, Object>> records = new LinkedHashMap<>();

  private ResultStore(Path file) {
    this.file = file;
  }

  /** The store in {@code dir}, with the records already there (when {@code keep}) or empty. */
  public static ResultStore open(Path dir, boolean keep) {
    ResultStore s = new ResultStore(dir.resolve("results.json"));
    if (keep && Files.isRegularFile(s.file)) {
      try {
        Map<String, Object> root =
            MAPPER.readValue(s.file.toFile(), new TypeReference<Map<String, Object>>() {});
        @SuppressWarnings("unchecked")
        Map<String, Object> env = (Map<String, Object>) root.get("environment");
        if (env != null) {
          s.environment = env;
        }
        @SuppressWarnings("unchecked")
        List<Map<String, Object>> rs = (List<Map<String, Object>>) root.get("records");
        if (rs != null) {
          for (Map<String, Object> r : rs) {
            s.records.put(key(r), r);
          }
        }
      } catch (IOException | ClassCastException e) {
        throw new IllegalArgumentException(
            s.file
                + " is not a results file of kvslim bench: "
                + e.getMessage().lines().findFirst().orElse(""));
      }
    }
    return s;
  }

  /** The identity of a record: its key fields' values joined. */
  public static String key(Map<String, Object> r) {
    StringBuilder sb = new StringBuilder();
    for (String f : KEY_FIELDS) {
      Object v = r.get(f);
      if (v instanceof Number n) {
        v = n.doubleValue();
      }
      sb.append(Objects.toString(v, "")).append('|');
    }
    return sb.toString();
  }

  /** A record's identity fields; other fields are added by the caller. */
  public static Map<String, Object> record(
      String model, String spec, String task, String variant, Integer length, Double depth) {
    Map<String, Object> r = new LinkedHashMap<>();
    r.put("model", model);
    r.put("peer", "kvslim");
    r.put("spec", spec);
    r.put("family", spec == null ? null : family(spec));
    r.put("task", task);
    r.put("variant", variant == null ? "" : variant);
    r.put("length", length);
    r.put("depth", depth);
    r.put("batch", null);
    return r;
  }

  /** The method family of a spec: its method names without parameters ("snapkv+q8_0"). */
  public static String family(String specText) {
    try {
      KvSpec spec = KvSpec.parse(specText);
      Set<String> rules = new LinkedHashSet<>();
      for (KvSpec.Rule r : spec.rules()) {
        List<String> names = new ArrayList<>();
        for (MethodCall c : r.calls()) {
          names.add(c.name());
        }
        rules.add(String.join("+", names));
      }
      return String.join(";", rules);
    } catch (IllegalArgumentException e) {
      return specText; // a peer's own name (llama.cpp's "q8_0/q8_0")
    }
  }

  public synchronized boolean has(Map<String, Object> identity) {
    return records.containsKey(key(identity));
  }

  public synchronized void setEnvironment(Map<String, Object> env) {
    this.environment = new LinkedHashMap<>(env);
  }

  public synchronized Map<String, Object> environment() {
    return environment;
  }

  /** Adds (or replaces) records and saves the file. */
  public synchronized void add(List<Map<String, Object>> rs) {
    for (Map<String, Object> r : rs) {
      records.put(key(r), r);
    }
    save();
  }

  public synchronized List<Map<String, Object>> records() {
    return new ArrayList<>(records.values());
  }

  public synchronized void save() {
    Map<String, Object> root = new LinkedHashMap<>();
    root.put("format", "kvslim-bench-results/1");
    root.put("environment", environment);
    root.put("records", new ArrayList<>(records.values()));
    try {
      Files.createDirectories(file.toAbsolutePath().getParent());
      Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
      MAPPER.writeValue(tmp.toFile(), root);
      Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot write " + file + ": " + e.getMessage(), e);
    }
  }
}
