package io.kvslim.tensor;

import io.kvslim.gguf.GgmlType;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.util.Locale;

/**
 * A prefill-sized matmul ({@code n} activation rows, default 512) on one thread, timed by the
 * thread's CPU time (the minimum of {@code -Druns} passes after a warm-up), for the 110m model's
 * matrix shapes or the {@code rows×cols} pairs given: {@link WeightMatrix#matmulRows} and, in the
 * same passes, the panel kernel without cache blocking (each panel of four weight rows against all
 * activation rows, as before session 7; {@code -Dskipold=true} leaves it out), whose products must
 * be the same bits. {@code -Dtype} picks the weight type (Q8_0) of random weights; {@code
 * -Dmodel=FILE} takes layer 0's matrices of that shape from a GGUF file instead. The array
 * placement the garbage collector picks changes these figures (see the long-context README's
 * session 7). Not a test; run with
 *
 * <pre>
 * java --add-modules jdk.incubator.vector \
 *     -cp kvslim-core/target/classes:kvslim-core/target/test-classes \
 *     io.kvslim.tensor.MatmulCpuMain [n [ROWSxCOLS...]]
 * </pre>
 */
public final class MatmulCpuMain {
  private MatmulCpuMain() {}

  /** The products panel by panel, each panel against all activation rows (no cache blocking). */
  private static void unblocked(WeightMatrix w, float[] x, int n, float[] out) {
    int cols = w.cols();
    float[] panel = PanelKernel.panel(4 * cols);
    for (int r = 0; r + 4 <= w.rows(); r += 4) {
      for (int i = 0; i < 4; i++) {
        w.decodeRow(r + i, panel, i * cols);
      }
      PanelKernel.tiles(panel, 0, 4 * cols, cols, x, 0, n, out, r, w.rows());
    }
  }

  public static void main(String[] args) {
    ThreadMXBean mx = ManagementFactory.getThreadMXBean();
    int n = args.length > 0 ? Integer.parseInt(args[0]) : 512;
    String[] shapes =
        args.length > 1
            ? java.util.Arrays.copyOfRange(args, 1, args.length)
            : new String[] {"768x768", "2048x768", "768x2048"};
    GgmlType type = GgmlType.valueOf(System.getProperty("type", "Q8_0"));
    int runs = Integer.getInteger("runs", 15);
    float sink = 0;
    for (String s : shapes) {
      int rows = Integer.parseInt(s.substring(0, s.indexOf('x')));
      int cols = Integer.parseInt(s.substring(s.indexOf('x') + 1));
      WeightMatrix w = RandomWeights.matrix(type, rows, cols, 1);
      if (System.getProperty("model") != null) {
        var m = io.kvslim.model.Model.load(java.nio.file.Path.of(System.getProperty("model")));
        var lw = m.layer(0);
        w = rows == cols ? lw.wq() : rows > cols ? lw.up() : lw.down();
      }
      float[] x = RandomWeights.activations(n * cols, 2);
      float[] out = new float[n * rows];
      long best = Long.MAX_VALUE;
      long bestOld = Long.MAX_VALUE;
      float[] ref = new float[n * rows];
      for (int r = 0; r < runs + 5; r++) {
        long t0 = mx.getCurrentThreadCpuTime();
        w.matmulRows(0, rows, x, n, out);
        long t1 = mx.getCurrentThreadCpuTime();
        if (!Boolean.getBoolean("skipold")) {
          unblocked(w, x, n, ref);
        }
        long t2 = mx.getCurrentThreadCpuTime();
        if (r >= 5) {
          best = Math.min(best, t1 - t0);
          bestOld = Math.min(bestOld, t2 - t1);
        }
        sink += out[r % out.length];
      }
      if (!Boolean.getBoolean("skipold") && !java.util.Arrays.equals(out, ref)) {
        throw new AssertionError("blocked and unblocked products differ");
      }
      System.out.printf(Locale.ROOT, "unblocked %.2f ms, ", bestOld / 1e6);
      double flops = 2.0 * rows * cols * n;
      System.out.printf(
          Locale.ROOT,
          "%s %s n=%d, %d-bit vectors: %.2f ms CPU, %.1f GFLOP/s%n",
          type,
          s,
          n,
          Simd.F.vectorBitSize(),
          best / 1e6,
          flops / best);
    }
    System.out.println("sink " + sink);
  }
}
