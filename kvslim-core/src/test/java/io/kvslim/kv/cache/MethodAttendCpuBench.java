package io.kvslim.kv.cache;

import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.method.MethodCall;
import io.kvslim.kv.store.KvCacheFormat;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

/**
 * {@link LayerAttendCpuBench} for formats that only a method gives ({@code alignedkv}, {@code
 * turboquant:preset=k8v4}; the method's quantized layer format, {@code KvMethod#format(call)}), or
 * a plain {@link KvCacheFormat#parse} spec: one decode step's attention over one layer, timed by
 * the calling thread's CPU time, all specs in one JVM and interleaved ({@code -Drounds} rounds (7)
 * of {@code -Dcalls} calls (200) each, after {@code -Dwarm} (300) warm-up calls per spec); prints
 * each spec's median and spread (min–max) over the rounds of its per-call mean, and the median
 * ratio to the first spec. {@code -Dheads} KV heads (12), {@code -Ddepth} tokens (4,096), head dim
 * 64.
 *
 * <p>Run it with the launcher's JVM flags ({@code ./kvslim}): without its {@code CompileCommand}s
 * the F32 kernels call {@code sumLanes4} out of line and the full cache looks slower than it is.
 *
 * <pre>
 * java --add-modules jdk.incubator.vector -XX:+UseParallelGC -XX:CompileCommand=quiet \
 *     -XX:CompileCommand=inline,io.kvslim.kv.format.AsymmetricCodes::* \
 *     -XX:CompileCommand=inline,io.kvslim.kv.attention.AttentionKernels::sumLanes4 \
 *     -cp kvslim-core/target/classes:kvslim-core/target/test-classes \
 *     io.kvslim.kv.cache.MethodAttendCpuBench f32 alignedkv turboquant:preset=k8v4
 * </pre>
 */
public final class MethodAttendCpuBench {
  private MethodAttendCpuBench() {}

  static KvCacheFormat format(String spec) {
    try {
      return KvCacheFormat.parse(spec);
    } catch (IllegalArgumentException notPlain) {
      MethodCall call = KvSpec.parse(spec).callsFor(0).get(0);
      return call.method().format(call);
    }
  }

  public static void main(String[] args) {
    ThreadMXBean mx = ManagementFactory.getThreadMXBean();
    int kvHeads = Integer.getInteger("heads", 12);
    int depth = Integer.getInteger("depth", 4096);
    int rounds = Integer.getInteger("rounds", 7);
    int calls = Integer.getInteger("calls", 200);
    int warm = Integer.getInteger("warm", 300);
    int dim = 64;
    List<PagedLayerKv> layers = new ArrayList<>();
    float[] q = null;
    for (String spec : args) {
      PagedKvCache cache = PagedKvCache.create(1, kvHeads, dim, format(spec));
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
      q = new float[kvHeads * dim];
      for (int i = 0; i < q.length; i++) {
        q[i] = (float) random.nextGaussian();
      }
      layers.add(layer);
    }
    float[] out = new float[q.length];
    int[] position = {depth};
    for (PagedLayerKv layer : layers) {
      for (int i = 0; i < warm; i++) {
        layer.attend(1, position, kvHeads, q, 0.125f, out, null, null);
      }
    }
    double[][] us = new double[args.length][rounds];
    for (int r = 0; r < rounds; r++) {
      for (int i = 0; i < args.length; i++) {
        PagedLayerKv layer = layers.get(i);
        long t0 = mx.getCurrentThreadCpuTime();
        for (int n = 0; n < calls; n++) {
          layer.attend(1, position, kvHeads, q, 0.125f, out, null, null);
        }
        us[i][r] = (mx.getCurrentThreadCpuTime() - t0) / 1e3 / calls;
      }
    }
    double[] ratios = new double[rounds];
    for (int i = 0; i < args.length; i++) {
      for (int r = 0; r < rounds; r++) {
        ratios[r] = us[i][r] / us[0][r];
      }
      double[] sorted = us[i].clone();
      Arrays.sort(sorted);
      Arrays.sort(ratios);
      System.out.printf(
          "%-34s %d KV heads x %d: attend median %.0f us (%.0f-%.0f), x%.2f of %s, %.1f MiB%n",
          args[i],
          kvHeads,
          depth,
          sorted[rounds / 2],
          sorted[0],
          sorted[rounds - 1],
          ratios[rounds / 2],
          args[0],
          layers.get(i).bytes() / 1048576.0);
    }
  }
}
