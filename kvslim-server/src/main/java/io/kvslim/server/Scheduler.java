package io.kvslim.server;

import io.kvslim.engine.Engine;
import io.kvslim.engine.KvCacheFactory;
import io.kvslim.engine.KvRecompute;
import io.kvslim.engine.Sampler;
import io.kvslim.engine.SamplerConfig;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.KvUnavailableException;
import io.kvslim.kv.PromptSegments;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.KvMemoryExhaustedException;
import io.kvslim.kv.tier.PrefixCache;
import io.kvslim.model.Batch;
import io.kvslim.server.SequenceEvent.FinishReason;
import io.kvslim.tokenizer.Tokenizer;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Continuous batching (DESIGN.md §4): one thread owns the {@link Engine}. Each step runs every
 * decoding sequence's next token and a chunk of at most {@code prefillChunk} prompt tokens of the
 * sequences still prefilling as one forward pass, so running streams never wait for a whole prompt.
 * Between steps it retires finished and cancelled sequences (closing their caches at once, which
 * returns their bytes to the pool) and admits waiting ones.
 *
 * <p>Admission ({@link Admission}): a sequence is admitted when a batch slot is free and its {@link
 * KvPlan#estimateBytes estimated} KV bytes fit next to the reservations of the running ones under
 * the pool's limit, in arrival order; retiring releases both. At most {@code --queue} requests
 * wait, whether for a slot or for memory; one more is refused with 429. Before every step the bytes
 * the step's appends will allocate are computed exactly; if the pool cannot hold them, sequences
 * are ended with {@code "length"} (newest prefill first, else the one furthest over its
 * reservation) until it can, so a step never fails half-way and the limit is never passed.
 */
public final class Scheduler implements AutoCloseable {
  private final Engine engine;
  private final Tokenizer tokenizer;
  private final BlockPool pool;
  private final ServerConfig config;
  private final ServerMetrics metrics;
  private final Admission admission;
  private final int vocab;
  private final int context;
  private final AtomicLong ids = new AtomicLong();
  private final ReentrantLock lock = new ReentrantLock();
  private final Condition wake = lock.newCondition();
  private final ArrayDeque<Sequence> waiting = new ArrayDeque<>();
  private final Thread thread;
  private volatile int activeCount;
  private boolean closing;
  private long drainDeadline;
  private volatile PrefixCache prefixCache; // null: no KV tiers

  // scheduler thread only
  private final List<Sequence> active = new ArrayList<>();
  private final Batch batch = new Batch();
  private final BlendPrefill blender;
  private final List<Sequence> segments = new ArrayList<>();
  private final List<Sequence> sampled = new ArrayList<>();
  private float[] logits = new float[0];
  private volatile KvCacheFactory remoteCaches; // DistAttention: every sequence's cache, or null

  public Scheduler(
      Engine engine,
      Tokenizer tokenizer,
      BlockPool pool,
      ServerConfig config,
      ServerMetrics metrics) {
    this.engine = engine;
    this.tokenizer = tokenizer;
    this.pool = pool;
    this.config = config;
    this.metrics = metrics;
    this.admission = new Admission(pool.limitBytes(), config.maxBatch());
    this.vocab = engine.config().vocabSize();
    this.context = engine.config().contextLength();
    this.blender = new BlendPrefill(engine);
    this.thread = Thread.ofPlatform().name("kvslim-scheduler").daemon(true).unstarted(this::run);
    metrics.bindScheduler(this);
    thread.start();
  }

  /**
   * Makes every sequence's cache with {@code caches} instead of its plan (DistAttention keeps the
   * blocks on cluster members, so the local pool holds none of them); null for the plans' caches.
   */
  public void useCaches(KvCacheFactory caches) {
    this.remoteCaches = caches;
  }

  /** CacheBlend's chunk store (hits and misses). */
  io.kvslim.engine.blend.ChunkKvStore chunkStore() {
    return blender.store();
  }

  /**
   * Restores each admitted prompt's longest stored prefix from {@code cache}'s KV tiers instead of
   * prefilling it, and stores the blocks each prefill settles (null: none).
   */
  public void usePrefixCache(PrefixCache cache) {
    this.prefixCache = cache;
  }

  /** Requests waiting for admission. */
  public int queueLength() {
    lock.lock();
    try {
      return waiting.size();
    } finally {
      lock.unlock();
    }
  }

  /** Sequences admitted and not yet retired. */
  public int activeSequences() {
    return activeCount;
  }

  public BlockPool pool() {
    return pool;
  }

  /**
   * The admission rule and reservations. Other threads may only ask {@link Admission#fitsAlone}
   * (the rest changes under the scheduler's lock).
   */
  public Admission admission() {
    return admission;
  }

  /**
   * Queues a sequence for {@code prompt}. Checks happen here, in the caller's thread: the prompt
   * and {@code maxTokens} must fit the context, the estimate the KV memory limit, and the queue
   * must have room.
   *
   * @throws ApiException 400 if the request can never run, 429 if the queue is full, 503 when
   *     shutting down
   */
  public Sequence submit(
      int[] prompt,
      int maxTokens,
      SamplerConfig sampling,
      KvPlan plan,
      boolean ignoreEos,
      List<String> stops) {
    return submit(prompt, null, maxTokens, sampling, plan, ignoreEos, stops);
  }

  /**
   * As {@link #submit(int[], int, SamplerConfig, KvPlan, boolean, List)}, with the prompt's segment
   * labels (a chat rendering's roles, or null) for the sequence's cache ({@code
   * KvCache#labelPrompt}).
   */
  public Sequence submit(
      int[] prompt,
      PromptSegments segments,
      int maxTokens,
      SamplerConfig sampling,
      KvPlan plan,
      boolean ignoreEos,
      List<String> stops) {
    return submit(prompt, segments, maxTokens, sampling, plan, ignoreEos, stops, null);
  }

  /**
   * As above, for a prompt of CacheBlend chunks ({@code blend}, null for none; {@link
   * BlendPrefill}).
   */
  Sequence submit(
      int[] prompt,
      PromptSegments segments,
      int maxTokens,
      SamplerConfig sampling,
      KvPlan plan,
      boolean ignoreEos,
      List<String> stops,
      BlendPrompt blend) {
    RequestLimits.check(prompt, maxTokens, vocab, context);
    long estimate = plan.estimateBytes(prompt.length, maxTokens);
    if (!admission.fitsAlone(estimate)) {
      metrics.rejected("too_large");
      throw new ApiException(
          400,
          "this request needs about "
              + estimate
              + " bytes of KV cache but the server's --kv-memory is "
              + pool.limitBytes()
              + " bytes; lower 'max_tokens', shorten the prompt or use a compressing 'kv' spec",
          ApiException.INVALID_REQUEST,
          "max_tokens",
          "kv_memory_exceeded");
    }
    Sequence s =
        new Sequence(
            ids.incrementAndGet(),
            prompt,
            maxTokens,
            new Sampler(sampling),
            plan,
            ignoreEos,
            tokenizer.streamingDecoder(false),
            stops,
            estimate,
            segments);
    s.blend = blend;
    if (maxTokens == 0) {
      s.state = Sequence.State.DONE;
      s.emit(new SequenceEvent.Done(FinishReason.LENGTH, usage(s, 0, 0), null));
      return s;
    }
    lock.lock();
    try {
      if (closing) {
        throw new ApiException(
            503, "the server is shutting down", "server_error", null, "shutting_down");
      }
      int blocked = blockedWaiting(s);
      if (blocked > config.queueCapacity()) {
        metrics.rejected("queue_full");
        throw new ApiException(
            429,
            "the server is busy ("
                + (blocked - 1)
                + " requests waiting for a batch slot or KV memory); retry shortly",
            "rate_limit_error",
            null,
            "queue_full");
      }
      waiting.add(s);
      wake.signal();
    } finally {
      lock.unlock();
    }
    return s;
  }

  /**
   * How many requests would wait with {@code next} queued (lock held). Waiting ones are admitted in
   * order while a slot is free and their reservations fit next to the admitted ones: those count as
   * running, each from the first that does not fit on as waiting, for a slot or for KV memory
   * alike. Requests whose clients left are about to be dropped and do not count.
   */
  private int blockedWaiting(Sequence next) {
    long free = admission.limitBytes() - admission.reservedBytes();
    int slots = admission.maxBatch() - admission.admitted();
    int blocked = 0;
    for (Sequence w : waiting) {
      if (w.cancelled()) {
        continue;
      }
      if (blocked == 0 && slots > 0 && w.reservation <= free) {
        free -= w.reservation;
        slots--;
      } else {
        blocked++;
      }
    }
    return blocked == 0 && slots > 0 && next.reservation <= free ? 0 : blocked + 1;
  }

  /** Wakes the scheduler, e.g. after a sequence was cancelled. */
  public void wakeUp() {
    lock.lock();
    try {
      wake.signal();
    } finally {
      lock.unlock();
    }
  }

  /**
   * Stops admitting; waiting requests end at once with an error, running ones may finish within
   * {@code graceMillis}, after which they end with an error too. Returns when the thread is done.
   */
  public void shutdown(long graceMillis) {
    lock.lock();
    try {
      if (!closing) {
        closing = true;
        drainDeadline = System.nanoTime() + graceMillis * 1_000_000L;
      }
      wake.signal();
    } finally {
      lock.unlock();
    }
    try {
      thread.join();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  @Override
  public void close() {
    shutdown(0);
  }

  private void run() {
    while (true) {
      boolean drainExpired;
      List<Sequence> admitted = new ArrayList<>();
      List<Sequence> rejected = new ArrayList<>();
      lock.lock();
      try {
        while (active.isEmpty() && waiting.isEmpty() && !closing) {
          wake.awaitUninterruptibly();
        }
        if (closing) {
          rejected.addAll(waiting);
          waiting.clear();
        }
        dropCancelledWaiting();
        admit(admitted);
        drainExpired = closing && System.nanoTime() >= drainDeadline;
        if (closing && active.isEmpty() && admitted.isEmpty()) {
          for (Sequence s : rejected) {
            finishError(s, "the server is shutting down");
          }
          activeCount = 0;
          return;
        }
      } finally {
        lock.unlock();
      }
      for (Sequence s : rejected) {
        finishError(s, "the server is shutting down");
      }
      for (Sequence s : admitted) {
        s.cache = newCache(s);
        s.recompute = new KvRecompute(engine, () -> newCache(s), System.err::println);
        if (s.cache instanceof ManagedKvCache m && m.promptSegments() != null) {
          metrics.labelledPrompt(m.promptSegments());
        }
        restorePrefix(s);
        s.history = new int[s.prompt.length + s.maxTokens];
        System.arraycopy(s.prompt, 0, s.history, 0, s.prompt.length);
        s.length = s.prompt.length;
        s.state = Sequence.State.PREFILL;
        active.add(s);
      }
      for (Sequence s : List.copyOf(active)) {
        if (s.cancelled()) {
          finish(s, FinishReason.CANCELLED, null);
        } else if (drainExpired) {
          finish(s, FinishReason.ERROR, "the server is shutting down");
        }
      }
      activeCount = active.size();
      if (!active.isEmpty()) {
        step();
      }
      activeCount = active.size();
      metrics.kvBytesBySpec(bytesBySpec());
    }
  }

  /**
   * An empty cache for {@code s}: its plan's (or DistAttention's), told the prompt's length and
   * labels.
   */
  private KvCache newCache(Sequence s) {
    KvCacheFactory remote = remoteCaches;
    KvCache cache = remote != null ? remote.create(engine.config()) : s.plan.create();
    cache.beginPrompt(s.prompt.length);
    if (s.segments != null) {
      cache.labelPrompt(s.segments);
    }
    return cache;
  }

  /** The prompt's stored prefix into the new cache, if the tiers hold one: prefill starts after. */
  private void restorePrefix(Sequence s) {
    PrefixCache prefix = prefixCache;
    if (prefix == null || s.blend != null || !(s.cache instanceof ManagedKvCache cache)) {
      return; // no tiers; a CacheBlend prompt (its chunks are reused instead); a cluster cache
    }
    try {
      s.restored = prefix.restore(cache, s.plan.text(), s.prompt, s.prompt.length);
    } catch (RuntimeException e) {
      System.err.println("kvslim: warning: restoring a prefix from the KV tiers failed: " + e);
      s.cache.close(); // start over with an empty cache: the whole prompt is prefilled
      s.cache = newCache(s);
      s.restored = 0;
    }
    s.prefilled = s.restored;
  }

  /** The blocks the prefill settled into the tiers (those it restored are there already). */
  private void storePrefix(Sequence s) {
    PrefixCache prefix = prefixCache;
    if (prefix == null || s.blend != null || !(s.cache instanceof ManagedKvCache cache)) {
      return;
    }
    try {
      prefix.store(cache, s.plan.text(), s.prompt, s.prompt.length, s.restored);
    } catch (RuntimeException e) {
      System.err.println("kvslim: warning: storing a prefix in the KV tiers failed: " + e);
    }
  }

  /** Forgets waiting requests whose clients left, wherever they are in the queue (lock held). */
  private void dropCancelledWaiting() {
    waiting.removeIf(
        s -> {
          if (!s.cancelled()) {
            return false;
          }
          s.state = Sequence.State.DONE;
          s.emit(new SequenceEvent.Done(FinishReason.CANCELLED, usage(s, 0, 0), null));
          return true;
        });
  }

  /** Moves waiting sequences into the batch, in order, while {@link #admission} admits them. */
  private void admit(List<Sequence> admitted) {
    while (!waiting.isEmpty() && admission.tryAdmit(waiting.peek().reservation)) {
      admitted.add(waiting.poll());
    }
  }

  /** One forward pass over every decoding sequence and a prefill chunk; then sampling. */
  private void step() {
    for (Sequence s : List.copyOf(active)) {
      if (s.state == Sequence.State.PREFILL && s.blend != null) {
        blendPrefill(s);
      }
    }
    buildBatch();
    while (!fitsInPool()) {
      Sequence victim = victim();
      finish(victim, FinishReason.LENGTH, null);
      buildBatch();
    }
    if (batch.rows() == 0) {
      return;
    }
    int nl = batch.logitCount();
    if (logits.length < nl * vocab) {
      logits = new float[nl * vocab];
    }
    long t0 = System.nanoTime();
    try {
      engine.forward().run(batch, logits);
    } catch (RuntimeException e) {
      // a failed step may leave these caches half-appended: none of them can go on as they are
      if (KvRecompute.lostBlock(e) != null) { // a spilled block was lost: recompute, step again
        recompute(e);
        return;
      }
      boolean memory = e instanceof KvMemoryExhaustedException;
      if (e instanceof KvUnavailableException) { // a cluster member left: say so (503)
        System.err.println("kvslim: " + e.getMessage());
        for (Sequence s : List.copyOf(segments)) {
          finish(s, FinishReason.ERROR, e.getMessage());
        }
        return;
      }
      if (!memory) {
        System.err.println("kvslim: internal error in a forward step: " + e);
        e.printStackTrace();
      }
      for (Sequence s : List.copyOf(segments)) {
        if (memory) {
          finish(s, FinishReason.LENGTH, null);
        } else {
          finish(s, FinishReason.ERROR, "internal error while generating");
        }
      }
      return;
    }
    int produced = 0;
    int logitRow = 0;
    sampled.clear();
    for (int i = 0; i < segments.size(); i++) {
      Sequence s = segments.get(i);
      int rows = batch.segmentEnd(i) - batch.segmentStart(i);
      if (s.state == Sequence.State.DECODE) {
        s.cache.afterStep(KvCache.StepKind.DECODE);
        sampled.add(s);
      } else {
        s.prefilled += rows;
        if (s.prefilled == s.prompt.length) {
          engine.replayPrompt(s.cache, s.prompt, 0, s.prompt.length, 0); // KVzip scores here
          s.cache.afterStep(KvCache.StepKind.PREFILL);
          storePrefix(s);
          s.state = Sequence.State.DECODE;
          sampled.add(s);
        }
      }
      s.peakBytes = Math.max(s.peakBytes, s.cache.bytes());
    }
    for (Sequence s : sampled) {
      int next = s.sampler.sample(logits, logitRow++ * vocab, vocab, s.history, s.length);
      produced++;
      accept(s, next);
    }
    metrics.step(produced, System.nanoTime() - t0);
  }

  /**
   * A step failed because a spilled KV block was lost (its tier went away, a key is missing, a
   * checksum failed; {@link KvRecompute}): every cache of the step may be half-appended, so each is
   * recomputed from the token ids to where it stood before the step (a decoding sequence's prompt
   * and generated tokens but the last; a prefill starts over), into a cache spilling to a local
   * file, and the next step runs this one again. A sequence that cannot be recomputed (it was
   * before, or the recompute failed) ends with its one-sentence error (503).
   */
  private void recompute(RuntimeException failure) {
    float[] scratch = new float[vocab];
    for (Sequence s : List.copyOf(segments)) {
      try {
        if (s.state == Sequence.State.DECODE) {
          s.cache =
              s.recompute.recover(
                  s.cache, failure, s.history, s.prompt.length, s.length - 1, scratch);
        } else {
          s.cache = s.recompute.recover(s.cache, failure, s.prompt, 0, 0, null);
          s.prefilled = 0;
          s.restored = 0;
        }
        s.peakBytes = Math.max(s.peakBytes, s.cache.bytes());
      } catch (KvUnavailableException e) {
        System.err.println("kvslim: " + e.getMessage());
        finish(s, FinishReason.ERROR, e.getMessage());
      }
    }
  }

  /** A CacheBlend prompt's whole prefill, alone, then its first token. */
  private void blendPrefill(Sequence s) {
    if (appendBytes(s.cache, s.prompt.length, 0) > pool.limitBytes() - pool.usedBytes()) {
      finish(s, FinishReason.LENGTH, null);
      return;
    }
    if (logits.length < vocab) {
      logits = new float[vocab];
    }
    long t0 = System.nanoTime();
    try {
      blender.prefill(s, logits);
    } catch (KvMemoryExhaustedException e) {
      finish(s, FinishReason.LENGTH, null);
      return;
    } catch (IllegalArgumentException e) {
      finishError(s, e.getMessage());
      return;
    }
    s.prefilled = s.prompt.length;
    s.state = Sequence.State.DECODE;
    s.peakBytes = Math.max(s.peakBytes, s.cache.bytes());
    accept(s, s.sampler.sample(logits, 0, vocab, s.history, s.length));
    metrics.step(1, System.nanoTime() - t0);
  }

  /** Decode rows of every decoding sequence, then prefill chunks in admission order. */
  private void buildBatch() {
    batch.clear();
    segments.clear();
    for (Sequence s : active) {
      if (s.state == Sequence.State.DECODE) {
        batch.add(s.cache, s.history, s.length - 1, s.length, s.length - 1, false, true);
        segments.add(s);
      }
    }
    int budget = config.prefillChunk();
    for (Sequence s : active) {
      if (budget == 0) {
        break;
      }
      if (s.state == Sequence.State.PREFILL && s.blend == null) {
        int n = Math.min(budget, s.prompt.length - s.prefilled);
        int chunk = s.cache.prefillChunk(); // compresses inside the prefill: not across a chunk end
        if (chunk != Integer.MAX_VALUE) {
          n = Math.min(n, (s.prefilled / chunk + 1) * chunk - s.prefilled);
        }
        boolean last = s.prefilled + n == s.prompt.length;
        batch.add(s.cache, s.prompt, s.prefilled, s.prefilled + n, s.prefilled, false, last);
        segments.add(s);
        budget -= n;
      }
    }
  }

  /** Whether the pool can hold every block this step's appends will allocate. */
  private boolean fitsInPool() {
    long needed = 0;
    for (int i = 0; i < segments.size(); i++) {
      int rows = batch.segmentEnd(i) - batch.segmentStart(i);
      needed += appendBytes(segments.get(i).cache, rows, batch.positions()[batch.segmentStart(i)]);
    }
    return needed <= pool.limitBytes() - pool.usedBytes();
  }

  private static long appendBytes(KvCache kv, int rows, int firstPosition) {
    if (!(kv instanceof ManagedKvCache cache)) {
      return 0; // held elsewhere (DistAttention's members)
    }
    long bytes = 0;
    for (int l = 0; l < cache.layerCount(); l++) {
      var layer = cache.paged(l);
      for (int g = 0; g < layer.kvHeads(); g++) {
        bytes += layer.head(g).appendBytes(rows, firstPosition);
      }
    }
    return bytes;
  }

  /** The sequence to end when a step does not fit: the newest prefill, else the largest overrun. */
  private Sequence victim() {
    for (int i = active.size() - 1; i >= 0; i--) {
      if (active.get(i).state == Sequence.State.PREFILL) {
        return active.get(i);
      }
    }
    Sequence worst = active.getFirst();
    for (Sequence s : active) {
      if (s.cache.bytes() - s.reservation > worst.cache.bytes() - worst.reservation) {
        worst = s;
      }
    }
    return worst;
  }

  /** Takes a sampled token: stop conditions first, then the text it completes. */
  private void accept(Sequence s, int next) {
    boolean eog = !s.ignoreEos && tokenizer.isEog(next);
    String text = "";
    if (!eog) {
      s.history[s.length++] = next;
      if (++s.generated == 1) {
        metrics.firstToken(System.nanoTime() - s.submittedNanos);
      }
      text = s.stops.feed(s.decoder.feed(next));
    }
    boolean ends = eog || s.stops.stopped() || s.generated >= s.maxTokens || s.length >= context;
    if (ends && !s.stops.stopped()) {
      // the end of the text: characters and possible stop prefixes held back come out now
      text += s.stops.feed(s.decoder.flush());
      if (!s.stops.stopped()) {
        text += s.stops.flush();
      }
    }
    if (!eog || !text.isEmpty()) {
      s.emit(new SequenceEvent.Delta(text, eog ? -1 : next));
    }
    if (eog || s.stops.stopped()) {
      finish(s, FinishReason.STOP, null);
    } else if (ends) {
      finish(s, FinishReason.LENGTH, null);
    }
  }

  private void finishError(Sequence s, String message) {
    s.state = Sequence.State.DONE;
    s.emit(new SequenceEvent.Done(FinishReason.ERROR, usage(s, 0, 0), message));
  }

  /** Retires an admitted sequence: its cache is closed now, its reservation released. */
  private void finish(Sequence s, FinishReason reason, String error) {
    long bytes = s.cache.bytes();
    long peak = Math.max(s.peakBytes, bytes);
    s.cache.close();
    active.remove(s);
    lock.lock(); // submit() reads the reservations to bound the queue
    try {
      admission.release(s.reservation);
    } finally {
      lock.unlock();
    }
    s.state = Sequence.State.DONE;
    metrics.finished(reason);
    s.emit(new SequenceEvent.Done(reason, usage(s, bytes, peak), error));
  }

  private SequenceEvent.Usage usage(Sequence s, long bytes, long peak) {
    // tokens whose keys and values went into the cache: the prompt and all but the last sampled
    long cached = s.prefilled + Math.max(0, s.generated - 1);
    double ratio = bytes > 0 ? (double) s.plan.f16Bytes(cached) / bytes : 0;
    return new SequenceEvent.Usage(s.prompt.length, s.generated, bytes, peak, ratio, s.plan.text());
  }

  private Map<String, Long> bytesBySpec() {
    Map<String, Long> out = new HashMap<>();
    for (Sequence s : active) {
      out.merge(s.plan.text(), s.cache.bytes(), Long::sum);
    }
    return out;
  }
}
