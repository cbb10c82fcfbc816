package io.kvslim.kv.cache;

import io.kvslim.calibrate.CalibrationProfile;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.format.LexicoFormat;
import io.kvslim.kv.store.KvCacheFormat;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;

/**
 * One decode step's attention over one layer, full F32 cache against Lexico ({@code s} atoms, the
 * method's window of 128 F16 tokens), timed by the calling thread's CPU time, the two interleaved
 * in rounds in one JVM (each round: the minimum of {@code -Dcalls} calls of each); prints each
 * round and the medians. {@code -Dheads} KV heads (12), {@code -Ddepth} tokens (4,096), head dim
 * 64, one query row per KV head, one thread. {@code -Dprofile=FILE} takes layer 0's dictionaries
 * from a calibration profile (else 1024 random unit atoms); keys, values and queries are Gaussian.
 * Also prints the CPU time to code the layer's keys and values (the flush of the window).
 *
 * <pre>
 * java --add-modules jdk.incubator.vector -Dprofile=/work/prof/s110.json \
 *     -cp target/classes:target/test-classes:$(cat target/jmh.cp) io.kvslim.kv.cache.LexicoAttendCpuBench
 * </pre>
 */
public final class LexicoAttendCpuBench {
  private LexicoAttendCpuBench() {}

  public static void main(String[] args) {
    ThreadMXBean mx = ManagementFactory.getThreadMXBean();
    int kvHeads = Integer.getInteger("heads", 12);
    int depth = Integer.getInteger("depth", 4096);
    int s = Integer.getInteger("s", 8);
    int rounds = Integer.getInteger("rounds", 7);
    int calls = Integer.getInteger("calls", 20);
    int dim = 64;
    int atoms = 1024;
    float[] kd;
    float[] vd;
    String profile = System.getProperty("profile");
    if (profile != null) {
      var p = CalibrationProfile.read(Path.of(profile));
      atoms = p.lexico().atoms();
      kd = p.lexico().dictionary(0, false);
      vd = p.lexico().dictionary(0, true);
    } else {
      kd = unitAtoms(atoms, dim, 1);
      vd = unitAtoms(atoms, dim, 2);
    }
    KvCacheFormat lexico =
        KvCacheFormat.of(new LexicoFormat(kd, atoms, s, "k"), new LexicoFormat(vd, atoms, s, "v"))
            .withResidual(128, KvFormats.byName("f16"));
    String[] names = {"f32", "lexico s=" + s};
    KvCacheFormat[] formats = {KvCacheFormat.parse("f32"), lexico};
    PagedLayerKv[] layers = new PagedLayerKv[2];
    for (int f = 0; f < 2; f++) {
      PagedKvCache cache = PagedKvCache.create(1, kvHeads, dim, formats[f]);
      PagedLayerKv layer = cache.layer(0);
      Random random = new Random(1);
      int chunk = 256;
      long cpu = 0;
      for (int t = 0; t < depth; t += chunk) {
        int[] positions = new int[chunk];
        for (int i = 0; i < chunk; i++) {
          positions[i] = t + i;
        }
        float[] k = new float[chunk * kvHeads * dim];
        float[] v = new float[k.length];
        for (int i = 0; i < k.length; i++) {
          k[i] = (float) random.nextGaussian();
          v[i] = (float) random.nextGaussian();
        }
        long t0 = mx.getCurrentThreadCpuTime();
        layer.append(chunk, positions, k, v);
        layer.flushResidual();
        cpu += mx.getCurrentThreadCpuTime() - t0;
      }
      System.out.printf(
          "%-12s append+flush of %d tokens x %d heads: %.0f ms CPU, %.1f MiB%n",
          names[f], depth, kvHeads, cpu / 1e6, layer.bytes() / 1048576.0);
      layers[f] = layer;
    }
    Random random = new Random(2);
    float[] q = new float[kvHeads * dim];
    for (int i = 0; i < q.length; i++) {
      q[i] = (float) random.nextGaussian();
    }
    float[] out = new float[q.length];
    int[] position = {depth};
    double[][] us = new double[2][rounds];
    for (int round = -2; round < rounds; round++) {
      for (int f = 0; f < 2; f++) {
        long best = Long.MAX_VALUE;
        for (int c = 0; c < calls; c++) {
          long t0 = mx.getCurrentThreadCpuTime();
          layers[f].attend(1, position, kvHeads, q, 0.125f, out, null, null);
          best = Math.min(best, mx.getCurrentThreadCpuTime() - t0);
        }
        if (round >= 0) {
          us[f][round] = best / 1e3;
        }
      }
      if (round >= 0) {
        System.out.printf(
            "round %d: %s %.0f us, %s %.0f us%n",
            round, names[0], us[0][round], names[1], us[1][round]);
      }
    }
    for (int f = 0; f < 2; f++) {
      Arrays.sort(us[f]);
      System.out.printf(
          "%-12s attend at depth %d, %d KV heads: median %.0f us (min %.0f, max %.0f)%n",
          names[f], depth, kvHeads, us[f][rounds / 2], us[f][0], us[f][rounds - 1]);
    }
  }

  static float[] unitAtoms(int atoms, int d, long seed) {
    Random r = new Random(seed);
    float[] dict = new float[atoms * d];
    for (int a = 0; a < atoms; a++) {
      double n = 0;
      for (int i = 0; i < d; i++) {
        dict[a * d + i] = (float) r.nextGaussian();
        n += dict[a * d + i] * dict[a * d + i];
      }
      for (int i = 0; i < d; i++) {
        dict[a * d + i] = (float) (dict[a * d + i] / Math.sqrt(n));
      }
    }
    return dict;
  }
}
