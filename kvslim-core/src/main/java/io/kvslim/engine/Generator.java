package io.kvslim.engine;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.tier.PrefixCache;
import java.util.Arrays;

/** Prefill then decode loop for one sequence, with stop conditions and a streaming callback. */
public final class Generator {
  /** Why generation ended. */
  public enum StopReason {
    LENGTH,
    END_OF_GENERATION,
    STOPPED,
    CONTEXT_FULL
  }

  /** Receives each generated token; return false to stop. */
  @FunctionalInterface
  public interface TokenListener {
    boolean onToken(int token);
  }

  /** Outcome and timings of one generation. */
  public record Result(
      int[] tokens,
      int promptTokens,
      int generatedTokens,
      long prefillNanos,
      long decodeNanos,
      StopReason stopReason,
      long kvBytesFinal,
      long kvBytesPeak) {
    public double prefillTokensPerSecond() {
      return prefillNanos == 0 ? 0 : promptTokens * 1e9 / prefillNanos;
    }

    /** Decode speed: tokens after the first (which comes from the prefill) per second. */
    public double decodeTokensPerSecond() {
      int steps = Math.max(0, generatedTokens - 1);
      return decodeNanos == 0 ? 0 : steps * 1e9 / decodeNanos;
    }
  }

  private final Engine engine;
  private PrefixCache prefixCache;
  private String prefixSpec;
  private int restoredTokens;
  private int recomputes;
  private java.util.function.Consumer<String> warn = System.err::println;

  public Generator(Engine engine) {
    this.engine = engine;
  }

  /**
   * Where the one warning line of a recompute goes ({@link KvRecompute}; standard error by
   * default).
   */
  public Generator withWarnings(java.util.function.Consumer<String> warn) {
    this.warn = warn;
    return this;
  }

  /**
   * Times the last {@link #generate} recomputed its sequence because a spilled KV block was lost
   * ({@link KvRecompute}): 0 or 1.
   */
  public int recomputes() {
    return recomputes;
  }

  /**
   * Restores the prompt's longest prefix that {@code cache}'s KV tiers hold for {@code spec} (the
   * engine's KV spec) instead of prefilling it, and stores the blocks the prefill settles.
   */
  public Generator withPrefixCache(PrefixCache cache, String spec) {
    this.prefixCache = cache;
    this.prefixSpec = spec;
    return this;
  }

  /** Prompt tokens the last {@link #generate} restored from the KV tiers (0 without any). */
  public int restoredTokens() {
    return restoredTokens;
  }

  /**
   * Generates up to {@code maxTokens} tokens after {@code prompt}. {@code isEog} marks
   * end-of-generation tokens (not emitted to the listener). A spilled KV block lost on the way (a
   * {@code spill=true} method whose KV tier went away) is recomputed from the token ids ({@link
   * KvRecompute}), and the tokens are those of a run without the tier.
   *
   * @throws io.kvslim.kv.KvUnavailableException if a lost block could not be recomputed
   */
  public Result generate(
      int[] prompt,
      int maxTokens,
      Sampler sampler,
      java.util.function.IntPredicate isEog,
      TokenListener listener) {
    if (prompt.length == 0) {
      throw new IllegalArgumentException("the prompt has no tokens");
    }
    int ctx = engine.config().contextLength();
    if (prompt.length >= ctx) {
      throw new IllegalArgumentException(
          "the prompt has " + prompt.length + " tokens; the model's context is " + ctx);
    }
    int vocab = engine.config().vocabSize();
    float[] logits = new float[vocab];
    // at most the context's room is generated, so size by that, never by maxTokens itself
    int room = Math.min(Math.max(0, maxTokens), ctx - prompt.length);
    int[] history = Arrays.copyOf(prompt, prompt.length + room);
    int len = prompt.length;
    KvRecompute recompute = new KvRecompute(engine, engine::newCache, warn);
    KvCache cache = engine.newCache();
    try {
      long t0 = System.nanoTime();
      restoredTokens = 0;
      ManagedKvCache managed = prefixCache != null ? managed(cache) : null;
      if (managed != null) {
        restoredTokens = prefixCache.restore(managed, prefixSpec, prompt, prompt.length);
      }
      cache = recompute.prefill(cache, prompt, restoredTokens, prompt.length, logits);
      long t1 = System.nanoTime();
      if (managed != null && cache == managed) {
        prefixCache.store(managed, prefixSpec, prompt, prompt.length, restoredTokens);
      }
      long peak = cache.bytes();
      int generated = 0;
      StopReason reason = StopReason.LENGTH;
      long decodeStart = System.nanoTime();
      while (generated < maxTokens) {
        int next = sampler.sample(logits, 0, vocab, history, len);
        if (isEog.test(next)) {
          reason = StopReason.END_OF_GENERATION;
          break;
        }
        history[len++] = next;
        generated++;
        if (!listener.onToken(next)) {
          reason = StopReason.STOPPED;
          break;
        }
        if (generated == maxTokens) {
          break;
        }
        if (len >= ctx) {
          reason = StopReason.CONTEXT_FULL;
          break;
        }
        cache = recompute.decode(cache, history, prompt.length, len, logits);
        peak = Math.max(peak, cache.bytes());
      }
      long t2 = System.nanoTime();
      return new Result(
          Arrays.copyOf(history, len),
          prompt.length,
          generated,
          t1 - t0,
          generated > 1 ? t2 - decodeStart : 0,
          reason,
          cache.bytes(),
          peak);
    } finally {
      recomputes = recompute.recomputes();
      cache.close();
    }
  }

  private static ManagedKvCache managed(KvCache cache) {
    return cache instanceof ManagedKvCache m ? m : null;
  }
}
