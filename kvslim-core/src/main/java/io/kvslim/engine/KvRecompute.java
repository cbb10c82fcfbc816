package io.kvslim.engine;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.KvUnavailableException;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.store.ColdStorage;
import io.kvslim.kv.store.ColdStore;
import java.util.function.Consumer;
import java.util.function.Supplier;

/**
 * Recomputes one sequence whose spilled KV block was lost instead of failing it: a {@code
 * spill=true} method's cold block that cannot be read back (its KV tier went away or timed out, its
 * key is missing or expired, its bytes fail their CRC32C, a foreign block sits under its key) fails
 * the step with {@link ColdStore.Corrupt} before anything is attended over; {@link #recover} then
 * closes the broken cache, makes a new one for the same spec whose blocks spill to a local file
 * ({@link ColdStorage#forRecompute}), feeds it every token so far from their ids as the sequence
 * was fed (the prompt as a prefill, each generated token as a decode step, so the new cache holds
 * what a run without the tier held) and counts it ({@link
 * io.kvslim.kv.store.SpillStats#recomputes}) with one warning line. The step is then run again on
 * the new cache. The generation loops ({@link Generator} for {@code generate}, the server's
 * scheduler, the embedding API's session) step through {@link #prefill} and {@link #decode}, or
 * call {@link #recover} themselves.
 *
 * <p>A sequence is recomputed at most once: its new cache spills to a local file, so a second lost
 * block, or a failure while recomputing, ends it with one sentence ({@link KvUnavailableException})
 * rather than a loop. One instance per sequence, used from its generating thread.
 */
public final class KvRecompute {
  /** Recomputes one sequence may take. */
  public static final int MAX_RECOMPUTES = 1;

  private final Engine engine;
  private final Supplier<KvCache> newCache;
  private final Consumer<String> warn;
  private int recomputes;

  /**
   * Recovers with caches from {@code newCache} (empty, for the sequence's spec, any prompt labels
   * given), printing its warning line to {@code warn}.
   */
  public KvRecompute(Engine engine, Supplier<KvCache> newCache, Consumer<String> warn) {
    this.engine = engine;
    this.newCache = newCache;
    this.warn = warn;
  }

  /** Times this sequence was recomputed. */
  public int recomputes() {
    return recomputes;
  }

  /**
   * The lost spilled block behind {@code e} (a {@link ColdStore.Corrupt} among its causes), or
   * null.
   */
  public static ColdStore.Corrupt lostBlock(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause()) {
      if (t instanceof ColdStore.Corrupt c) {
        return c;
      }
      if (t.getCause() == t) {
        break;
      }
    }
    return null;
  }

  /**
   * Prefills {@code prompt[from..to)} into {@code cache} (at their positions, {@code from} tokens
   * being in it already); returns the cache to go on with: a new one holding the whole prompt if a
   * spilled block was lost. {@code logits} gets the last token's.
   *
   * @throws KvUnavailableException if the recompute failed too
   */
  public KvCache prefill(KvCache cache, int[] prompt, int from, int to, float[] logits) {
    try {
      engine.prefill(cache, prompt, from, to, from, false, logits);
      return cache;
    } catch (RuntimeException e) {
      return recover(cache, e, prompt, to, to, logits);
    }
  }

  /**
   * Decodes {@code tokens[length - 1]} at position {@code length - 1} into {@code cache}, which
   * holds {@code tokens[0..length - 1)} ({@code promptLength} of them the prompt); returns the
   * cache to go on with: a new one holding {@code tokens[0..length)} if a spilled block was lost.
   * {@code logits} gets the step's.
   *
   * @throws KvUnavailableException if the recompute failed too
   */
  public KvCache decode(KvCache cache, int[] tokens, int promptLength, int length, float[] logits) {
    try {
      engine.decode(cache, tokens[length - 1], length - 1, logits);
      return cache;
    } catch (RuntimeException e) {
      return recover(cache, e, tokens, promptLength, length, logits);
    }
  }

  /**
   * After {@code failure} in a step of {@code broken}: if it is a lost spilled block, closes {@code
   * broken} and returns a new cache holding {@code tokens[0..length)} recomputed (the prompt {@code
   * tokens[0..promptLength)} prefilled, the others decoded one at a time, {@code logits} the last
   * one's; {@code length} 0: an empty cache, a prefill under way starts over), whose blocks spill
   * to a local file; otherwise rethrows {@code failure}.
   *
   * @throws KvUnavailableException (one sentence) if the sequence was recomputed before or the
   *     recompute failed; {@code broken} is closed then too
   */
  public KvCache recover(
      KvCache broken,
      RuntimeException failure,
      int[] tokens,
      int promptLength,
      int length,
      float[] logits) {
    ColdStore.Corrupt lost = lostBlock(failure);
    if (lost == null) {
      throw failure;
    }
    if (length != 0 && (promptLength < 1 || length < promptLength || length > tokens.length)) {
      throw new IllegalArgumentException(
          "cannot recompute " + length + " tokens with a prompt of " + promptLength);
    }
    ColdStorage storage =
        broken instanceof ManagedKvCache m && m.pool().coldStorage() != null
            ? m.pool().coldStorage()
            : null;
    broken.close();
    String why = reason(lost);
    if (recomputes >= MAX_RECOMPUTES) {
      throw new KvUnavailableException(
          "a spilled KV block was lost again after the sequence was recomputed (" + why + ")",
          failure);
    }
    recomputes++;
    if (storage != null) {
      storage.stats().recomputes.incrementAndGet();
    }
    warn.accept(
        "kvslim: warning: "
            + why
            + (length > 0
                ? "; recomputing the sequence's " + length + " tokens"
                : "; the sequence's prefill starts over")
            + ", its spilled KV blocks now in a local file");
    KvCache fresh = null;
    try {
      fresh = newCache.get();
      if (storage != null && fresh instanceof ManagedKvCache m) {
        m.spillTo(storage.forRecompute());
      }
      if (length > 0) {
        engine.prefill(fresh, tokens, 0, promptLength, 0, false, logits);
        for (int i = promptLength; i < length; i++) {
          engine.decode(fresh, tokens[i], i, logits);
        }
      }
      return fresh;
    } catch (RuntimeException e) {
      if (fresh != null) {
        fresh.close();
      }
      String m = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
      throw new KvUnavailableException(
          "recomputing the sequence after a lost spilled KV block failed (" + m + ")", e);
    }
  }

  /** The lost block's message without its closing "the sequence must be recomputed". */
  private static String reason(ColdStore.Corrupt lost) {
    String m = String.valueOf(lost.getMessage()).strip();
    for (String end :
        new String[] {"; the sequence must be recomputed", ": the sequence must be recomputed"}) {
      if (m.endsWith(end)) {
        return m.substring(0, m.length() - end.length());
      }
    }
    return m;
  }
}
