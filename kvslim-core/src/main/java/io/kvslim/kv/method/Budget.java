package io.kvslim.kv.method;

import java.util.Locale;

/**
 * A cache budget: a token count per (layer, KV head), a ratio of the prompt length, or a byte count
 * for the whole sequence's cache.
 */
public record Budget(Kind kind, double value) {
  public enum Kind {
    TOKENS,
    RATIO,
    BYTES
  }

  /**
   * Parses {@code 512} (tokens), {@code 0.25} or {@code 25%} (ratio of the prompt), or {@code
   * 64MiB}, {@code 1.5GB}, {@code 1TiB}, {@code 4096B} (bytes).
   */
  public static Budget parse(String s) {
    String t = s.trim();
    if (t.isEmpty()) {
      throw new IllegalArgumentException("empty budget");
    }
    try {
      if (t.endsWith("%")) {
        double p = Double.parseDouble(t.substring(0, t.length() - 1));
        return ratio(p / 100.0, s);
      }
      String upper = t.toUpperCase(Locale.ROOT);
      String[][] units = {
        {"KIB", "1024"},
        {"MIB", "1048576"},
        {"GIB", "1073741824"},
        {"TIB", "1099511627776"},
        {"KB", "1000"},
        {"MB", "1000000"},
        {"GB", "1000000000"},
        {"TB", "1000000000000"},
        {"B", "1"}
      };
      for (String[] u : units) {
        if (upper.endsWith(u[0])) {
          double n = Double.parseDouble(t.substring(0, t.length() - u[0].length()).trim());
          double bytes = n * Double.parseDouble(u[1]);
          if (!(bytes >= 1) || Double.isInfinite(bytes)) {
            throw new IllegalArgumentException(
                "a byte budget must be at least 1 byte: '" + s + "'");
          }
          return new Budget(Kind.BYTES, Math.floor(bytes));
        }
      }
      if (t.matches("[+-]?\\d+")) {
        long n = Long.parseLong(t);
        if (n < 1) {
          throw new IllegalArgumentException("a token budget must be at least 1, got " + s);
        }
        return new Budget(Kind.TOKENS, n);
      }
      return ratio(Double.parseDouble(t), s);
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException(
          "'"
              + s
              + "' is not a budget (use tokens like 512, a ratio like 0.25 or 25%, or bytes"
              + " like 64MiB)");
    }
  }

  private static Budget ratio(double r, String s) {
    if (!(r > 0 && r <= 1)) {
      throw new IllegalArgumentException("a ratio budget must be in (0, 1], got " + s);
    }
    return new Budget(Kind.RATIO, r);
  }

  /** Tokens per (layer, KV head) for a prompt of {@code promptTokens}, bytes per token given. */
  public int tokens(int promptTokens, double bytesPerTokenAllHeads) {
    return switch (kind) {
      case TOKENS -> (int) Math.min(Integer.MAX_VALUE, value);
      case RATIO -> Math.max(1, (int) Math.round(value * promptTokens));
      case BYTES -> Math.max(1, (int) Math.min(Integer.MAX_VALUE, value / bytesPerTokenAllHeads));
    };
  }

  @Override
  public String toString() {
    return switch (kind) {
      case TOKENS -> Long.toString((long) value);
      case RATIO -> (value * 100) + "%";
      case BYTES -> ((long) value) + "B";
    };
  }
}
