package io.kvslim.engine.blend;

import java.util.Locale;

/**
 * CacheBlend's knobs, parsed from {@code cacheblend[:recompute=15%][,check=1]}.
 *
 * @param recompute share of the chunk tokens whose KV is recomputed from the check layer on (0..1);
 *     0 is naive reuse: the chunks' stored KV as is, only the suffix computed
 * @param checkLayer the layer whose value deviation selects the tokens (the layers before it and
 *     its keys and values are computed for every token); at least 1, since layer 0's keys and
 *     values do not depend on the context
 */
public record BlendOptions(double recompute, int checkLayer) {
  /** The paper's defaults: 15% of the tokens, checked at layer 1 (METHODS.md H1 knobs). */
  public static final BlendOptions DEFAULT = new BlendOptions(0.15, 1);

  public BlendOptions {
    if (!(recompute >= 0 && recompute <= 1)) {
      throw new IllegalArgumentException(
          "cacheblend recompute must be between 0% and 100%, got " + recompute * 100 + "%");
    }
    if (checkLayer < 1) {
      throw new IllegalArgumentException(
          "cacheblend check layer must be at least 1, got " + checkLayer);
    }
  }

  /**
   * Parses {@code cacheblend}, {@code cacheblend:recompute=15%,check=1} (recompute as a percentage
   * or a fraction); any other text is an {@link IllegalArgumentException} with one sentence.
   */
  public static BlendOptions parse(String spec) {
    if (spec == null || spec.isBlank()) {
      throw new IllegalArgumentException("cacheblend spec is empty; use cacheblend:recompute=15%");
    }
    String s = spec.strip();
    String head = s.contains(":") ? s.substring(0, s.indexOf(':')) : s;
    if (!head.equals("cacheblend")) {
      throw new IllegalArgumentException(
          "cacheblend spec must start with 'cacheblend', got '" + spec + "'");
    }
    double recompute = DEFAULT.recompute();
    int check = DEFAULT.checkLayer();
    if (s.contains(":")) {
      for (String part : s.substring(s.indexOf(':') + 1).split(",", -1)) {
        int eq = part.indexOf('=');
        if (eq < 0) {
          throw new IllegalArgumentException(
              "cacheblend knob '" + part + "' must be name=value (recompute, check)");
        }
        String name = part.substring(0, eq).strip().toLowerCase(Locale.ROOT);
        String value = part.substring(eq + 1).strip();
        switch (name) {
          case "recompute" -> recompute = fraction(value);
          case "check" -> check = integer(value);
          default ->
              throw new IllegalArgumentException(
                  "cacheblend has no knob '" + name + "'; its knobs are recompute and check");
        }
      }
    }
    return new BlendOptions(recompute, check);
  }

  private static double fraction(String value) {
    try {
      return value.endsWith("%")
          ? Double.parseDouble(value.substring(0, value.length() - 1)) / 100
          : Double.parseDouble(value);
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException(
          "cacheblend recompute must be a percentage like 15% or a fraction, got '" + value + "'");
    }
  }

  private static int integer(String value) {
    try {
      return Integer.parseInt(value);
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException(
          "cacheblend check must be a layer number, got '" + value + "'");
    }
  }

  /** The spec text that parses back to these options. */
  @Override
  public String toString() {
    return String.format(Locale.ROOT, "cacheblend:recompute=%s%%,check=%d", pct(), checkLayer);
  }

  private String pct() {
    double p = recompute * 100;
    return p == Math.rint(p) ? Long.toString((long) p) : Double.toString(p);
  }
}
