package io.kvslim.api;

import io.kvslim.engine.Engine;
import io.kvslim.engine.KvRecompute;
import io.kvslim.engine.KvSpecs;
import io.kvslim.engine.Sampler;
import io.kvslim.engine.StopMatcher;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.KvUnavailableException;
import io.kvslim.kv.PromptSegments;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.tokenizer.StreamingDecoder;
import io.kvslim.tokenizer.Tokenizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Runs generations of one model with one KV config on a pool of worker threads. Each generation
 * starts from an empty KV cache; the cache of the last generation is kept (so {@link #kvBytes()}
 * reads it) until the next generation or {@link #close()}, which frees it and stops the threads.
 *
 * <p>A session runs one generation at a time: its methods are not safe to call from several threads
 * at once. Sessions of the same model may run in parallel.
 */
public final class KvslimSession implements AutoCloseable {
  private final KvslimModel owner;
  private final KvConfig kv;
  private final Engine engine;
  private KvCache cache;
  private KvRecompute recompute; // of the generation under way
  private boolean closed;

  KvslimSession(KvslimModel owner, KvConfig kv, int threads) {
    this.owner = owner;
    this.kv = kv;
    this.engine = new Engine(owner.model(), threads, KvSpecs.factory(kv.spec(), new BlockPool()));
  }

  /** The cache of the last generation (tests read what its policies saw), or null. */
  KvCache cache() {
    return cache;
  }

  /** The session's KV config. */
  public KvConfig kvConfig() {
    return kv;
  }

  /** The bytes the KV cache of the last generation holds now (0 before the first one). */
  public long kvBytes() {
    return cache == null ? 0 : cache.bytes();
  }

  /**
   * Generates a continuation of {@code prompt}.
   *
   * @param options sampling and stopping options
   * @param callback receives each token as it is generated
   * @throws KvslimException if the prompt is empty or does not fit the context, or the KV config
   *     does not fit the model
   */
  public Generation generate(String prompt, GenerateOptions options, TokenCallback callback) {
    if (prompt == null) {
      throw new KvslimException("no prompt given");
    }
    Tokenizer tok = owner.tokenizer();
    return generate(tok.encode(prompt, options.addBos(), false), options, callback);
  }

  /**
   * Generates the assistant's reply to a rendered conversation; it also stops at the format's end
   * of turn.
   *
   * @throws KvslimException as {@link #generate(String, GenerateOptions, TokenCallback)} does
   */
  public Generation generate(ChatPrompt prompt, GenerateOptions options, TokenCallback callback) {
    List<String> stops = new ArrayList<>(options.stop());
    if (prompt.endOfTurn() != null && !prompt.endOfTurn().isEmpty()) {
      stops.add(prompt.endOfTurn());
    }
    GenerateOptions o =
        new GenerateOptions(
            options.maxTokens(),
            options.temperature(),
            options.topK(),
            options.topP(),
            options.minP(),
            options.repeatPenalty(),
            options.seed(),
            stops,
            options.addBos());
    return generate(
        prompt.tokens(),
        prompt.priority() == null ? null : new PromptSegments(prompt.priority()),
        o,
        callback);
  }

  /**
   * Generates a continuation of the token ids {@code prompt} (used as they are: no BOS is added).
   *
   * @throws KvslimException as {@link #generate(String, GenerateOptions, TokenCallback)} does
   */
  public Generation generate(int[] prompt, GenerateOptions options, TokenCallback callback) {
    return generate(prompt, null, options, callback);
  }

  private Generation generate(
      int[] prompt, PromptSegments segments, GenerateOptions options, TokenCallback callback) {
    checkOpen();
    if (options == null || callback == null) {
      throw new KvslimException("options and callback must not be null");
    }
    int ctx = owner.contextLength();
    if (prompt.length == 0) {
      throw new KvslimException("the prompt has no tokens");
    }
    if (prompt.length >= ctx) {
      throw new KvslimException(
          "the prompt has " + prompt.length + " tokens; the model's context is " + ctx);
    }
    freeCache();
    java.util.function.Supplier<KvCache> fresh =
        () -> {
          KvCache c = engine.newCache();
          if (segments != null) {
            c.labelPrompt(segments);
          }
          return c;
        };
    cache = KvslimException.wrap("the KV config does not fit the model", fresh);
    // a spilled block lost on the way is recomputed from the token ids, with one warning line
    recompute = new KvRecompute(engine, fresh, System.err::println);
    try {
      return run(prompt, options, callback);
    } catch (KvUnavailableException e) {
      throw new KvslimException(e.getMessage(), e);
    }
  }

  private Generation run(int[] prompt, GenerateOptions options, TokenCallback callback) {
    Tokenizer tok = owner.tokenizer();
    int ctx = owner.contextLength();
    int vocab = engine.config().vocabSize();
    float[] logits = new float[vocab];
    int room = Math.min(options.maxTokens(), ctx - prompt.length);
    int[] history = Arrays.copyOf(prompt, prompt.length + room);
    int len = prompt.length;
    Sampler sampler = new Sampler(options.samplerConfig());
    StopMatcher stops = new StopMatcher(options.stop());
    StreamingDecoder decoder = tok.streamingDecoder(false);
    StringBuilder text = new StringBuilder();
    List<StepStats> steps = new ArrayList<>();
    Generation.StopReason reason = Generation.StopReason.LENGTH;

    long t0 = System.nanoTime();
    cache = recompute.prefill(cache, prompt, 0, prompt.length, logits);
    long peak = cache.bytes();
    while (steps.size() < options.maxTokens()) {
      int next = sampler.sample(logits, 0, vocab, history, len);
      if (tok.isEog(next)) {
        reason = Generation.StopReason.END_OF_GENERATION;
        break;
      }
      history[len++] = next;
      long bytes = cache.bytes();
      long t1 = System.nanoTime();
      steps.add(new StepStats(steps.size(), next, len - 1, bytes, t1 - t0));
      String piece = stops.feed(decoder.feed(next));
      text.append(piece);
      if (stops.stopped()) {
        reason = Generation.StopReason.STOP_STRING;
        callback.onToken(next, piece);
        break;
      }
      if (!callback.onToken(next, piece)) {
        reason = Generation.StopReason.CALLBACK;
        break;
      }
      if (steps.size() == options.maxTokens()) {
        break;
      }
      if (len >= ctx) {
        reason = Generation.StopReason.CONTEXT_FULL;
        break;
      }
      t0 = System.nanoTime();
      cache = recompute.decode(cache, history, prompt.length, len, logits);
      peak = Math.max(peak, cache.bytes());
    }
    if (!stops.stopped()) {
      String rest = stops.feed(decoder.flush());
      rest += stops.stopped() ? "" : stops.flush();
      if (stops.stopped()) {
        reason = Generation.StopReason.STOP_STRING;
      }
      if (!rest.isEmpty()) {
        text.append(rest);
        callback.onToken(TokenCallback.END, rest);
      }
    }
    int[] generated = Arrays.copyOfRange(history, prompt.length, len);
    return new Generation(
        text.toString(), generated, prompt.length, reason, cache.bytes(), peak, steps);
  }

  private void freeCache() {
    if (cache != null) {
      cache.close();
      cache = null;
    }
  }

  private void checkOpen() {
    if (closed) {
      throw new KvslimException("the session is closed");
    }
  }

  /** Frees the KV cache and stops the worker threads. The model stays loaded. */
  @Override
  public void close() {
    if (!closed) {
      closed = true;
      freeCache();
      engine.close();
    }
  }
}
