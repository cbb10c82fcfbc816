package io.kvslim.api;

import io.kvslim.kv.method.KvSpec;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * How a session stores its KV cache: a checked KV spec, written as text ({@code "snapkv:budget=64 +
 * q8_0"}, the language of the CLI's {@code --kv} and the server's {@code kv} field; {@code kvslim
 * kv-methods} lists every method and knob) or put together with {@link #builder()}.
 *
 * <p>Every method name, knob and value is checked when the config is made, before any model work; a
 * bad one is a {@link KvslimException}.
 */
public final class KvConfig {
  private final KvSpec spec;

  private KvConfig(KvSpec spec) {
    this.spec = spec;
  }

  /** The uncompressed cache ({@code full}). */
  public static KvConfig full() {
    return new KvConfig(KvSpec.FULL);
  }

  /**
   * Parses a KV spec such as {@code "full"}, {@code "q8_0"} or {@code "snapkv:budget=25%,window=32
   * + q8_0"}.
   *
   * @throws KvslimException if the spec is blank or names an unknown method, knob or bad value
   */
  public static KvConfig parse(String spec) {
    if (spec == null || spec.isBlank()) {
      throw new KvslimException("the KV spec is empty; use e.g. \"full\" or \"q8_0\"");
    }
    return new KvConfig(
        KvslimException.wrap("invalid KV spec '" + spec + "'", () -> KvSpec.parse(spec)));
  }

  /** A builder for one rule of methods joined by {@code +}. */
  public static Builder builder() {
    return new Builder();
  }

  /** The spec in its canonical text form. */
  public String text() {
    return spec.text();
  }

  KvSpec spec() {
    return spec;
  }

  @Override
  public String toString() {
    return text();
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof KvConfig k && k.text().equals(text());
  }

  @Override
  public int hashCode() {
    return text().hashCode();
  }

  /**
   * Builds a spec of methods composed with {@code +}, e.g. {@code
   * builder().method("snapkv").knob("budget", 64).method("q8_0").build()} is {@code
   * "snapkv:budget=64 + q8_0"}.
   */
  public static final class Builder {
    private final List<StringBuilder> calls = new ArrayList<>();
    private Path profile;

    private Builder() {}

    /** Adds a method (an eviction policy, a storage format, ...) by its registered name. */
    public Builder method(String name) {
      Objects.requireNonNull(name, "name");
      calls.add(new StringBuilder(name.strip()));
      return this;
    }

    /** Sets a knob of the method added last, e.g. {@code knob("budget", 64)}. */
    public Builder knob(String key, Object value) {
      if (calls.isEmpty()) {
        throw new KvslimException(
            "knob '" + key + "' comes before any method; call method() first");
      }
      StringBuilder call = calls.getLast();
      call.append(call.indexOf(":") < 0 ? ':' : ',').append(key).append('=').append(value);
      return this;
    }

    /** The calibration profile ({@code kvslim calibrate}'s JSON) for methods that need one. */
    public Builder profile(Path profile) {
      this.profile = profile;
      return this;
    }

    /**
     * The checked config.
     *
     * @throws KvslimException if no method was added or a name, knob or value is invalid
     */
    public KvConfig build() {
      if (calls.isEmpty()) {
        throw new KvslimException("the KV spec has no method; call method() at least once");
      }
      StringBuilder text = new StringBuilder();
      for (StringBuilder c : calls) {
        text.append(text.isEmpty() ? "" : " + ").append(c);
      }
      if (profile != null) {
        text.append("@profile=").append(profile);
      }
      return parse(text.toString());
    }
  }
}
