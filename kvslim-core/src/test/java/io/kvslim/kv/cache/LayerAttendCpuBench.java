package io.kvslim.kv.cache;

import io.kvslim.kv.store.KvCacheFormat;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.util.Random;

/**
 * One decode step's attention over one layer (the block walk included), timed by the calling
 * thread's CPU time: {@code -Dheads} KV heads (12), {@code -Ddepth} tokens (8,192), head dim 64,
 * one query row per KV head, one thread; the minimum over {@code -Dsecs} seconds after 20 warm-up
 * calls. Arguments: KV format specs ({@link KvCacheFormat#parse}), one JVM per spec for fair
 * numbers.
 *
 * <pre>
 * java --add-modules jdk.incubator.vector -cp kvslim-core/target/classes:kvslim-core/target/test-classes \
 *     io.kvslim.kv.cache.LayerAttendCpuBench f32 k=f32,v=f32,block=128 kivi:kbits=2,vbits=2
 * </pre>
 */
public final class LayerAttendCpuBench {
  private LayerAttendCpuBench() {}

  public static void main(String[] args) {
    ThreadMXBean mx = ManagementFactory.getThreadMXBean();
    int kvHeads = Integer.getInteger("heads", 12);
    int depth = Integer.getInteger("depth", 8192);
    int group = Integer.getInteger("group", 1);
    int dim = 64;
    for (String spec : args) {
      KvCacheFormat format = KvCacheFormat.parse(spec);
      PagedKvCache cache = PagedKvCache.create(1, kvHeads, dim, format);
      PagedLayerKv layer = cache.layer(0);
      Random random = new Random(1);
      int chunk = 256;
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
        layer.append(chunk, positions, k, v);
      }
      layer.flushResidual();
      int heads = kvHeads * group;
      float[] q = new float[heads * dim];
      for (int i = 0; i < q.length; i++) {
        q[i] = (float) random.nextGaussian();
      }
      float[] out = new float[q.length];
      int[] position = {depth};
      long end = System.nanoTime() + Long.getLong("secs", 8) * 1_000_000_000L;
      long best = Long.MAX_VALUE;
      int n = 0;
      while (System.nanoTime() < end) {
        long t0 = mx.getCurrentThreadCpuTime();
        layer.attend(1, position, heads, q, 0.125f, out, null, null);
        long t1 = mx.getCurrentThreadCpuTime();
        if (n++ > 20) {
          best = Math.min(best, t1 - t0);
        }
      }
      System.out.printf(
          "%-40s %d KV heads x %d: attend %.0f us, %.1f MiB, n=%d%n",
          spec, kvHeads, depth, best / 1e3, layer.bytes() / 1048576.0, n);
    }
  }
}
