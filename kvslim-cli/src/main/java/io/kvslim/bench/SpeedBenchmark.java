package io.kvslim.bench;

import io.kvslim.engine.Engine;
import io.kvslim.kv.KvCache;
import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Prefill and decode speed, measured like llama-bench: a prompt of P random tokens into an empty
 * cache (prefill), and N single-token steps after a prefill of D tokens (decode at depth D), for B
 * sequences decoding together. W warm-up runs (default {@link #DEFAULT_WARMUP}), then the median
 * and spread of R runs. At a depth, the runs decode one after another in one prefilled cache (run r
 * at depth {@code D + (W+r)·N}) when the context has room for all of them, else each run prefills
 * its own.
 *
 * <p>Why two warm-up runs by default: with one, the first measured pp512 run on the 110m model
 * still ran while C2 compiled (559 tok/s against 756–800 for the nine after it, AMD EPYC, 2
 * threads); a JIT needs more than llama-bench's one warm-up to reach its steady state, which is
 * what a server runs at. A prompt-only measurement's warm-up runs also decode {@link
 * #WARMUP_DECODE_STEPS} tokens after their prefill (see {@link #warmDecode}).
 */
public final class SpeedBenchmark {
  /** Settings of one measurement. */
  public record Settings(
      int prompt, int gen, int depth, int batch, int repeat, int warmup, long seed) {
    /** {@link #DEFAULT_WARMUP} warm-up runs. */
    public Settings(int prompt, int gen, int depth, int batch, int repeat, long seed) {
      this(prompt, gen, depth, batch, repeat, DEFAULT_WARMUP, seed);
    }

    public Settings {
      if (prompt < 0 || gen < 0 || depth < 0) {
        throw new IllegalArgumentException("--prompt, --gen and --depth must be >= 0");
      }
      if (batch < 1) {
        throw new IllegalArgumentException("--batch must be >= 1, got " + batch);
      }
      if (repeat < 1) {
        throw new IllegalArgumentException("--repeat must be >= 1, got " + repeat);
      }
      if (warmup < 0) {
        throw new IllegalArgumentException("--warmup must be >= 0, got " + warmup);
      }
    }
  }

  /** Warm-up runs before the measured ones unless the settings say otherwise. */
  public static final int DEFAULT_WARMUP = 2;

  /** Median and spread (min, max) of a set of runs. */
  public record Stat(double median, double min, double max, double[] runs) {
    static Stat of(double[] v) {
      double[] s = v.clone();
      Arrays.sort(s);
      double med =
          s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
      return new Stat(med, s[0], s[s.length - 1], v);
    }

    /** Half the min-max range relative to the median, in percent. */
    public double spreadPercent() {
      return median == 0 ? 0 : 50 * (max - min) / median;
    }
  }

  /** Results: tokens/s (aggregate over the batch for decode) and KV bytes at the end of decode. */
  public record Result(
      Settings settings,
      Stat prefillTokensPerSecond,
      Stat decodeTokensPerSecond,
      long kvBytesAfterDecode,
      double weightGbPerSecond,
      double kvGbPerSecond) {}

  private final Engine engine;

  public SpeedBenchmark(Engine engine) {
    this.engine = engine;
  }

  public Result run(Settings s) {
    int ctx = engine.config().contextLength();
    if (s.prompt() > ctx || s.depth() + s.gen() > ctx) {
      throw new IllegalArgumentException(
          "prompt/depth+gen exceed the model's context length " + ctx);
    }
    SplittableRandom rnd = new SplittableRandom(s.seed());
    int vocab = engine.config().vocabSize();
    // at a depth, the runs continue one prefilled cache (a long prompt is prefilled once per
    // measurement, not once per run) where the context has room for all of them
    int runs = s.repeat() + s.warmup();
    boolean continued = s.depth() > 0 && s.depth() + (long) s.gen() * runs <= ctx;
    int decodeEnd = continued ? s.depth() + s.gen() * runs : s.depth() + s.gen();
    int maxLen = Math.max(s.prompt(), decodeEnd) + 1;
    int[] tokens = new int[maxLen];
    for (int i = 0; i < maxLen; i++) {
      tokens[i] = rnd.nextInt(vocab);
    }
    double[] pre = new double[s.repeat()];
    double[] dec = new double[s.repeat()];
    long kvBytes = 0;
    double kvPerStep = 0;
    float[] logits = new float[vocab * s.batch()];
    KvCache[] caches = new KvCache[s.batch()];
    try {
      for (int run = -s.warmup(); run < s.repeat(); run++) {
        if (s.prompt() > 0) {
          try (KvCache cache = engine.newCache()) {
            long t0 = System.nanoTime();
            engine.prefill(cache, tokens, 0, s.prompt(), 0, false, logits);
            long t1 = System.nanoTime();
            if (run >= 0) {
              pre[run] = s.prompt() * 1e9 / (t1 - t0);
            } else if (s.gen() == 0) {
              warmDecode(cache, tokens, s.prompt(), ctx, logits);
            }
          }
        }
        if (s.gen() == 0) {
          continue;
        }
        if (!continued || run == -s.warmup()) {
          close(caches);
          for (int b = 0; b < s.batch(); b++) {
            caches[b] = engine.newCache();
            if (s.depth() > 0) {
              engine.prefill(caches[b], tokens, 0, s.depth(), 0, false, logits);
            }
          }
        }
        int first = s.depth() + (continued ? (run + s.warmup()) * s.gen() : 0);
        int[] step = new int[s.batch()];
        int[] pos = new int[s.batch()];
        long t0 = System.nanoTime();
        for (int g = 0; g < s.gen(); g++) {
          for (int b = 0; b < s.batch(); b++) {
            step[b] = tokens[first + g];
            pos[b] = first + g;
          }
          if (s.batch() == 1) {
            engine.decode(caches[0], step[0], pos[0], logits);
          } else {
            engine.decodeBatch(caches, step, pos, s.batch(), logits);
          }
        }
        long t1 = System.nanoTime();
        if (run >= 0) {
          long bytesSum = 0;
          for (KvCache c : caches) {
            bytesSum += c.bytes();
          }
          dec[run] = (double) s.gen() * s.batch() * 1e9 / (t1 - t0);
          kvBytes = bytesSum;
          // KV bytes read per step: about the mean cache size over the run
          int end = first + s.gen();
          kvPerStep = bytesSum * (end - s.gen() / 2.0) / end;
        }
      }
    } finally {
      close(caches);
    }
    Stat p = Stat.of(pre);
    Stat d = Stat.of(dec);
    double steps = d.median() / s.batch();
    double weightGbs = engine.model().weightBytesPerToken() * steps / 1e9;
    double kvGbs = kvPerStep * steps / 1e9;
    return new Result(s, p, d, kvBytes, weightGbs, kvGbs);
  }

  /** Decode steps after each warm-up prefill of a prompt-only measurement. */
  static final int WARMUP_DECODE_STEPS = 16;

  /**
   * A few untimed decode steps after a warm-up prefill when the measurement decodes nothing: a
   * prefill computes its last row's logits with the decode kernel (one activation row), which a few
   * prefills alone leave to the interpreter and C1, where the Vector API is not compiled to vector
   * instructions. In a JFR profile of pp512 on the 110m model that one product took 6% of every
   * measured prefill; in a server the decode steps compile it within the first request.
   */
  private void warmDecode(KvCache cache, int[] tokens, int prompt, int ctx, float[] logits) {
    int steps = Math.min(WARMUP_DECODE_STEPS, ctx - prompt);
    for (int g = 0; g < steps; g++) {
      engine.decode(cache, tokens[g % tokens.length], prompt + g, logits);
    }
  }

  private static void close(KvCache[] caches) {
    for (int b = 0; b < caches.length; b++) {
      if (caches[b] != null) {
        caches[b].close();
        caches[b] = null;
      }
    }
  }
}
