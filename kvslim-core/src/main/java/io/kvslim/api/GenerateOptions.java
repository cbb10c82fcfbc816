package io.kvslim.api;

import io.kvslim.engine.SamplerConfig;
import java.util.List;

/**
 * Sampling and stopping options of one generation, made with {@link #builder()}. The defaults are
 * llama.cpp's (and {@code kvslim generate}'s): 128 tokens, temperature 0.8, top-k 40, top-p 0.95,
 * min-p 0.05, no repetition penalty, seed 42, no stop strings, BOS added. A temperature of 0 is
 * greedy decoding ({@link Builder#greedy()}).
 *
 * @param maxTokens the most tokens to generate (at least 0)
 * @param temperature the sampling temperature; 0 is greedy
 * @param topK the top-k filter; 0 turns it off
 * @param topP the nucleus filter, in (0, 1]; 1 turns it off
 * @param minP the min-p filter, in [0, 1]; 0 turns it off
 * @param repeatPenalty the repetition penalty (&gt; 0); 1 turns it off
 * @param seed the random seed of sampling
 * @param stop strings that end the generation; the text returned stops before the first one
 * @param addBos whether a text prompt gets the model's BOS token (ignored for chat prompts)
 */
public record GenerateOptions(
    int maxTokens,
    float temperature,
    int topK,
    float topP,
    float minP,
    float repeatPenalty,
    long seed,
    List<String> stop,
    boolean addBos) {

  /**
   * Checks the options.
   *
   * @throws KvslimException if a value is out of range or a stop string is empty
   */
  public GenerateOptions {
    if (maxTokens < 0) {
      throw new KvslimException("maxTokens must be >= 0, got " + maxTokens);
    }
    stop = stop == null ? List.of() : List.copyOf(stop);
    for (String s : stop) {
      if (s.isEmpty()) {
        throw new KvslimException("a stop string must not be empty");
      }
    }
    samplerConfig(temperature, topK, topP, minP, repeatPenalty, seed);
  }

  /** A builder starting from the defaults. */
  public static Builder builder() {
    return new Builder();
  }

  /** The defaults (see the class comment). */
  public static GenerateOptions defaults() {
    return builder().build();
  }

  SamplerConfig samplerConfig() {
    return samplerConfig(temperature, topK, topP, minP, repeatPenalty, seed);
  }

  private static SamplerConfig samplerConfig(
      float temperature, int topK, float topP, float minP, float repeatPenalty, long seed) {
    return KvslimException.wrap(
        null, () -> new SamplerConfig(temperature, topK, topP, minP, repeatPenalty, 64, seed));
  }

  /** Builds {@link GenerateOptions}; {@link #build()} checks the values. */
  public static final class Builder {
    private int maxTokens = 128;
    private float temperature = 0.8f;
    private int topK = 40;
    private float topP = 0.95f;
    private float minP = 0.05f;
    private float repeatPenalty = 1f;
    private long seed = 42;
    private List<String> stop = List.of();
    private boolean addBos = true;

    private Builder() {}

    /** The most tokens to generate. */
    public Builder maxTokens(int maxTokens) {
      this.maxTokens = maxTokens;
      return this;
    }

    /** The sampling temperature; 0 is greedy. */
    public Builder temperature(double temperature) {
      this.temperature = (float) temperature;
      return this;
    }

    /** Greedy decoding: temperature 0 (the most likely token at every step). */
    public Builder greedy() {
      return temperature(0);
    }

    /** The top-k filter; 0 turns it off. */
    public Builder topK(int topK) {
      this.topK = topK;
      return this;
    }

    /** The nucleus (top-p) filter; 1 turns it off. */
    public Builder topP(double topP) {
      this.topP = (float) topP;
      return this;
    }

    /** The min-p filter; 0 turns it off. */
    public Builder minP(double minP) {
      this.minP = (float) minP;
      return this;
    }

    /** The repetition penalty over the last 64 tokens; 1 turns it off. */
    public Builder repeatPenalty(double repeatPenalty) {
      this.repeatPenalty = (float) repeatPenalty;
      return this;
    }

    /** The random seed of sampling. */
    public Builder seed(long seed) {
      this.seed = seed;
      return this;
    }

    /** Strings that end the generation (the text stops before the first one found). */
    public Builder stop(List<String> stop) {
      this.stop = stop;
      return this;
    }

    /** Strings that end the generation. */
    public Builder stop(String... stop) {
      return stop(List.of(stop));
    }

    /** Whether a text prompt gets the model's BOS token (default true). */
    public Builder addBos(boolean addBos) {
      this.addBos = addBos;
      return this;
    }

    /**
     * The checked options.
     *
     * @throws KvslimException if a value is out of range
     */
    public GenerateOptions build() {
      return new GenerateOptions(
          maxTokens, temperature, topK, topP, minP, repeatPenalty, seed, stop, addBos);
    }
  }
}
