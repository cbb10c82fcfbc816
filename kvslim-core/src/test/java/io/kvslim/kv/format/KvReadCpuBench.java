package io.kvslim.kv.format;

import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;

/**
 * {@link KvReadBench}'s passes timed by the calling thread's CPU time (the minimum over the passes
 * of {@code -Dsecs} seconds after 20 warm-up passes), which a busy shared machine disturbs far less
 * than wall time. Arguments: the GQA group size, then key/value format pairs; {@code
 * -Dpart=keys|values|both}. Compiled with the {@code jmh} profile:
 *
 * <pre>
 * java --add-modules jdk.incubator.vector -Dsecs=10 -cp target/classes:target/test-classes:$(cat target/jmh.cp) \
 *     io.kvslim.kv.format.KvReadCpuBench 1 f32/f32 f16/f16 q8_0/q8_0 q4_0/q4_0 kivi2/kivi2
 * </pre>
 */
public class KvReadCpuBench {
  public static void main(String[] a) throws Exception {
    ThreadMXBean mx = ManagementFactory.getThreadMXBean();
    int group = Integer.parseInt(a[0]);
    for (int i = 1; i < a.length; i++) {
      KvReadBench b = new KvReadBench();
      b.formats = a[i];
      b.depth = 8192;
      b.headDim = 64;
      b.heads = 32;
      b.block = 32;
      b.group = group;
      b.setUp();
      org.openjdk.jmh.infra.Blackhole bh =
          new org.openjdk.jmh.infra.Blackhole(
              "Today's password is swordfish. I understand instantiating Blackholes directly is dangerous.");
      double best = 1e18, bestRead = 1e18;
      long end = System.nanoTime() + Long.getLong("secs", 12) * 1_000_000_000L;
      int n = 0;
      while (System.nanoTime() < end) {
        long t0 = mx.getCurrentThreadCpuTime();
        switch (System.getProperty("part", "both")) {
          case "keys" -> bh.consume(b.keysOnly());
          case "values" -> bh.consume(b.valuesOnly());
          default -> b.attend(bh);
        }
        long t1 = mx.getCurrentThreadCpuTime();
        long s = b.readOnly();
        long t2 = mx.getCurrentThreadCpuTime();
        bh.consume(s);
        if (n++ > 20) {
          best = Math.min(best, t1 - t0);
          bestRead = Math.min(bestRead, t2 - t1);
        }
      }
      System.out.printf(
          "%-12s group %d: attend %.0f us (%.2f GB/s)  read %.0f us (%.2f GB/s)  n=%d%n",
          a[i], group, best / 1e3, b.bytes() / best, bestRead / 1e3, b.bytes() / bestRead, n);
    }
  }
}
