package io.kvslim.kv.cache;

import io.kvslim.kv.Rotary;
import io.kvslim.kv.format.KvQuantKeyFormat;
import io.kvslim.kv.format.KvQuantValueFormat;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.kv.store.LayerStore;
import io.kvslim.model.ModelConfig;
import io.kvslim.model.Rope;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

/**
 * One decode step's attention over one layer, KVQuant (keys stored before RoPE, rotated at their
 * positions when attended) against the full F32 cache, timed by the calling thread's CPU time:
 * {@code -Dheads} KV heads (12), {@code -Ddepth} tokens (4,096), head dim 64, one query row per KV
 * head, one thread, the 110m model's RoPE (NORMAL pairs, base 500,000). The tables are made up as
 * calibration would on this data (offsets 0, ranges about the per-channel 1%/99% spread of a unit
 * Gaussian, a Lloyd-like codebook); KVQuant's defaults: 1 key outlier, 1 value outlier per side,
 * the first token in F16. The variants run interleaved in one JVM: {@code -Drounds} rounds (9) of
 * {@code -Dcalls} calls (200) each, the median and the spread (min..max) of the per-round medians.
 *
 * <pre>
 * java --add-modules jdk.incubator.vector -cp kvslim-core/target/classes:kvslim-core/target/test-classes \
 *     io.kvslim.kv.cache.KvQuantAttendCpuBench
 * </pre>
 */
public final class KvQuantAttendCpuBench {
  private KvQuantAttendCpuBench() {}

  public static void main(String[] args) {
    ThreadMXBean mx = ManagementFactory.getThreadMXBean();
    int kvHeads = Integer.getInteger("heads", 12);
    int depth = Integer.getInteger("depth", 4096);
    int rounds = Integer.getInteger("rounds", 9);
    int calls = Integer.getInteger("calls", 200);
    int dim = 64;
    ModelConfig config =
        new ModelConfig(
            "llama",
            768,
            1,
            kvHeads,
            kvHeads,
            dim,
            2048,
            8192,
            16384,
            1e-5f,
            500000f,
            dim,
            ModelConfig.RopeType.NORMAL,
            1f,
            false);
    Rope rope = new Rope(config, null);
    List<String> names = new ArrayList<>();
    List<PagedLayerKv> layers = new ArrayList<>();
    for (String spec :
        args.length == 0
            ? new String[] {"f32", "kvquant4", "kvquant4:decoded", "kvquant2"}
            : args) {
      boolean decoded = spec.endsWith(":decoded");
      String name = decoded ? spec.substring(0, spec.length() - 8) : spec;
      KvCacheFormat format =
          name.startsWith("kvquant")
              ? kvquant(name.substring(7), kvHeads, dim)
              : KvCacheFormat.parse(name);
      PagedLayerKv layer =
          new PagedLayerKv(
              new LayerStore(new BlockPool(), kvHeads, dim, format), new PagedLayerKv.Scratch());
      layer.appliesRope(decoded ? new Unpaired(rope) : rope);
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
      names.add(spec);
      layers.add(layer);
    }
    Random random = new Random(2);
    float[] q = new float[kvHeads * dim];
    for (int i = 0; i < q.length; i++) {
      q[i] = (float) random.nextGaussian();
    }
    float[] out = new float[q.length];
    int[] position = {depth};
    long[][] medians = new long[layers.size()][rounds];
    long[] times = new long[calls];
    for (int warm = 0; warm < 3; warm++) {
      for (PagedLayerKv layer : layers) {
        for (int i = 0; i < calls; i++) {
          layer.attend(1, position, kvHeads, q, 0.125f, out, null, null);
        }
      }
    }
    for (int round = 0; round < rounds; round++) {
      for (int v = 0; v < layers.size(); v++) {
        PagedLayerKv layer = layers.get(v);
        for (int i = 0; i < calls; i++) {
          long t0 = mx.getCurrentThreadCpuTime();
          layer.attend(1, position, kvHeads, q, 0.125f, out, null, null);
          times[i] = mx.getCurrentThreadCpuTime() - t0;
        }
        Arrays.sort(times);
        medians[v][round] = times[calls / 2];
      }
    }
    long base = median(medians[0]);
    for (int v = 0; v < layers.size(); v++) {
      long[] m = medians[v].clone();
      Arrays.sort(m);
      System.out.printf(
          "%-12s %d KV heads x %d: attend %.3f ms CPU (rounds %.3f..%.3f), %.2fx %s, %.2f MiB%n",
          names.get(v),
          kvHeads,
          depth,
          median(m) / 1e6,
          m[0] / 1e6,
          m[m.length - 1] / 1e6,
          median(m) / (double) base,
          names.get(0),
          layers.get(v).bytes() / 1048576.0);
    }
  }

  /**
   * The model's RoPE without saying how its channels pair ({@link Rotary#pairOffset} 0): the layer
   * decodes each key, rotates it and scores it in F32 (the path before the fused kernel).
   */
  record Unpaired(Rotary rope) implements Rotary {
    @Override
    public int dims() {
      return rope.dims();
    }

    @Override
    public void angles(int position, float[] cos, float[] sin, int off) {
      rope.angles(position, cos, sin, off);
    }

    @Override
    public void rotate(
        float[] x, int off, int heads, int headDim, float[] cos, float[] sin, int a) {
      rope.rotate(x, off, heads, headDim, cos, sin, a);
    }
  }

  private static long median(long[] values) {
    long[] m = values.clone();
    Arrays.sort(m);
    return m[m.length / 2];
  }

  /**
   * KVQuant's formats for a spec after "kvquant": the bits, then optionally {@code /k} (KVQuant
   * keys, F32 values) or {@code /v} (F32 keys, KVQuant values), and {@code -o0} (no outliers): the
   * parts' shares of the time.
   */
  static KvCacheFormat kvquant(String spec, int kvHeads, int dim) {
    boolean noOutliers = spec.endsWith("-o0");
    if (noOutliers) {
      spec = spec.substring(0, spec.length() - 3);
    }
    String part = spec.contains("/") ? spec.substring(spec.indexOf('/') + 1) : "";
    int bits = Integer.parseInt(spec.contains("/") ? spec.substring(0, spec.indexOf('/')) : spec);
    KvCacheFormat both = kvquant(bits, kvHeads, dim, noOutliers ? 0 : 1);
    return switch (part) {
      case "k" -> KvCacheFormat.of(both.keys(), io.kvslim.kv.format.KvFormats.F32);
      case "v" -> KvCacheFormat.of(io.kvslim.kv.format.KvFormats.F32, both.values());
      default -> both;
    };
  }

  /** KVQuant's formats with tables as calibration on unit Gaussian data would give. */
  static KvCacheFormat kvquant(int bits, int kvHeads, int dim) {
    return kvquant(bits, kvHeads, dim, 1);
  }

  private static KvCacheFormat kvquant(int bits, int kvHeads, int dim, int outliers) {
    float[][] offset = new float[kvHeads][dim];
    float[][] range = new float[kvHeads][dim];
    for (float[] r : range) {
      Arrays.fill(r, 2.33f); // the 1% and 99% quantiles of a unit Gaussian
    }
    int levels = 1 << bits;
    float[] codebook = new float[levels];
    for (int i = 0; i < levels; i++) {
      double u = (i + 0.5) / levels * 2 - 1;
      codebook[i] = (float) (Math.signum(u) * Math.pow(Math.abs(u), 1.3));
    }
    return KvCacheFormat.of(
        new KvQuantKeyFormat(bits, codebook, offset, range, outliers, 1),
        new KvQuantValueFormat(bits, codebook, outliers));
  }
}
