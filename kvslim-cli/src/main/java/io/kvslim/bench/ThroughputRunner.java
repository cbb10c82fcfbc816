package io.kvslim.bench;

import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.KvCaches;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.KvMemoryExhaustedException;
import io.kvslim.server.Admission;
import io.kvslim.server.KvPlan;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Batch throughput under a fixed KV memory budget (BENCHMARKS.md, Speed), admitting sequences as
 * the server does: one {@link BlockPool} with the byte limit, a {@link KvPlan} of the spec for
 * prompts appended in chunks of {@code prefillChunk} tokens, and the server's {@link Admission}
 * rule: sequences of L random tokens, each reserving the plan's estimate for L + N tokens, are
 * admitted while a slot is free and the reservation fits beside the others' (so the count is the
 * number of such requests a server with this {@code --kv-memory} and {@code --max-batch} runs at
 * once). They are prefilled, then decode together with {@link Engine#decodeBatch} for all N steps
 * from the prompt, so every spec's rate "all together" covers the same depths, L to L + N (the rate
 * the specs are compared by). The smaller batch sizes 1, 2, 4, ... are measured after, each on
 * fresh sequences admitted into the same pool, over the first max(16, N/sizes) steps. A probe
 * sequence in its own pool first gives the bytes one sequence actually holds after prefill and at
 * its peak, reported beside the reservation.
 */
public final class ThroughputRunner {
  /** Settings of a run. */
  public record Settings(
      long limitBytes, int length, int gen, int maxBatch, int prefillChunk, long seed) {
    public Settings {
      if (limitBytes < 1) {
        throw new IllegalArgumentException("--kv-memory must be positive");
      }
      if (length < 1 || gen < 1) {
        throw new IllegalArgumentException("--length and --gen must be at least 1");
      }
      if (maxBatch < 1) {
        throw new IllegalArgumentException("--max-batch must be at least 1, got " + maxBatch);
      }
      if (prefillChunk < 1) {
        throw new IllegalArgumentException(
            "--prefill-chunk must be at least 1, got " + prefillChunk);
      }
    }
  }

  private final Engine engine;
  private final Settings s;

  /** A runner on {@code engine}, whose prefill chunk it sets to the settings' one. */
  public ThroughputRunner(Engine engine, Settings settings) {
    this.engine = engine;
    this.s = settings;
    int ctx = engine.config().contextLength();
    if (s.length() + s.gen() > ctx) {
      throw new IllegalArgumentException(
          "--length + --gen = " + (s.length() + s.gen()) + " exceeds the model's context " + ctx);
    }
    engine.setPrefillChunk(s.prefillChunk());
  }

  private int[] tokens(int sequence) {
    SplittableRandom r = new SplittableRandom(s.seed() * 31 + sequence);
    int[] t = new int[s.length() + s.gen()];
    for (int i = 0; i < t.length; i++) {
      t[i] = r.nextInt(engine.config().vocabSize());
    }
    return t;
  }

  /** Records of one spec: variant "sweep" per batch size and one "max" summary. */
  public List<Map<String, Object>> run(String modelName, String spec, Progress progress) {
    KvSpec parsed = KvSpec.parse(spec);
    int vocab = engine.config().vocabSize();
    float[] one = new float[vocab];
    // probe: one sequence alone, to know its bytes after prefill and its peak while decoding
    long afterPrefill;
    long peak;
    int[] probeTokens = tokens(-1);
    try (ManagedKvCache probe = KvSpecs.caches(parsed, new BlockPool(), engine.config()).create()) {
      engine.prefill(probe, probeTokens, 0, s.length(), 0, false, one);
      afterPrefill = probe.bytes();
      for (int g = 0; g < s.gen(); g++) {
        engine.decode(probe, probeTokens[s.length() + g], s.length() + g, one);
      }
      peak = probe.peakBytes();
    }
    BlockPool pool = new BlockPool(s.limitBytes());
    KvPlan plan = KvPlan.of(parsed, pool, engine.config(), s.prefillChunk());
    long reservation = plan.estimateBytes(s.length(), s.gen());
    Admission admission = new Admission(pool.limitBytes(), s.maxBatch());
    List<KvCache> admitted = new ArrayList<>();
    List<int[]> seqTokens = new ArrayList<>();
    List<Map<String, Object>> out = new ArrayList<>();
    boolean prefillExhausted = false;
    try {
      while (admission.tryAdmit(reservation)) {
        int[] t = tokens(admitted.size());
        KvCache c = plan.create();
        try {
          engine.prefill(c, t, 0, s.length(), 0, false, one);
        } catch (KvMemoryExhaustedException e) { // the estimate fell short: reported, not hidden
          c.close();
          admission.release(reservation);
          prefillExhausted = true;
          break;
        }
        admitted.add(c);
        seqTokens.add(t);
        progress.advance(s.length(), spec + " admitted " + admitted.size());
      }
      int n = admitted.size();
      List<Integer> sizes = new ArrayList<>();
      for (int b = 1; b < n; b *= 2) {
        sizes.add(b);
      }
      if (n > 0) {
        sizes.add(n);
      }
      warmUp(parsed, sizes);
      // all together first, over every decode step from the prompt: the rate the specs are
      // compared by then covers the same depths (L to L + N) for every spec
      Timed all =
          n == 0
              ? new Timed(0, 0, false)
              : decode(admitted.toArray(new KvCache[0]), seqTokens, n, s.gen());
      double atMax = all.tokensPerSecond();
      // then the smaller batch sizes, each on fresh sequences in the same pool (the admitted ones
      // retire first), over the first decode steps
      for (KvCache c : admitted) {
        c.close();
        admission.release(reservation);
      }
      admitted.clear();
      int sweepSteps = Math.min(s.gen(), Math.max(16, s.gen() / Math.max(1, sizes.size())));
      for (int b : sizes) {
        double tps;
        int done;
        if (b == n) {
          tps = atMax;
          done = all.steps();
        } else {
          Timed t = sweep(plan, admission, reservation, seqTokens, b, sweepSteps);
          tps = t.tokensPerSecond();
          done = t.steps();
        }
        Map<String, Object> r =
            ResultStore.record(modelName, spec, "throughput", "sweep", s.length(), null);
        r.put("batch", b);
        r.put("decode_tokens_per_second", tps);
        r.put("decode_steps", done);
        out.add(r);
        progress.advance((long) s.gen() * b / Math.max(1, sizes.size()), spec + " batch " + b);
      }
      long f16 = QualityRunner.f16Bytes(engine.config(), s.length());
      Map<String, Object> r =
          ResultStore.record(modelName, spec, "throughput", "max", s.length(), null);
      r.put("batch", n);
      r.put("max_sequences", n);
      r.put("decode_tokens_per_second", atMax);
      r.put("kv_memory_limit", s.limitBytes());
      r.put("gen", s.gen());
      r.put("prefill_chunk", s.prefillChunk());
      r.put("kv_bytes_reserved", reservation);
      r.put("kv_bytes", afterPrefill);
      r.put("kv_bytes_peak", peak);
      r.put("kv_bytes_f16_full", f16);
      r.put("compression_ratio", afterPrefill == 0 ? Double.NaN : f16 / (double) afterPrefill);
      r.put("pool_peak_bytes", pool.peakBytes());
      r.put("exhausted_during_prefill", prefillExhausted);
      r.put("exhausted_during_decode", all.exhausted());
      r.put("capped_by_max_batch", n == s.maxBatch());
      out.add(r);
      return out;
    } finally {
      for (KvCache c : admitted) {
        c.close();
      }
    }
  }

  /** Admits {@code b} fresh sequences, prefills them, decodes them together, retires them. */
  private Timed sweep(
      KvPlan plan, Admission admission, long reservation, List<int[]> seqTokens, int b, int steps) {
    float[] one = new float[engine.config().vocabSize()];
    KvCache[] fresh = new KvCache[b];
    try {
      for (int i = 0; i < b; i++) {
        if (!admission.tryAdmit(reservation)) {
          throw new IllegalStateException("batch " + b + " no longer fits what fitted before");
        }
        fresh[i] = plan.create();
        engine.prefill(fresh[i], seqTokens.get(i), 0, s.length(), 0, false, one);
      }
      return decode(fresh, seqTokens, b, steps);
    } finally {
      for (KvCache c : fresh) {
        if (c != null) {
          c.close();
          admission.release(reservation);
        }
      }
    }
  }

  /** A timed batched decode: its rate, its steps, and whether the pool refused a step. */
  private record Timed(double tokensPerSecond, int steps, boolean exhausted) {}

  /** Decodes the first {@code b} sequences together for up to {@code steps} steps from L. */
  private Timed decode(KvCache[] caches, List<int[]> seqTokens, int b, int steps) {
    int vocab = engine.config().vocabSize();
    float[] logits = new float[b * vocab];
    int[] step = new int[b];
    int[] positions = new int[b];
    long t0 = System.nanoTime();
    int done = 0;
    boolean exhausted = false;
    try {
      for (int g = 0; g < steps; g++) {
        for (int i = 0; i < b; i++) {
          step[i] = seqTokens.get(i)[s.length() + g];
          positions[i] = s.length() + g;
        }
        engine.decodeBatch(caches, step, positions, b, logits);
        done++;
      }
    } catch (KvMemoryExhaustedException e) {
      exhausted = true;
    }
    double tps = done == 0 ? 0 : (double) done * b * 1e9 / (System.nanoTime() - t0);
    return new Timed(tps, done, exhausted);
  }

  /**
   * A few batched decode steps at every measured batch size on short throwaway sequences (outside
   * the budgeted pool), so the timed sweep runs compiled kernels: without it the first sizes timed
   * the JIT (a batch of 2 measured 30 tok/s in one run, a quarter of its rate).
   */
  private void warmUp(KvSpec spec, List<Integer> sizes) {
    int vocab = engine.config().vocabSize();
    int prompt = Math.min(32, s.length());
    int steps = 4;
    KvCaches scratch = KvSpecs.caches(spec, new BlockPool(), engine.config());
    for (int b : sizes) {
      KvCache[] caches = new KvCache[b];
      try {
        float[] logits = new float[b * vocab];
        int[] step = new int[b];
        int[] positions = new int[b];
        for (int i = 0; i < b; i++) {
          caches[i] = scratch.create();
          int[] t = tokens(1_000_000 + i);
          engine.prefill(caches[i], t, 0, prompt, 0, false, logits);
        }
        for (int g = 0; g < steps; g++) {
          for (int i = 0; i < b; i++) {
            step[i] = (7 * g + i) % vocab;
            positions[i] = prompt + g;
          }
          engine.decodeBatch(caches, step, positions, b, logits);
        }
      } finally {
        for (KvCache c : caches) {
          if (c != null) {
            c.close();
          }
        }
      }
    }
  }

  /** Adds the ratios to the full cache's summary (the first spec's) to every "max" record. */
  public static void addRatios(List<Map<String, Object>> records) {
    Map<String, Object> base = null;
    for (Map<String, Object> r : records) {
      if ("max".equals(r.get("variant")) && "full".equals(r.get("spec"))) {
        base = r;
      }
    }
    if (base == null) {
      return;
    }
    double seqs = ReportWriter.num(base, "max_sequences");
    double tps = ReportWriter.num(base, "decode_tokens_per_second");
    for (Map<String, Object> r : records) {
      if ("max".equals(r.get("variant"))) {
        r.put(
            "sequences_vs_full",
            seqs == 0 ? Double.NaN : ReportWriter.num(r, "max_sequences") / seqs);
        r.put(
            "tokens_per_second_vs_full",
            tps == 0 ? Double.NaN : ReportWriter.num(r, "decode_tokens_per_second") / tps);
      }
    }
  }
}
