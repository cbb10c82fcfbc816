package io.kvslim.kv.method;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A parsed KV compression spec, the one language shared by the CLI, the benchmarks and the server
 * (DESIGN.md §3.4):
 *
 * <pre>
 *   spec   := rule (';' rule)*
 *   rule   := call ('+' call)* ['@layers=' A['-'B]]
 *   call   := name [':' key '=' value (',' key '=' value)*]
 * </pre>
 *
 * Methods joined by {@code +} compose (e.g. an eviction policy and a storage format); a rule scoped
 * with {@code @layers} overrides earlier rules on those layers. Every name, key and value is
 * checked when parsing, before any work starts.
 */
public record KvSpec(String text, List<Rule> rules) {

  /** Methods that apply to a range of layers (all layers when {@code firstLayer < 0}). */
  public record Rule(List<MethodCall> calls, int firstLayer, int lastLayer) {
    public boolean covers(int layer) {
      return firstLayer < 0 || (layer >= firstLayer && layer <= lastLayer);
    }
  }

  public static final KvSpec FULL = parse("full");

  public static KvSpec parse(String text) {
    if (text == null || text.isBlank()) {
      throw new KvSpecException("empty KV spec (try 'full', or see 'kvslim kv-methods')");
    }
    List<Rule> rules = new ArrayList<>();
    for (String ruleText : text.split(";", -1)) {
      rules.add(parseRule(ruleText.trim(), text));
    }
    return new KvSpec(text.trim(), List.copyOf(rules));
  }

  private static Rule parseRule(String ruleText, String whole) {
    if (ruleText.isEmpty()) {
      throw new KvSpecException("empty rule in KV spec '" + whole + "'");
    }
    int first = -1;
    int last = -1;
    int at = ruleText.lastIndexOf('@');
    if (at >= 0) {
      String scope = ruleText.substring(at + 1).trim();
      ruleText = ruleText.substring(0, at).trim();
      if (!scope.startsWith("layers=")) {
        throw new KvSpecException(
            "bad scope '@" + scope + "' in KV spec '" + whole + "' (accepted: @layers=A-B)");
      }
      String range = scope.substring("layers=".length()).trim();
      try {
        int dash = range.indexOf('-');
        first = Integer.parseInt((dash < 0 ? range : range.substring(0, dash)).trim());
        last = dash < 0 ? first : Integer.parseInt(range.substring(dash + 1).trim());
      } catch (NumberFormatException e) {
        throw new KvSpecException(
            "bad layer range '" + range + "' in KV spec '" + whole + "' (expected A-B, e.g. 8-15)");
      }
      if (first < 0 || last < first) {
        throw new KvSpecException(
            "bad layer range '" + range + "' in KV spec '" + whole + "' (need 0 <= A <= B)");
      }
    }
    List<MethodCall> calls = new ArrayList<>();
    for (String callText : ruleText.split("\\+", -1)) {
      calls.add(parseCall(callText.trim(), whole));
    }
    return new Rule(List.copyOf(calls), first, last);
  }

  private static MethodCall parseCall(String callText, String whole) {
    if (callText.isEmpty()) {
      throw new KvSpecException("empty method in KV spec '" + whole + "'");
    }
    int colon = callText.indexOf(':');
    String name = (colon < 0 ? callText : callText.substring(0, colon)).trim();
    KvMethod def = KvMethods.get(name);
    if (def == null) {
      throw new KvSpecException(
          "unknown KV method '" + name + "' (known: " + String.join(", ", KvMethods.names()) + ")");
    }
    Map<String, String> raw = new LinkedHashMap<>();
    if (colon >= 0) {
      String params = callText.substring(colon + 1).trim();
      if (!params.isEmpty()) {
        for (String kv : params.split(",", -1)) {
          int eq = kv.indexOf('=');
          if (eq <= 0) {
            throw new KvSpecException(
                "bad parameter '"
                    + kv.trim()
                    + "' for method '"
                    + name
                    + "' (expected key=value; accepted keys: "
                    + MethodCall.acceptedKeys(def)
                    + ")");
          }
          String key = kv.substring(0, eq).trim();
          if (raw.put(key, kv.substring(eq + 1).trim()) != null) {
            throw new KvSpecException("key '" + key + "' given twice for method '" + name + "'");
          }
        }
      }
    }
    return MethodCall.bind(def, raw);
  }

  /** The calls that apply to {@code layer}: those of the last rule covering it. */
  public List<MethodCall> callsFor(int layer) {
    List<MethodCall> out = List.of();
    for (Rule r : rules) {
      if (r.covers(layer)) {
        out = r.calls();
      }
    }
    return out;
  }

  /** Checks the layer ranges against a model with {@code layers} layers. */
  public void checkLayers(int layers) {
    for (Rule r : rules) {
      if (r.firstLayer() >= 0 && r.lastLayer() >= layers) {
        throw new KvSpecException(
            "KV spec '"
                + text
                + "' names layer "
                + r.lastLayer()
                + " but the model has "
                + layers
                + " layers (0-"
                + (layers - 1)
                + ")");
      }
    }
  }

  @Override
  public String toString() {
    return text;
  }
}
