package io.kvslim.server;

import io.kvslim.engine.Sampler;
import io.kvslim.engine.StopMatcher;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.PromptSegments;
import io.kvslim.tokenizer.StreamingDecoder;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * One request's sequence inside the {@link Scheduler}: its prompt, sampler, cache and text state,
 * and the queue of {@link SequenceEvent}s its HTTP handler reads. Fields without {@code volatile}
 * belong to the scheduler thread.
 */
public final class Sequence {
  enum State {
    WAITING,
    PREFILL,
    DECODE,
    DONE
  }

  final long id;
  final int[] prompt;
  final PromptSegments segments; // the chat rendering's labels, or null
  final int maxTokens;
  final Sampler sampler;
  final KvPlan plan;
  final boolean ignoreEos;
  final StreamingDecoder decoder;
  final StopMatcher stops;
  final long reservation;
  final long submittedNanos = System.nanoTime();
  private final BlockingQueue<SequenceEvent> events = new LinkedBlockingQueue<>();
  private volatile boolean cancelled;

  BlendPrompt blend; // CacheBlend's chunks, or null: set before the sequence is queued
  State state = State.WAITING;
  KvCache cache; // a ManagedKvCache, or DistAttention's
  io.kvslim.engine.KvRecompute recompute; // rebuilds the cache after a lost spilled block
  int[] history;
  int length;
  int prefilled;
  int restored; // prompt tokens whose blocks came from the KV tiers (PrefixCache)
  int generated;
  long peakBytes;

  Sequence(
      long id,
      int[] prompt,
      int maxTokens,
      Sampler sampler,
      KvPlan plan,
      boolean ignoreEos,
      StreamingDecoder decoder,
      List<String> stops,
      long reservation,
      PromptSegments segments) {
    this.id = id;
    this.prompt = prompt;
    this.segments = segments;
    this.maxTokens = maxTokens;
    this.sampler = sampler;
    this.plan = plan;
    this.ignoreEos = ignoreEos;
    this.decoder = decoder;
    this.stops = new StopMatcher(stops);
    this.reservation = reservation;
  }

  /** Asks the scheduler to drop this sequence (the client went away); its cache is freed soon. */
  public void cancel() {
    cancelled = true;
  }

  public boolean cancelled() {
    return cancelled;
  }

  public int promptTokens() {
    return prompt.length;
  }

  /** The next event, waiting up to {@code timeoutMillis}; null if none came. */
  public SequenceEvent poll(long timeoutMillis) throws InterruptedException {
    return events.poll(timeoutMillis, TimeUnit.MILLISECONDS);
  }

  void emit(SequenceEvent e) {
    events.add(e);
  }
}
