package io.kvslim.kv.method;

import java.util.List;

/** One key a method accepts: its type, default and the values it allows. */
public record ParamDef(
    String name, Type type, String defaultValue, String description, List<String> choices) {
  public enum Type {
    INT,
    FLOAT,
    BUDGET,
    CHOICE,
    BOOL
  }

  public static ParamDef integer(String name, String def, String description) {
    return new ParamDef(name, Type.INT, def, description, List.of());
  }

  public static ParamDef number(String name, String def, String description) {
    return new ParamDef(name, Type.FLOAT, def, description, List.of());
  }

  public static ParamDef budget(String name, String def, String description) {
    return new ParamDef(name, Type.BUDGET, def, description, List.of());
  }

  public static ParamDef choice(String name, String def, String description, String... choices) {
    return new ParamDef(name, Type.CHOICE, def, description, List.of(choices));
  }

  public static ParamDef bool(String name, String def, String description) {
    return new ParamDef(name, Type.BOOL, def, description, List.of("true", "false"));
  }

  /** Checks {@code value}'s form, throwing a message that names the method, key and value. */
  Object parse(String method, String value) {
    String where = method + ":" + name + "=" + value;
    try {
      return switch (type) {
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
  }
}
