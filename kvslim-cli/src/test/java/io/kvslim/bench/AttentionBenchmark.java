package io.kvslim.bench;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.LayerKv;
import io.kvslim.kv.cache.KvCaches;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.tensor.Parallel;
import java.util.Arrays;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Decode attention alone, without the model's matmuls: the caches of a 110m-shaped model (12
 * layers, 12 heads of 64) filled with {@code depth} random tokens per spec, then one query row per
 * layer per step, timed serially and on a pool. Reports microseconds per step and the GB/s of KV
 * bytes read. All specs run in one process, interleaved, so their ratios are comparable on a busy
 * machine; the serial runs also report the calling thread's CPU time, which a loaded machine
 * disturbs much less than wall time.
 *
 * <p>Usage: {@code AttentionBenchmark [depth] [threads] [rounds] spec[@tokens]...}; {@code
 * full@512} fills that cache with 512 tokens only (what an eviction to 25% of 2048 leaves). A
 * developer's tool, kept with the tests; after {@code mvn test-compile}:
 *
 * <pre>
 * ./kvslim --version  # builds kvslim-cli/target/lib
 * java --add-modules jdk.incubator.vector \
 *     -cp kvslim-cli/target/classes:kvslim-cli/target/test-classes:kvslim-cli/target/lib/* \
 *     io.kvslim.bench.AttentionBenchmark 384 1 5 full f16 'kivi:kbits=2,vbits=2'
 * </pre>
 */
public final class AttentionBenchmark {
  private AttentionBenchmark() {}

  public static void main(String[] args) {
    int depth = args.length > 0 ? Integer.parseInt(args[0]) : 2048;
    int threads = args.length > 1 ? Integer.parseInt(args[1]) : 2;
    int rounds = args.length > 2 ? Integer.parseInt(args[2]) : 5;
    String[] specs =
        args.length > 3
            ? Arrays.copyOfRange(args, 3, args.length)
            : new String[] {"full", "f16", "q8_0", "q4_0", "kivi:kbits=2,vbits=2"};
    int layers = 12;
    int heads = 12;
    int headDim = 64;
    SplittableRandom random = new SplittableRandom(1);
    KvCache[] caches = new KvCache[specs.length];
    int[] tokens = new int[specs.length];
    for (int i = 0; i < specs.length; i++) {
      String spec = specs[i];
      int at = spec.indexOf('@');
      tokens[i] = at < 0 ? depth : Integer.parseInt(spec.substring(at + 1));
      spec = at < 0 ? spec : spec.substring(0, at);
      KvCaches factory = new KvCaches(KvSpec.parse(spec), new BlockPool(), layers, heads, headDim);
      caches[i] = factory.create();
      int chunk = 256;
      float[] k = new float[chunk * heads * headDim];
      float[] v = new float[chunk * heads * headDim];
      for (int l = 0; l < layers; l++) {
        for (int start = 0; start < tokens[i]; start += chunk) {
          int n = Math.min(chunk, tokens[i] - start);
          int[] positions = new int[n];
          for (int t = 0; t < n; t++) {
            positions[t] = start + t;
          }
          for (int j = 0; j < n * heads * headDim; j++) {
            k[j] = (float) random.nextGaussian();
            v[j] = (float) random.nextGaussian();
          }
          caches[i].layer(l).append(n, positions, k, v);
        }
      }
    }
    float[] q = new float[heads * headDim];
    for (int j = 0; j < q.length; j++) {
      q[j] = (float) random.nextGaussian();
    }
    float[] out = new float[q.length];
    int[] position = {depth};
    float scale = 0.125f;
    int steps = 10;
    double[][] serial = new double[specs.length][rounds];
    double[][] pooled = new double[specs.length][rounds];
    double[][] serialCpu = new double[specs.length][rounds];
    java.lang.management.ThreadMXBean cpu =
        java.lang.management.ManagementFactory.getThreadMXBean();
    try (Parallel pool = new Parallel(threads)) {
      for (int round = -1; round < rounds; round++) {
        for (int i = 0; i < specs.length; i++) {
          for (int mode = 0; mode < 2; mode++) {
            Parallel p = mode == 0 ? null : pool;
            long t0 = System.nanoTime();
            long c0 = cpu.getCurrentThreadCpuTime();
            for (int s = 0; s < steps; s++) {
              for (int l = 0; l < layers; l++) {
                LayerKv layer = caches[i].layer(l);
                layer.attend(1, position, heads, q, scale, out, null, p);
              }
            }
            double micros = (System.nanoTime() - t0) / 1e3 / steps;
            double cpuMicros = (cpu.getCurrentThreadCpuTime() - c0) / 1e3 / steps;
            if (round >= 0) {
              (mode == 0 ? serial : pooled)[i][round] = micros;
              if (mode == 0) {
                serialCpu[i][round] = cpuMicros;
              }
            }
          }
        }
      }
    }
    System.out.printf(
        Locale.ROOT,
        "decode attention, depth %d, %d layers x %d heads x %d, %d threads (median of %d)%n",
        depth,
        layers,
        heads,
        headDim,
        threads,
        rounds);
    double base = median(pooled[0]);
    double baseCpu = median(serialCpu[0]);
    for (int i = 0; i < specs.length; i++) {
      double s = median(serial[i]);
      double p = median(pooled[i]);
      double c = median(serialCpu[i]);
      long bytes = caches[i].bytes();
      System.out.printf(
          Locale.ROOT,
          "  %-22s KV %6.1f MiB | serial cpu %7.0f us = %5.2f GB/s per core, x%.2f vs %s"
              + " | wall: serial %7.0f us, pool %7.0f us (x%.2f), pool x%.2f vs %s%n",
          specs[i],
          bytes / 1048576.0,
          c,
          bytes / c / 1e3,
          baseCpu / c,
          specs[0],
          s,
          p,
          s / p,
          base / p,
          specs[0]);
      caches[i].close();
    }
  }

  private static double median(double[] v) {
    double[] s = v.clone();
    Arrays.sort(s);
    return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  }
}
