package io.kvslim.bench;

import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.KvCaches;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.KvMemoryExhaustedException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Batch throughput under a fixed KV memory budget (BENCHMARKS.md, Speed): sequences of L random
 * tokens are admitted into one {@link BlockPool} with the byte limit until the next would not fit
 * (its prefill is refused by the pool, or the pool could not hold every admitted sequence's growth
 * over N decode steps, measured on a probe sequence first); then they decode together with {@link
 * Engine#decodeBatch} for all N steps from the prompt, so every spec's rate "all together" covers
 * the same depths, L to L + N (the rate the specs are compared by). The smaller batch sizes 1, 2,
 * 4, ... are measured after, each on fresh sequences in the same pool over the first max(16,
 * N/sizes) steps.
 */
public final class ThroughputRunner {
  /** Settings of a run. */
  public record Settings(long limitBytes, int length, int gen, int maxBatch, long seed) {
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
    }
  }

  private final Engine engine;
  private final Settings s;

  public ThroughputRunner(Engine engine, Settings settings) {
    this.engine = engine;
    this.s = settings;
    int ctx = engine.config().contextLength();
    if (s.length() + s.gen() > ctx) {
      throw new IllegalArgumentException(
          "--length + --gen = " + (s.length() + s.gen()) + " exceeds the model's context " + ctx);
    }
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
    long growth = Math.max(0, peak - afterPrefill);
    BlockPool pool = new BlockPool(s.limitBytes());
    KvCaches kv = KvSpecs.caches(parsed, pool, engine.config());
    List<KvCache> admitted = new ArrayList<>();
    List<int[]> seqTokens = new ArrayList<>();
    List<Map<String, Object>> out = new ArrayList<>();
    boolean exhausted = false;
    try {
      while (admitted.size() < s.maxBatch()) {
        int[] t = tokens(admitted.size());
        KvCache c = null;
        try {
          c = kv.create();
          engine.prefill(c, t, 0, s.length(), 0, false, one);
        } catch (KvMemoryExhaustedException e) {
          if (c != null) {
            c.close();
          }
          break;
        }
        if (pool.usedBytes() + (admitted.size() + 1) * growth > s.limitBytes()) {
          c.close();
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
      exhausted = all.exhausted();
      double atMax = all.tokensPerSecond();
      // then the smaller batch sizes, each on fresh sequences in the same pool (the admitted ones
      // are closed first), over the first decode steps
      for (KvCache c : admitted) {
        c.close();
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
          KvCache[] fresh = new KvCache[b];
          try {
            for (int i = 0; i < b; i++) {
              fresh[i] = kv.create();
              engine.prefill(fresh[i], seqTokens.get(i), 0, s.length(), 0, false, one);
            }
            Timed t = decode(fresh, seqTokens, b, sweepSteps);
            tps = t.tokensPerSecond();
            done = t.steps();
          } finally {
            for (KvCache c : fresh) {
              if (c != null) {
                c.close();
              }
            }
          }
        }
        Map<String, Object> r =
            ResultStore.record(modelName, spec, "throughput", "sweep", s.length(), null);
        r.put("batch", b);
        r.put("decode_tokens_per_second", tps);
        r.put("decode_steps", done);
        out.add(r);
        progress.advance((long) s.gen() * b / Math.max(1, sizes.size()), spec + " batch " + b);
      }
      Map<String, Object> r =
          ResultStore.record(modelName, spec, "throughput", "max", s.length(), null);
      r.put("batch", n);
      r.put("max_sequences", n);
      r.put("decode_tokens_per_second", atMax);
      r.put("kv_memory_limit", s.limitBytes());
      r.put("gen", s.gen());
      r.put("kv_bytes", afterPrefill);
      r.put("kv_bytes_peak", peak);
      r.put("kv_bytes_f16_full", QualityRunner.f16Bytes(engine.config(), s.length()));
      r.put(
          "compression_ratio",
          afterPrefill == 0
              ? Double.NaN
              : QualityRunner.f16Bytes(engine.config(), s.length()) / (double) afterPrefill);
      r.put("pool_peak_bytes", pool.peakBytes());
      r.put("exhausted_during_decode", exhausted);
      r.put("capped_by_max_batch", n == s.maxBatch());
      out.add(r);
      return out;
    } finally {
      for (KvCache c : admitted) {
        c.close();
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
