package io.kvslim.kv.method;

import java.util.List;
import java.util.Locale;

/**
 * One key a method accepts: its type, default (null: unset), one-line description, the values it
 * allows (a choice's values, a number's closed range) — the spec parser checks every value against
 * them and {@code kvslim kv-methods} prints them.
 */
public record Knob(
    String name,
    Type type,
    String defaultValue,
    String description,
    List<String> choices,
    Double min,
    Double max) {
  public enum Type {
    INT,
    FLOAT,
    BUDGET,
    CHOICE,
    BOOL;

    public String label() {
      return name().toLowerCase(Locale.ROOT);
    }
  }

  public static Knob integer(String name, String def, String description) {
    return new Knob(name, Type.INT, def, description, List.of(), null, null);
  }

  public static Knob number(String name, String def, String description) {
    return new Knob(name, Type.FLOAT, def, description, List.of(), null, null);
  }

  /** A budget: tokens per (layer, KV head), a ratio of the prompt, or bytes ({@link Budget}). */
  public static Knob budget(String name, String def, String description) {
    return new Knob(name, Type.BUDGET, def, description, List.of(), null, null);
  }

  public static Knob choice(String name, String def, String description, String... choices) {
    return new Knob(name, Type.CHOICE, def, description, List.of(choices), null, null);
  }

  public static Knob bool(String name, String def, String description) {
    return new Knob(name, Type.BOOL, def, description, List.of("true", "false"), null, null);
  }

  /** This knob with values below {@code min} refused. */
  public Knob atLeast(double min) {
    return new Knob(name, type, defaultValue, description, choices, min, max);
  }

  /** This knob with values outside {@code [min, max]} refused. */
  public Knob between(double min, double max) {
    return new Knob(name, type, defaultValue, description, choices, min, max);
  }

  /** The accepted values in words, e.g. {@code >= 1}, {@code [0, 1]}, {@code avg|max}; or "". */
  public String range() {
    if (!choices.isEmpty()) {
      return String.join("|", choices);
    }
    if (min != null && max != null) {
      return "[" + fmt(min) + ", " + fmt(max) + "]";
    }
    if (min != null) {
      return ">= " + fmt(min);
    }
    if (max != null) {
      return "<= " + fmt(max);
    }
    return type == Type.BUDGET ? "tokens, ratio or bytes" : "";
  }

  private static String fmt(double v) {
    return v == Math.rint(v) ? Long.toString((long) v) : Double.toString(v);
  }

  /** Parses and range-checks {@code value}; the error names the method, key and value. */
  Object parse(String method, String value) {
    String where = method + ":" + name + "=" + value;
    Object parsed;
    try {
      parsed =
          switch (type) {
            case INT -> Integer.parseInt(value.trim());
            case FLOAT -> {
              double d = Double.parseDouble(value.trim());
              if (!Double.isFinite(d)) {
                throw new NumberFormatException();
              }
              yield d;
            }
            case BUDGET -> Budget.parse(value);
            case BOOL -> {
              if (!value.equals("true") && !value.equals("false")) {
                throw new KvSpecException("'" + where + "': expected true or false");
              }
              yield Boolean.parseBoolean(value);
            }
            case CHOICE -> {
              if (!choices.contains(value)) {
                throw new KvSpecException(
                    "'" + where + "': expected one of " + String.join(", ", choices));
              }
              yield value;
            }
          };
    } catch (NumberFormatException e) {
      throw new KvSpecException(
          "'" + where + "': expected " + (type == Type.INT ? "an integer" : "a number"));
    } catch (KvSpecException e) {
      throw e;
    } catch (IllegalArgumentException e) {
      throw new KvSpecException("'" + where + "': " + e.getMessage());
    }
    if (parsed instanceof Number n) {
      double v = n.doubleValue();
      if ((min != null && v < min) || (max != null && v > max)) {
        String rule = range();
        throw new KvSpecException(
            method
                + ":"
                + name
                + " must be "
                + (rule.startsWith("[") ? "in " + rule : rule)
                + ", got "
                + value.trim());
      }
    }
    return parsed;
  }
}
