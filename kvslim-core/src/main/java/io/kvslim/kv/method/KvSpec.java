package io.kvslim.kv.method;

import io.kvslim.calibrate.CalibrationProfile;
import java.nio.file.InvalidPathException;
import java.nio.file.Path;
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
 *   rule   := call ('+' call)* ('@' option)*
 *   option := 'layers=' A['-'B] | 'profile=' FILE
 *   call   := name [':' key '=' value (',' key '=' value)*]
 * </pre>
 *
 * Methods joined by {@code +} compose (e.g. an eviction policy and a storage format); a rule scoped
 * with {@code @layers} overrides earlier rules on those layers. {@code @profile=FILE} gives the
 * rule's methods that need calibration ({@link KvMethod.Need#CALIBRATION}: {@code razor}, {@code
 * duo}) the profile {@code kvslim calibrate} wrote; it is read and checked when parsing (the path
 * may not contain {@code ;} or {@code @}), and checked against the model when the caches are built.
 * Every name, key, value and file is checked when parsing, before any work starts.
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
    String profilePath = null;
    int at = ruleText.indexOf('@');
    if (at >= 0) {
      String options = ruleText.substring(at + 1);
      ruleText = ruleText.substring(0, at).trim();
      boolean scoped = false;
      for (String option : options.split("@", -1)) {
        String scope = option.trim();
        if (scope.startsWith("layers=") && !scoped) {
          int[] range = layerRange(scope.substring("layers=".length()).trim(), whole);
          first = range[0];
          last = range[1];
          scoped = true;
        } else if (scope.startsWith("profile=") && profilePath == null) {
          profilePath = scope.substring("profile=".length()).trim();
          if (profilePath.isEmpty()) {
            throw new KvSpecException(
                "empty @profile= in KV spec '" + whole + "' (expected @profile=FILE)");
          }
        } else if (scope.startsWith("layers=") || scope.startsWith("profile=")) {
          throw new KvSpecException(
              "@"
                  + scope.substring(0, scope.indexOf('='))
                  + " given twice in KV spec '"
                  + whole
                  + "'");
        } else {
          throw new KvSpecException(
              "bad scope '@"
                  + scope
                  + "' in KV spec '"
                  + whole
                  + "' (accepted: @layers=A-B, @profile=FILE)");
        }
      }
    }
    List<MethodCall> calls = new ArrayList<>();
    for (String callText : ruleText.split("\\+", -1)) {
      calls.add(parseCall(callText.trim(), whole));
    }
    checkAllocators(calls, whole);
    return new Rule(List.copyOf(withProfile(calls, profilePath, whole)), first, last);
  }

  /**
   * At most one per-layer allocator per rule, and only beside an eviction method that spends its
   * budgets (SnapKV, Ada-KV) or no eviction method (then SnapKV's defaults select).
   */
  private static void checkAllocators(List<MethodCall> calls, String whole) {
    MethodCall allocator = null;
    for (MethodCall c : calls) {
      if (c.method().family() != KvMethod.Family.ALLOCATOR) {
        continue;
      }
      if (allocator != null) {
        throw new KvSpecException(
            "two budget allocators in one rule ('"
                + allocator.name()
                + "' and '"
                + c.name()
                + "') of KV spec '"
                + whole
                + "'; use one");
      }
      allocator = c;
    }
    if (allocator == null) {
      return;
    }
    for (MethodCall c : calls) {
      if (c.method().takesAllocator()
          && c.params().get("chunk") instanceof Number n
          && n.intValue() > 0) {
        throw new KvSpecException(
            allocator.name()
                + " splits the budget over layers once the whole prompt is in; it does not"
                + " combine with "
                + c.name()
                + ":chunk="
                + n.intValue());
      }
      if (c.method().family() == KvMethod.Family.EVICTION && !c.method().takesAllocator()) {
        throw new KvSpecException(
            allocator.name()
                + " splits a budget over layers for snapkv or adakv, not for '"
                + c.name()
                + "' (e.g. '"
                + allocator.name()
                + " + snapkv:budget=25%')");
      }
    }
  }

  private static int[] layerRange(String range, String whole) {
    int first;
    int last;
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
    return new int[] {first, last};
  }

  /**
   * The calls with the rule's profile read from {@code path}: a method that needs one and has none
   * is refused, and so is a profile no method of the rule uses.
   */
  private static List<MethodCall> withProfile(List<MethodCall> calls, String path, String whole) {
    boolean needed = false;
    for (MethodCall c : calls) {
      if (c.method().needs().contains(KvMethod.Need.CALIBRATION)) {
        needed = true;
        if (path == null) {
          throw new KvSpecException(missingProfile(c.method()));
        }
      }
    }
    if (path == null) {
      return calls;
    }
    if (!needed) {
      throw new KvSpecException(
          "@profile="
              + path
              + " in KV spec '"
              + whole
              + "' is given to no method that uses a calibration profile");
    }
    CalibrationProfile profile;
    try {
      profile = CalibrationProfile.read(Path.of(path));
    } catch (InvalidPathException e) {
      throw new KvSpecException("@profile=" + path + " is not a file path");
    } catch (CalibrationProfile.ProfileException e) {
      throw new KvSpecException(e.getMessage());
    }
    List<MethodCall> out = new ArrayList<>();
    for (MethodCall c : calls) {
      boolean uses = c.method().needs().contains(KvMethod.Need.CALIBRATION);
      out.add(uses ? c.withProfile(profile) : c);
    }
    return out;
  }

  /**
   * The sentence that refuses {@code method} without a profile, naming the command making one and
   * the commands' {@code --calib TEXT} that calibrates on the fly.
   */
  static String missingProfile(KvMethod method) {
    return method.name()
        + " needs a calibration profile: make one with 'kvslim calibrate -f TEXT --out"
        + " profile.json' and add '@profile=profile.json' to the spec, or pass '--calib TEXT' to"
        + " calibrate on that text on the fly";
  }

  /**
   * {@code spec} with {@code @profile=FILE} added to every rule that has a method needing a
   * calibration profile and names none (the benchmark suites calibrate once and use this).
   */
  public static String withProfile(String spec, Path profile) {
    StringBuilder out = new StringBuilder();
    String[] rules = spec.split(";", -1);
    for (int i = 0; i < rules.length; i++) {
      String rule = rules[i];
      int at = rule.indexOf('@');
      String calls = at < 0 ? rule : rule.substring(0, at);
      boolean needs = false;
      for (String call : calls.split("\\+", -1)) {
        int colon = call.indexOf(':');
        KvMethod m = KvMethods.get((colon < 0 ? call : call.substring(0, colon)).trim());
        needs |= m != null && m.needs().contains(KvMethod.Need.CALIBRATION);
      }
      out.append(i == 0 ? "" : ";").append(rule);
      if (needs && !rule.contains("@profile=")) {
        out.append("@profile=").append(profile);
      }
    }
    return out.toString();
  }

  /** Whether some rule of {@code spec} has a method that needs a profile and names none. */
  public static boolean lacksProfile(String spec) {
    return !withProfile(spec, Path.of("x")).equals(spec);
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
