package io.kvslim.engine;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.file.Path;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * One prompt's prefill timed by CPU time, which a busy shared machine disturbs far less than wall
 * time: the calling thread's plus the engine pool's workers' ({@code kvslim-N-worker-*}), their
 * spinning included; the minimum over {@code -Druns} runs after {@code -Dwarmup} warm-up runs, each
 * into a new cache of spec {@code -Dkv} (full). Arguments: the model file, then optionally the
 * prompt length (512) and the threads (2). One thread leaves the pool's waits out. Prints the first
 * logit of the last row, so runs of two builds can be checked for the same bits. Not a test; run
 * (with the launcher's {@code -XX:+UseParallelGC}) as
 *
 * <pre>
 * mvn -B -o -q dependency:build-classpath -pl kvslim-core -Dmdep.outputFile=target/cp.txt
 * java --add-modules jdk.incubator.vector -XX:+UseParallelGC \
 *     -cp kvslim-core/target/classes:kvslim-core/target/test-classes:$(cat kvslim-core/target/cp.txt) \
 *     io.kvslim.engine.PrefillCpuMain /tmp/110m.gguf 512 1
 * </pre>
 */
public final class PrefillCpuMain {
  private PrefillCpuMain() {}

  public static void main(String[] a) throws Exception {
    ThreadMXBean mx = ManagementFactory.getThreadMXBean();
    int prompt = a.length > 1 ? Integer.parseInt(a[1]) : 512;
    int threads = a.length > 2 ? Integer.parseInt(a[2]) : 2;
    int warmup = Integer.getInteger("warmup", 3);
    int runs = Integer.getInteger("runs", 8);
    KvSpec spec = KvSpec.parse(System.getProperty("kv", "full"));
    try (Model m = Model.load(Path.of(a[0]));
        Engine e = new Engine(m, threads, KvSpecs.factory(spec, new BlockPool()))) {
      SplittableRandom rnd = new SplittableRandom(42);
      int[] tokens = new int[prompt];
      for (int i = 0; i < prompt; i++) {
        tokens[i] = rnd.nextInt(m.config().vocabSize());
      }
      float[] logits = new float[m.config().vocabSize()];
      double best = Double.MAX_VALUE;
      double bestWall = Double.MAX_VALUE;
      for (int r = -warmup; r < runs; r++) {
        try (KvCache cache = e.newCache()) {
          long c0 = cpu(mx);
          long w0 = System.nanoTime();
          e.prefill(cache, tokens, 0, prompt, 0, false, logits);
          long w1 = System.nanoTime();
          long c1 = cpu(mx);
          if (r >= 0) {
            best = Math.min(best, (c1 - c0) / 1e6);
            bestWall = Math.min(bestWall, (w1 - w0) / 1e6);
          }
          System.out.printf(
              Locale.ROOT,
              "run %d: cpu %.1f ms, wall %.1f ms%n",
              r,
              (c1 - c0) / 1e6,
              (w1 - w0) / 1e6);
        }
      }
      System.out.printf(
          Locale.ROOT,
          "pp%d, %d threads: min CPU %.1f ms (%.1f tok/s if the threads had whole cores),"
              + " min wall %.1f ms, logit0 %s%n",
          prompt,
          threads,
          best,
          prompt * 1e3 * threads / best,
          bestWall,
          logits[0]);
    }
  }

  /** CPU nanoseconds of this thread and the engine pools' workers. */
  private static long cpu(ThreadMXBean mx) {
    long sum = mx.getCurrentThreadCpuTime();
    for (Thread t : Thread.getAllStackTraces().keySet()) {
      if (t.getName().startsWith("kvslim-") && t.getName().contains("-worker-")) {
        sum += mx.getThreadCpuTime(t.threadId());
      }
    }
    return sum;
  }
}
