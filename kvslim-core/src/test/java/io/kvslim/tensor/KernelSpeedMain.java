package io.kvslim.tensor;

import io.kvslim.gguf.GgmlType;
import java.lang.foreign.Arena;
import java.util.Locale;

/**
 * Weight bandwidth of each kernel: GB/s of weight bytes read by a {@code rows × cols} matvec on
 * random weights in a shared arena (as a mapped GGUF file is). Columns: {@code dot} per row on one
 * thread; the scalar reference; a 4-activation-row {@code dotTile} pass (weight bytes per pass, so
 * four products per byte); {@link MatMul#matvec} on a pool of {@code -Dthreads=N} threads (default
 * 1: the decode kernel, {@code dotRows}); 2-, 3-, 4- and 8-row {@link MatMul#matmul} (batched
 * decode of a few sequences) in GB/s of weights; and a 16-row {@link MatMul#matmul} in GFLOP/s.
 * Each figure is the best pass after a warm-up. Not a test; run with
 *
 * <pre>
 * java --add-modules jdk.incubator.vector -cp kvslim-core/target/classes:kvslim-core/target/test-classes \
 *     io.kvslim.tensor.KernelSpeedMain [rows cols seconds-per-figure [TYPE...]]
 * </pre>
 */
public final class KernelSpeedMain {
  private KernelSpeedMain() {}

  public static void main(String[] args) {
    int rows = args.length > 0 ? Integer.parseInt(args[0]) : 2048;
    int cols = args.length > 1 ? Integer.parseInt(args[1]) : 2048;
    double seconds = args.length > 2 ? Double.parseDouble(args[2]) : 2.0;
    int threads = Integer.getInteger("threads", 1);
    GgmlType[] types = RandomWeights.TYPES;
    if (args.length > 3) {
      types = new GgmlType[args.length - 3];
      for (int i = 3; i < args.length; i++) {
        types[i - 3] = GgmlType.valueOf(args[i]);
      }
    }
    System.out.printf(
        Locale.ROOT,
        "%dx%d matvec, %d-bit float vectors; GB/s of weights; GFLOP/s of a 16-row matmul%n"
            + "%-5s %8s %8s %8s %8s %8s %8s %8s %8s %8s %8s %8s%n",
        rows,
        cols,
        Simd.F.vectorBitSize(),
        "type",
        "MiB",
        "dot",
        "scalar",
        "tile4",
        threads + "thr",
        "ns/row",
        "mm2",
        "mm3",
        "mm4",
        "mm8",
        "mm16");
    float sink = 0;
    try (Parallel pool = new Parallel(threads)) {
      for (GgmlType type : types) {
        try (Arena arena = Arena.ofShared()) {
          WeightMatrix w =
              WeightMatrix.of(type, RandomWeights.segment(type, rows, cols, 1, arena), rows, cols);
          float[] x = RandomWeights.activations(16 * cols, 2);
          float[] out = new float[16 * rows];
          double bytes = w.byteSize();
          double dotNs = time(() -> vectorPass(w, x, out), seconds);
          double scalarNs = time(() -> scalarPass(w, x, out), Math.min(seconds, 0.5));
          double tileNs = time(() -> tilePass(w, x, out), seconds);
          double poolNs = time(() -> MatMul.matvec(w, x, out, pool), seconds);
          double mm2Ns = time(() -> MatMul.matmul(w, x, 2, out, pool), seconds);
          double mm3Ns = time(() -> MatMul.matmul(w, x, 3, out, pool), seconds);
          double mm4Ns = time(() -> MatMul.matmul(w, x, 4, out, pool), seconds);
          double mm8Ns = time(() -> MatMul.matmul(w, x, 8, out, pool), seconds);
          double mmNs = time(() -> MatMul.matmul(w, x, 16, out, pool), seconds);
          sink += out[0];
          System.out.printf(
              Locale.ROOT,
              "%-5s %8.2f %8.2f %8.2f %8.2f %8.2f %8.1f %8.2f %8.2f %8.2f %8.2f %8.1f%n",
              type,
              bytes / (1 << 20),
              bytes / dotNs,
              bytes / scalarNs,
              bytes / tileNs,
              bytes / poolNs,
              dotNs / rows,
              bytes / mm2Ns,
              bytes / mm3Ns,
              bytes / mm4Ns,
              bytes / mm8Ns,
              2.0 * 16 * rows * cols / mmNs);
        }
      }
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

  /**
   * Best nanoseconds per pass over {@code seconds}, after a warm-up as long (on a loaded machine C2
   * may need that long to compile the kernel; until then the Vector API runs boxed and is slow).
   */
  private static double time(Runnable pass, double seconds) {
    long budget = (long) (seconds * 1e9);
    long end = System.nanoTime() + budget;
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
