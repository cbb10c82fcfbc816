package io.kvslim.bench;

import io.kvslim.engine.Engine;
import io.kvslim.engine.KvCacheFactory;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import io.kvslim.model.Numerics;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * {@link SpeedBenchmark} for several specs and depths in one process: prefill and decode tokens/s,
 * KV bytes at each depth and the time the policies spent in each decode step ({@link
 * io.kvslim.kv.cache.ManagedKvCache#decodePolicyNanos}: not the prefill's).
 */
public final class SpeedSuite {
  private SpeedSuite() {}

  /** One measurement and the overhead of the spec's policies during it. */
  public record Run(
      String spec, SpeedBenchmark.Result result, long policyNanos, long steps, long f16Bytes) {
    public double policyMsPerStep() {
      return steps == 0 ? 0 : policyNanos / 1e6 / steps;
    }

    /** KV bytes of one sequence after the decode run. */
    public long kvBytesPerSequence() {
      return result.kvBytesAfterDecode() / result.settings().batch();
    }
  }

  /**
   * Measures {@code spec} with {@code settings} on its own engine with {@code numerics} (the model
   * is shared).
   */
  public static Run measure(
      Model model, int threads, Numerics numerics, String spec, SpeedBenchmark.Settings settings) {
    List<ManagedKvCache> made = new ArrayList<>();
    KvCacheFactory inner = KvSpecs.factory(KvSpec.parse(spec), new BlockPool());
    KvCacheFactory recording =
        cfg -> {
          KvCache c = inner.create(cfg);
          if (c instanceof ManagedKvCache m) {
            made.add(m);
          }
          return c;
        };
    try (Engine engine = new Engine(model, threads, recording, numerics)) {
      SpeedBenchmark.Result r = new SpeedBenchmark(engine).run(settings);
      long nanos = 0;
      long steps = 0;
      for (ManagedKvCache m : made) {
        // the decode steps' own policy time: not the prefill's (a quantizing policy converts the
        // whole prompt after it), which would read as a per-step cost
        nanos += m.decodePolicyNanos();
        steps += m.decodeSteps();
      }
      long f16 = QualityRunner.f16Bytes(model.config(), (long) settings.depth() + settings.gen());
      return new Run(KvSpec.parse(spec).text(), r, nanos, steps, f16);
    }
  }

  /** The record of a run in the report format; {@code full} is the full cache's run, or null. */
  public static Map<String, Object> record(String modelName, Run run, Run full) {
    SpeedBenchmark.Result r = run.result();
    SpeedBenchmark.Settings s = r.settings();
    Map<String, Object> m =
        ResultStore.record(modelName, run.spec(), "speed", "", s.prompt(), (double) s.depth());
    m.put("batch", s.batch());
    m.put("gen", s.gen());
    m.put("repeat", s.repeat());
    m.put("warmup", s.warmup());
    m.put("prefill_tokens_per_second", r.prefillTokensPerSecond().median());
    m.put("prefill_tokens_per_second_min", r.prefillTokensPerSecond().min());
    m.put("prefill_tokens_per_second_max", r.prefillTokensPerSecond().max());
    m.put("prefill_tokens_per_second_spread_percent", r.prefillTokensPerSecond().spreadPercent());
    m.put("decode_tokens_per_second", r.decodeTokensPerSecond().median());
    m.put("decode_tokens_per_second_min", r.decodeTokensPerSecond().min());
    m.put("decode_tokens_per_second_max", r.decodeTokensPerSecond().max());
    m.put("decode_tokens_per_second_spread_percent", r.decodeTokensPerSecond().spreadPercent());
    if (full != null) {
      m.put(
          "decode_vs_full",
          r.decodeTokensPerSecond().median() / full.result().decodeTokensPerSecond().median());
      m.put(
          "prefill_vs_full",
          r.prefillTokensPerSecond().median() / full.result().prefillTokensPerSecond().median());
    }
    long bytes = run.kvBytesPerSequence();
    m.put("kv_bytes", bytes);
    m.put("kv_bytes_f16_full", run.f16Bytes());
    m.put("compression_ratio", bytes == 0 ? Double.NaN : run.f16Bytes() / (double) bytes);
    m.put("policy_ms_per_step", run.policyMsPerStep());
    m.put("weight_gb_per_second", r.weightGbPerSecond());
    m.put("kv_gb_per_second", r.kvGbPerSecond());
    return m;
  }
}
