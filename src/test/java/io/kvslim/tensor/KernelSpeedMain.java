package io.kvslim.tensor;

import io.kvslim.gguf.GgmlType;
import java.util.Locale;

/**
 * Single-threaded weight bandwidth of each kernel: GB/s of weight bytes read by a {@code rows ×
 * cols} matvec ({@code dot} per row), by the scalar reference, and by a 4-row tiled matmul (weight
 * bytes per tile pass, i.e. per 4 activation rows). Not a test; run with
 *
 * <pre>
 * java --add-modules jdk.incubator.vector -cp target/classes:target/test-classes \
 *     io.kvslim.tensor.KernelSpeedMain [rows cols seconds-per-type [TYPE...]]
 * </pre>
 */
public final class KernelSpeedMain {
  private KernelSpeedMain() {}

  public static void main(String[] args) {
    int rows = args.length > 0 ? Integer.parseInt(args[0]) : 2048;
    int cols = args.length > 1 ? Integer.parseInt(args[1]) : 2048;
    double seconds = args.length > 2 ? Double.parseDouble(args[2]) : 1.0;
    GgmlType[] types = RandomWeights.TYPES;
    if (args.length > 3) {
      types = new GgmlType[args.length - 3];
      for (int i = 3; i < args.length; i++) {
        types[i - 3] = GgmlType.valueOf(args[i]);
      }
    }
    System.out.printf(
        Locale.ROOT,
        "%dx%d matvec, 1 thread, %d-bit float vectors%n%-5s %9s %9s %9s %9s %9s%n",
        rows,
        cols,
        Simd.F.vectorBitSize(),
        "type",
        "MiB",
        "dot GB/s",
        "scalar",
        "tile4",
        "ns/row");
    float sink = 0;
    for (GgmlType type : types) {
      WeightMatrix w = RandomWeights.matrix(type, rows, cols, 1);
      float[] x = RandomWeights.activations(4 * cols, 2);
      float[] out = new float[4 * rows];
      double bytes = w.byteSize();
      double dotNs = time(() -> vectorPass(w, x, out), seconds);
      double scalarNs = time(() -> scalarPass(w, x, out), Math.min(seconds, 0.3));
      double tileNs = time(() -> tilePass(w, x, out), seconds);
      sink += out[0];
      System.out.printf(
          Locale.ROOT,
          "%-5s %9.2f %9.2f %9.2f %9.2f %9.1f%n",
          type,
          bytes / (1 << 20),
          bytes / dotNs,
          bytes / scalarNs,
          bytes / tileNs,
          dotNs / rows);
    }
    if (sink == 42) {
      System.out.println();
    }
  }

  private static void vectorPass(WeightMatrix w, float[] x, float[] out) {
    for (int r = 0; r < w.rows(); r++) {
      out[r] = w.dot(r, x, 0);
    }
  }

  private static void scalarPass(WeightMatrix w, float[] x, float[] out) {
    for (int r = 0; r < w.rows(); r++) {
      out[r] = w.dotScalar(r, x, 0);
    }
  }

  private static void tilePass(WeightMatrix w, float[] x, float[] out) {
    for (int r = 0; r < w.rows(); r++) {
      w.dotTile(r, x, 0, w.cols(), 4, out, r, w.rows());
    }
  }

  /** Best nanoseconds per pass over about {@code seconds}, after a warm-up of the same length. */
  private static double time(Runnable pass, double seconds) {
    long budget = (long) (seconds * 1e9);
    long end = System.nanoTime() + budget / 2;
    while (System.nanoTime() < end) {
      pass.run();
    }
    double best = Double.MAX_VALUE;
    end = System.nanoTime() + budget;
    do {
      long t0 = System.nanoTime();
      pass.run();
      best = Math.min(best, System.nanoTime() - t0);
    } while (System.nanoTime() < end);
    return best;
  }
}
