package io.kvslim.engine;

/**
 * Sampling settings. {@code temperature <= 0} means greedy. A zero {@code topK}, a {@code topP} of
 * 1 and a {@code minP} of 0 disable those filters; a {@code repeatPenalty} of 1 disables the
 * penalty. Defaults follow llama.cpp's.
 */
public record SamplerConfig(
    float temperature,
    int topK,
    float topP,
    float minP,
    float repeatPenalty,
    int repeatLastN,
    long seed) {

  public static final SamplerConfig GREEDY = new SamplerConfig(0f, 0, 1f, 0f, 1f, 64, 0);

  public static SamplerConfig defaults(long seed) {
    return new SamplerConfig(0.8f, 40, 0.95f, 0.05f, 1f, 64, seed);
  }

  public SamplerConfig {
    if (Float.isNaN(temperature) || temperature < 0) {
      throw new IllegalArgumentException("temperature must be >= 0, got " + temperature);
    }
    if (topK < 0) {
      throw new IllegalArgumentException("top-k must be >= 0, got " + topK);
    }
    if (!(topP > 0 && topP <= 1)) {
      throw new IllegalArgumentException("top-p must be in (0, 1], got " + topP);
    }
    if (!(minP >= 0 && minP <= 1)) {
      throw new IllegalArgumentException("min-p must be in [0, 1], got " + minP);
    }
    if (!(repeatPenalty > 0)) {
      throw new IllegalArgumentException("repeat penalty must be > 0, got " + repeatPenalty);
    }
    if (repeatLastN < 0) {
      throw new IllegalArgumentException("repeat-last-n must be >= 0, got " + repeatLastN);
    }
  }

  public boolean greedy() {
    return temperature <= 0;
  }
}
