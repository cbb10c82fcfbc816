package io.kvslim.chat;

import com.hubspot.jinjava.interpret.JinjavaInterpreter;
import com.hubspot.jinjava.lib.filter.AdvancedFilter;
import com.hubspot.jinjava.lib.filter.Filter;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/** Jinja filters whose Jinjava versions differ from what Hugging Face chat templates expect. */
final class PyFilters {
  private PyFilters() {}

  /**
   * {@code tojson} as transformers overrides it: Python's {@code json.dumps(x, ensure_ascii=False,
   * indent=None, separators=None, sort_keys=False)} with those four options as arguments. Without
   * indent items are separated by {@code ", "} and keys by {@code ": "}; with one by {@code ","}
   * and a new line. Jinja's own filter (and Jinjava's) writes compact JSON instead.
   */
  static final class ToJson implements AdvancedFilter {
    @Override
    public String getName() {
      return "tojson";
    }

    @Override
    public Object filter(
        Object var, JinjavaInterpreter interpreter, Object[] args, Map<String, Object> kwargs) {
      boolean ensureAscii = truthy(option(args, kwargs, 0, "ensure_ascii", false));
      Object indentArg = option(args, kwargs, 1, "indent", null);
      Object separators = option(args, kwargs, 2, "separators", null);
      boolean sortKeys = truthy(option(args, kwargs, 3, "sort_keys", false));
      String indent = null;
      if (indentArg instanceof Number n) {
        indent = " ".repeat(Math.max(0, n.intValue()));
      } else if (indentArg != null) {
        indent = indentArg.toString();
      }
      String item = indent == null ? ", " : ",";
      String key = ": ";
      if (separators instanceof List<?> seps && seps.size() == 2) {
        item = String.valueOf(seps.get(0));
        key = String.valueOf(seps.get(1));
      }
      StringBuilder sb = new StringBuilder();
      new Json(ensureAscii, indent, item, key, sortKeys).write(sb, var, 0);
      return sb.toString();
    }

    private static Object option(
        Object[] args, Map<String, Object> kwargs, int i, String name, Object dflt) {
      if (kwargs != null && kwargs.containsKey(name)) {
        return kwargs.get(name);
      }
      return args != null && args.length > i && args[i] != null ? args[i] : dflt;
    }

    private static boolean truthy(Object o) {
      return o instanceof Boolean b ? b : o != null && Boolean.parseBoolean(o.toString());
    }
  }

  /** Python's {@code json.dumps} layout over Java maps, lists, strings, numbers and booleans. */
  private record Json(
      boolean ensureAscii, String indent, String item, String key, boolean sortKeys) {
    void write(StringBuilder sb, Object v, int depth) {
      switch (v) {
        case null -> sb.append("null");
        case Boolean b -> sb.append(b ? "true" : "false");
        case Integer i -> sb.append(i);
        case Long l -> sb.append(l);
        case Short s -> sb.append(s);
        case Double d -> sb.append(number(d));
        case Float f -> sb.append(number(f.doubleValue()));
        case Number n -> sb.append(n);
        case Map<?, ?> m -> {
          List<Map.Entry<?, ?>> entries = new ArrayList<>(m.entrySet());
          if (sortKeys) {
            entries.sort(
                (a, b) -> String.valueOf(a.getKey()).compareTo(String.valueOf(b.getKey())));
          }
          open(sb, '{');
          for (int i = 0; i < entries.size(); i++) {
            separate(sb, i, depth + 1);
            string(sb, String.valueOf(entries.get(i).getKey()));
            sb.append(key);
            write(sb, entries.get(i).getValue(), depth + 1);
          }
          close(sb, '}', entries.isEmpty(), depth);
        }
        case Iterable<?> it -> {
          List<Object> items = new ArrayList<>();
          it.forEach(items::add);
          open(sb, '[');
          for (int i = 0; i < items.size(); i++) {
            separate(sb, i, depth + 1);
            write(sb, items.get(i), depth + 1);
          }
          close(sb, ']', items.isEmpty(), depth);
        }
        default -> string(sb, v.toString());
      }
    }

    private void open(StringBuilder sb, char c) {
      sb.append(c);
    }

    private void separate(StringBuilder sb, int i, int depth) {
      if (i > 0) {
        sb.append(item);
      }
      if (indent != null) {
        sb.append('\n').append(indent.repeat(depth));
      }
    }

    private void close(StringBuilder sb, char c, boolean empty, int depth) {
      if (indent != null && !empty) {
        sb.append('\n').append(indent.repeat(depth));
      }
      sb.append(c);
    }

    /** Python's float repr for the common cases: integral values keep ".0". */
    private static String number(double d) {
      if (Double.isNaN(d)) {
        return "NaN";
      }
      if (Double.isInfinite(d)) {
        return d > 0 ? "Infinity" : "-Infinity";
      }
      if (d == Math.rint(d) && Math.abs(d) < 1e16) {
        return String.format(Locale.ROOT, "%.1f", d);
      }
      return Double.toString(d).replace("E", "e");
    }

    private void string(StringBuilder sb, String s) {
      sb.append('"');
      for (int i = 0; i < s.length(); i++) {
        char c = s.charAt(i);
        switch (c) {
          case '"' -> sb.append("\\\"");
          case '\\' -> sb.append("\\\\");
          case '\n' -> sb.append("\\n");
          case '\r' -> sb.append("\\r");
          case '\t' -> sb.append("\\t");
          case '\b' -> sb.append("\\b");
          case '\f' -> sb.append("\\f");
          default -> {
            if (c < 0x20 || (ensureAscii && c > 0x7e)) {
              sb.append(String.format(Locale.ROOT, "\\u%04x", (int) c));
            } else {
              sb.append(c);
            }
          }
        }
      }
      sb.append('"');
    }
  }

  /** {@code trim(chars=None)}: Python's {@code str.strip}, not Java's control-character trim. */
  static final class Trim implements Filter {
    @Override
    public String getName() {
      return "trim";
    }

    @Override
    public Object filter(Object var, JinjavaInterpreter interpreter, String... args) {
      String chars = args != null && args.length > 0 ? args[0] : null;
      return PyStringMethods.strip(var == null ? "" : var.toString(), chars, true, true);
    }
  }
}
