package io.kvslim.server;

import io.kvslim.kv.PromptSegments;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.ColdStorage;
import io.kvslim.kv.store.SpillStats;
import io.kvslim.kv.tier.PrefixCache;
import io.kvslim.kv.tier.TierStats;
import io.kvslim.server.SequenceEvent.FinishReason;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.Tags;
import io.micrometer.core.instrument.Timer;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The server's Prometheus metrics (Micrometer): requests by endpoint and status, generated tokens,
 * recent tokens/s, queue length, active sequences, KV bytes in use in the pool and per KV spec,
 * finished sequences by reason, rejections by reason, and step and time-to-first-token timers.
 */
public final class ServerMetrics {
  /** Distinct KV spec labels kept; further specs are summed under "other". */
  private static final int MAX_SPEC_LABELS = 32;

  private static final long RATE_WINDOW_NANOS = 10_000_000_000L;

  private final PrometheusMeterRegistry registry =
      new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
  private final Counter generated;
  private final Timer stepTime;
  private final Timer firstToken;
  private final Map<String, AtomicLong> specBytes = new ConcurrentHashMap<>();
  private final ArrayDeque<long[]> recent = new ArrayDeque<>(); // {nanos, tokens}
  private long recentTokens;

  public ServerMetrics(BlockPool pool) {
    generated =
        Counter.builder("kvslim.generated.tokens")
            .description("Tokens generated")
            .register(registry);
    stepTime =
        Timer.builder("kvslim.step")
            .description("Duration of one batched forward step")
            .register(registry);
    firstToken =
        Timer.builder("kvslim.time.to.first.token")
            .description("From request arrival to its first generated token")
            .register(registry);
    Gauge.builder("kvslim.tokens.per.second", this, ServerMetrics::tokensPerSecond)
        .description("Generated tokens per second over the last 10 s")
        .register(registry);
    Gauge.builder("kvslim.kv.bytes.used", pool, BlockPool::usedBytes)
        .description("KV cache bytes held in the shared pool")
        .baseUnit("bytes")
        .register(registry);
    Gauge.builder("kvslim.kv.bytes.limit", pool, BlockPool::limitBytes)
        .description("The pool's limit (--kv-memory)")
        .baseUnit("bytes")
        .register(registry);
    Gauge.builder("kvslim.kv.bytes.peak", pool, BlockPool::peakBytes)
        .description("Most KV cache bytes the pool ever held")
        .baseUnit("bytes")
        .register(registry);
  }

  /** Registers the gauges read from the scheduler. */
  void bindScheduler(Scheduler scheduler) {
    Gauge.builder("kvslim.queue.length", scheduler, Scheduler::queueLength)
        .description("Requests waiting for admission")
        .register(registry);
    Gauge.builder("kvslim.active.sequences", scheduler, Scheduler::activeSequences)
        .description("Sequences admitted and running")
        .register(registry);
  }

  /**
   * Registers the prefix cache's counters: KV tier blocks looked up, hit, missed, rejected (corrupt
   * or foreign: recomputed) and stored, bytes read and written, prompt tokens restored instead of
   * prefilled, and per tier the times it was unreachable and skipped.
   */
  void bindTiers(PrefixCache cache) {
    TierStats t = cache.stats();
    tierCounter("lookups", "Prefix blocks looked up in the KV tiers", t.lookups, null);
    tierCounter("hits", "Prefix blocks found intact in a KV tier", t.hits, null);
    tierCounter("misses", "Prefix blocks no KV tier held", t.misses, null);
    tierCounter("rejected", "Stored blocks rejected (corrupt, foreign)", t.rejected, null);
    tierCounter("stored", "Prefix blocks written to the KV tiers", t.stored, null);
    tierCounter("read", "Bytes read from the KV tiers", t.bytesRead, "bytes");
    tierCounter("written", "Bytes written to the KV tiers", t.bytesWritten, "bytes");
    tierCounter(
        "restored.tokens", "Prompt tokens restored instead of prefilled", t.restoredTokens, null);
    for (var tier : cache.tiers()) {
      FunctionCounter.builder(
              "kvslim.kv.tier.unavailable", t.unavailable(tier.name()), AtomicLong::get)
          .description("Times a KV tier was unreachable and skipped")
          .tag("tier", tier.name())
          .register(registry);
    }
  }

  /**
   * The counters of the caches spilling into {@code storage} ({@code spill=true} methods with
   * {@code --kv-tier}): cold bytes held, bytes and blocks fetched back, blocks and bytes spilled,
   * fallbacks to a local file while the tier was unreachable, sequences recomputed after a lost
   * block.
   */
  void bindSpill(ColdStorage storage) {
    SpillStats s = storage.stats();
    Tags tier = Tags.of("tier", storage.name());
    Gauge.builder("kvslim.kv.spill.cold", s.coldBytes, AtomicLong::get)
        .description("Bytes of KV blocks the open caches hold in the cold tier, not in RAM")
        .baseUnit("bytes")
        .tags(tier)
        .register(registry);
    spillCounter(
        "fetched", "Bytes of spilled KV blocks fetched back", s.bytesFetched, "bytes", tier);
    spillCounter("fetched.blocks", "Spilled KV blocks fetched back", s.blocksFetched, null, tier);
    spillCounter(
        "spilled", "Bytes of KV blocks written to the cold tier", s.bytesSpilled, "bytes", tier);
    spillCounter(
        "spilled.blocks", "KV blocks written to the cold tier", s.blocksSpilled, null, tier);
    spillCounter(
        "fallbacks",
        "Caches that spilled to a local file because the tier was unreachable",
        s.fallbacks,
        null,
        tier);
    spillCounter(
        "recomputes",
        "Sequences recomputed from their token ids after a spilled KV block was lost",
        s.recomputes,
        null,
        tier);
  }

  private void spillCounter(
      String name, String description, AtomicLong value, String unit, Tags tags) {
    FunctionCounter.Builder<AtomicLong> b =
        FunctionCounter.builder("kvslim.kv.spill." + name, value, AtomicLong::get)
            .description(description)
            .tags(tags);
    if (unit != null) {
      b.baseUnit(unit);
    }
    b.register(registry);
  }

  private void tierCounter(String name, String description, AtomicLong value, String unit) {
    FunctionCounter.Builder<AtomicLong> b =
        FunctionCounter.builder("kvslim.kv.tier." + name, value, AtomicLong::get)
            .description(description);
    if (unit != null) {
      b.baseUnit(unit);
    }
    b.register(registry);
  }

  /** The Prometheus text exposition. */
  public String scrape() {
    return registry.scrape();
  }

  /** An HTTP request answered with {@code status}. */
  public void request(String endpoint, int status) {
    registry
        .counter(
            "kvslim.requests", Tags.of("endpoint", endpoint, "status", Integer.toString(status)))
        .increment();
  }

  /** A request refused: {@code queue_full} (429), {@code too_large}, {@code unauthorized}... */
  public void rejected(String reason) {
    registry.counter("kvslim.rejections", Tags.of("reason", reason)).increment();
  }

  /**
   * A prompt whose segment labels reached its sequence's cache: its priority tokens (instruction,
   * question) and evictable ones (earlier turns, documents), as a segment-aware policy sees them.
   */
  void labelledPrompt(PromptSegments labels) {
    int evictable = labels.nonPriority();
    registry
        .counter("kvslim.prompt.tokens", Tags.of("segment", "priority"))
        .increment(labels.length() - evictable);
    registry.counter("kvslim.prompt.tokens", Tags.of("segment", "evictable")).increment(evictable);
  }

  void finished(FinishReason reason) {
    registry
        .counter("kvslim.sequences.finished", Tags.of("reason", reason.name().toLowerCase()))
        .increment();
  }

  void firstToken(long nanos) {
    firstToken.record(Duration.ofNanos(nanos));
  }

  /** A forward step that produced {@code tokens} tokens in {@code nanos}. */
  synchronized void step(int tokens, long nanos) {
    stepTime.record(Duration.ofNanos(nanos));
    generated.increment(tokens);
    long now = System.nanoTime();
    recent.addLast(new long[] {now, tokens});
    recentTokens += tokens;
    trim(now);
  }

  private synchronized double tokensPerSecond() {
    long now = System.nanoTime();
    trim(now);
    return recentTokens * 1e9 / RATE_WINDOW_NANOS;
  }

  private void trim(long now) {
    while (!recent.isEmpty() && now - recent.peekFirst()[0] > RATE_WINDOW_NANOS) {
      recentTokens -= recent.pollFirst()[1];
    }
  }

  /** KV bytes held now by the running sequences, per KV spec. */
  void kvBytesBySpec(Map<String, Long> bytes) {
    for (AtomicLong v : specBytes.values()) {
      v.set(0);
    }
    for (var e : bytes.entrySet()) {
      String label =
          specBytes.containsKey(e.getKey()) || specBytes.size() < MAX_SPEC_LABELS
              ? e.getKey()
              : "other";
      specBytes
          .computeIfAbsent(
              label,
              k -> {
                AtomicLong v = new AtomicLong();
                Gauge.builder("kvslim.kv.bytes.spec", v, AtomicLong::get)
                    .description("KV cache bytes held by running sequences, per KV spec")
                    .baseUnit("bytes")
                    .tag("kv", k)
                    .register(registry);
                return v;
              })
          .addAndGet(e.getValue());
    }
  }
}
