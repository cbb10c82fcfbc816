package io.kvslim.tensor;

import io.kvslim.gguf.GgmlType;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * The matrix-vector products of one decode token of the 110m model (12 layers of wq, wk, wv, wo
 * 768×768, gate and up 2048×768, down 768×2048, then an 8192×768 output; random weights of {@code
 * -Dtype}, Q8_0 by default, 99 MiB, more than the last-level cache) with {@link
 * WeightMatrix#dotRows} on one thread, timed by the thread's CPU time: the minimum and median of
 * {@code -Druns} tokens after as many warm-up tokens. Not a test; run with
 *
 * <pre>
 * java --add-modules jdk.incubator.vector \
 *     -cp kvslim-core/target/classes:kvslim-core/target/test-classes \
 *     io.kvslim.tensor.DecodeMatvecCpuMain
 * </pre>
 */
public final class DecodeMatvecCpuMain {
  private DecodeMatvecCpuMain() {}

  public static void main(String[] args) {
    ThreadMXBean mx = ManagementFactory.getThreadMXBean();
    GgmlType type = GgmlType.valueOf(System.getProperty("type", "Q8_0"));
    int runs = Integer.getInteger("runs", 30);
    List<WeightMatrix> matrices = new ArrayList<>();
    long bytes = 0;
    for (int layer = 0; layer < 12; layer++) {
      int[][] shapes = {{768, 768}, {768, 768}, {768, 768}, {768, 768}, {2048, 768}, {2048, 768}};
      for (int[] s : shapes) {
        matrices.add(RandomWeights.matrix(type, s[0], s[1], matrices.size()));
      }
      matrices.add(RandomWeights.matrix(type, 768, 2048, matrices.size()));
    }
    matrices.add(RandomWeights.matrix(type, 8192, 768, matrices.size()));
    for (WeightMatrix w : matrices) {
      bytes += type.bytesFor(w.cols()) * w.rows();
    }
    float[] x = RandomWeights.activations(2048, 2);
    float[] out = new float[8192];
    long[] times = new long[runs];
    float sink = 0;
    for (int r = 0; r < 2 * runs; r++) {
      long t0 = mx.getCurrentThreadCpuTime();
      for (WeightMatrix w : matrices) {
        w.dotRows(0, w.rows(), x, out);
      }
      long t1 = mx.getCurrentThreadCpuTime();
      if (r >= runs) {
        times[r - runs] = t1 - t0;
      }
      sink += out[r];
    }
    Arrays.sort(times);
    System.out.printf(
        Locale.ROOT,
        "%s, %d-bit vectors, %.1f MiB of weights: %.2f ms (min) / %.2f ms (median) CPU per token,"
            + " %.2f GB/s at the minimum%n",
        type,
        Simd.F.vectorBitSize(),
        bytes / 1048576.0,
        times[0] / 1e6,
        times[runs / 2] / 1e6,
        bytes / (double) times[0]);
    System.out.println("sink " + sink);
  }
}
