package io.kvslim.bench;

import io.kvslim.engine.Engine;
import io.kvslim.engine.blend.BlendOptions;
import io.kvslim.engine.blend.CacheBlend;
import io.kvslim.engine.blend.ChunkKvStore;
import io.kvslim.kv.KvCache;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * CacheBlend against a full prefill on one multi-chunk prompt ({@code kvslim bench blend}): the
 * time to the first token of each (the chunks already in the store, median of the timed
 * repetitions, modes interleaved), and how far each mode's next-token distributions over a
 * teacher-forced continuation are from the full prefill's (mean KL divergence, top-1 agreement).
 */
public final class BlendBenchmark {
  private BlendBenchmark() {}

  private static final ThreadMXBean THREADS = ManagementFactory.getThreadMXBean();

  /** One mode's numbers. */
  public record Row(
      String mode,
      int recomputed,
      double ttftMs,
      double coldMs,
      double speedup,
      double cpuMs,
      double cpuSpeedup,
      double kld,
      double maxKld,
      double top1) {}

  /**
   * @param prefix tokens before the chunks (BOS)
   * @param suffix tokens after them (the query), computed in every mode
   * @param continuation tokens fed after the prompt; their distributions are compared
   */
  public static List<Row> run(
      Engine engine,
      String kvSpec,
      int[] prefix,
      List<int[]> chunks,
      int[] suffix,
      int[] continuation,
      List<BlendOptions> modes,
      int warmup,
      int reps) {
    int vocab = engine.config().vocabSize();
    int[] all = prompt(prefix, chunks, suffix);
    int steps = continuation.length;
    float[][] reference = new float[steps][vocab];
    double[] fullTimes = new double[reps];
    double[] fullCpu = new double[reps];
    List<CacheBlend> blends = new ArrayList<>();
    double[] cold = new double[modes.size()];
    for (int w = 0; w < warmup; w++) {
      try (KvCache cache = engine.newCache()) {
        engine.prefill(cache, all, 0, all.length, 0, false, new float[vocab]); // JIT first
      }
    }
    for (int m = 0; m < modes.size(); m++) {
      CacheBlend blend =
          new CacheBlend(engine, kvSpec, new ChunkKvStore(Long.MAX_VALUE), modes.get(m));
      blends.add(blend);
      try (KvCache cache = engine.newCache()) {
        long t = System.nanoTime();
        blend.prefill(cache, prefix, chunks, suffix, new float[vocab]); // fills the store
        cold[m] = (System.nanoTime() - t) / 1e6;
      }
    }
    double[][] times = new double[modes.size()][reps];
    double[][] cpu = new double[modes.size()][reps];
    int[] recomputed = new int[modes.size()];
    float[] logits = new float[vocab];
    for (int rep = -warmup; rep < reps; rep++) {
      try (KvCache cache = engine.newCache()) {
        long c = THREADS.getCurrentThreadCpuTime();
        long t = System.nanoTime();
        engine.prefill(cache, all, 0, all.length, 0, false, logits);
        double ms = (System.nanoTime() - t) / 1e6;
        if (rep >= 0) {
          fullTimes[rep] = ms;
          fullCpu[rep] = (THREADS.getCurrentThreadCpuTime() - c) / 1e6;
        }
        if (rep == reps - 1) {
          follow(engine, cache, logits, continuation, all.length, reference);
        }
      }
      for (int m = 0; m < modes.size(); m++) {
        try (KvCache cache = engine.newCache()) {
          long c = THREADS.getCurrentThreadCpuTime();
          long t = System.nanoTime();
          CacheBlend.Result r = blends.get(m).prefill(cache, prefix, chunks, suffix, logits);
          double ms = (System.nanoTime() - t) / 1e6;
          if (rep >= 0) {
            times[m][rep] = ms;
            cpu[m][rep] = (THREADS.getCurrentThreadCpuTime() - c) / 1e6;
          }
          recomputed[m] = r.recomputed();
        }
      }
    }
    double fullMs = median(fullTimes);
    double fullCpuMs = median(fullCpu);
    List<Row> rows = new ArrayList<>();
    rows.add(new Row("full prefill", all.length, fullMs, fullMs, 1, fullCpuMs, 1, 0, 0, 1));
    for (int m = 0; m < modes.size(); m++) {
      float[][] got = new float[steps][vocab];
      try (KvCache cache = engine.newCache()) {
        blends.get(m).prefill(cache, prefix, chunks, suffix, logits);
        follow(engine, cache, logits, continuation, all.length, got);
      }
      double kld = 0;
      double maxKld = 0;
      int agree = 0;
      for (int s = 0; s < steps; s++) {
        double k = Metrics.klDivergence(reference[s], 0, got[s], 0, vocab);
        kld += k;
        maxKld = Math.max(maxKld, k);
        if (Metrics.argmax(reference[s], 0, vocab) == Metrics.argmax(got[s], 0, vocab)) {
          agree++;
        }
      }
      double ms = median(times[m]);
      String name =
          modes.get(m).recompute() == 0
              ? "naive reuse (" + modes.get(m) + ")"
              : modes.get(m).toString();
      rows.add(
          new Row(
              name,
              recomputed[m],
              ms,
              cold[m],
              fullMs / ms,
              median(cpu[m]),
              fullCpuMs / median(cpu[m]),
              kld / steps,
              maxKld,
              (double) agree / steps));
    }
    return rows;
  }

  /** Logits after the prompt, then after each continuation token but the last, into {@code out}. */
  private static void follow(
      Engine engine, KvCache cache, float[] first, int[] continuation, int at, float[][] out) {
    System.arraycopy(first, 0, out[0], 0, first.length);
    for (int i = 0; i + 1 < continuation.length; i++) {
      engine.decode(cache, continuation[i], at + i, out[i + 1]);
    }
  }

  static int[] prompt(int[] prefix, List<int[]> chunks, int[] suffix) {
    int n = prefix.length + suffix.length;
    for (int[] c : chunks) {
      n += c.length;
    }
    int[] all = Arrays.copyOf(prefix, n);
    int at = prefix.length;
    for (int[] c : chunks) {
      System.arraycopy(c, 0, all, at, c.length);
      at += c.length;
    }
    System.arraycopy(suffix, 0, all, at, suffix.length);
    return all;
  }

  private static double median(double[] v) {
    double[] s = v.clone();
    Arrays.sort(s);
    return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  }

  /** The rows as a markdown table. */
  public static String table(List<Row> rows) {
    StringBuilder sb = new StringBuilder();
    sb.append(
        "| mode | tokens computed past the check layer | TTFT ms (median) | TTFT ms (chunks not stored) | speedup vs full | CPU ms of the calling thread (median) | CPU speedup | mean KLD vs full | max KLD | top-1 agreement |\n");
    sb.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (Row r : rows) {
      sb.append(
          String.format(
              Locale.ROOT,
              "| %s | %d | %.1f | %.1f | %.2fx | %.1f | %.2fx | %.5f | %.4f | %.3f |%n",
              r.mode(),
              r.recomputed(),
              r.ttftMs(),
              r.coldMs(),
              r.speedup(),
              r.cpuMs(),
              r.cpuSpeedup(),
              r.kld(),
              r.maxKld(),
              r.top1()));
    }
    return sb.toString();
  }
}
