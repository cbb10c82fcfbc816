package io.kvslim.bench;

import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.policy.KvCaches;
import io.kvslim.kv.policy.ManagedKvCache;
import io.kvslim.kv.spec.KvSpec;
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
 * Engine#decodeBatch}, at batch sizes 1, 2, 4, ... up to all of them.
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
      int steps = Math.max(1, s.gen() / Math.max(1, sizes.size()));
      KvCache[] caches = admitted.toArray(new KvCache[0]);
      int[] pos = new int[n];
      java.util.Arrays.fill(pos, s.length());
      float[] logits = new float[Math.max(1, n) * vocab];
      double atMax = 0;
      for (int b : sizes) {
        int[] step = new int[b];
        int[] positions = new int[b];
        long t0 = System.nanoTime();
        int done = 0;
        try {
          for (int g = 0; g < steps && pos[0] < s.length() + s.gen(); g++) {
            for (int i = 0; i < b; i++) {
              step[i] = seqTokens.get(i)[pos[i]];
              positions[i] = pos[i];
            }
            engine.decodeBatch(caches, step, positions, b, logits);
            for (int i = 0; i < b; i++) {
              pos[i]++;
            }
            done++;
          }
        } catch (KvMemoryExhaustedException e) {
          exhausted = true;
        }
        double tps = done == 0 ? 0 : (double) done * b * 1e9 / (System.nanoTime() - t0);
        if (b == n) {
          atMax = tps;
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
