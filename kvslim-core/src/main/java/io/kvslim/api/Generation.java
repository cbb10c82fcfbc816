package io.kvslim.api;

import java.util.List;

/**
 * The outcome of one generation.
 *
 * @param text the generated text (without the prompt, cut before a stop string)
 * @param tokens the generated token ids: an end-of-generation token is not among them, the tokens
 *     that made up a stop string are
 * @param promptTokens how many tokens the prompt had
 * @param stopReason why the generation ended
 * @param kvBytes the bytes the KV cache held at the end
 * @param kvBytesPeak the most bytes the KV cache held during the generation
 * @param steps one entry per generated token, in order
 */
public record Generation(
    String text,
    int[] tokens,
    int promptTokens,
    StopReason stopReason,
    long kvBytes,
    long kvBytesPeak,
    List<StepStats> steps) {

  /** Why a generation ended. */
  public enum StopReason {
    /** {@link GenerateOptions#maxTokens()} tokens were generated. */
    LENGTH,
    /** The model produced an end-of-generation token (EOS, end of turn). */
    END_OF_GENERATION,
    /** A stop string was generated. */
    STOP_STRING,
    /** The {@link TokenCallback} returned false. */
    CALLBACK,
    /** The model's context is full. */
    CONTEXT_FULL
  }

  /** Checks nothing; copies the lists. */
  public Generation {
    steps = List.copyOf(steps);
  }

  /** How many tokens were generated. */
  public int generatedTokens() {
    return tokens.length;
  }
}
