package io.kvslim.kv.format;

import io.kvslim.calibrate.CalibrationProfile;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * CPU time of the calling thread to code rows by OMP: the per-row scalar {@link Omp#encode} (the
 * encoder before {@link OmpEncoder}) against {@link OmpEncoder} in chunks of a block (32 rows), the
 * two interleaved in rounds; prints each round's µs per row and the medians, scaled to one layer of
 * the 110m model at depth 4,096 (4,096 tokens × 12 KV heads × keys and values = 98,304 rows).
 * {@code -Dprofile=FILE} takes layer 0's key dictionary from a calibration profile (else 1024
 * random unit atoms of 64 channels); rows are Gaussian. Compiled with the {@code jmh} profile:
 *
 * <pre>
 * java --add-modules jdk.incubator.vector -Dprofile=/work/prof/s110.json \
 *     -cp target/classes:target/test-classes:$(cat target/jmh.cp) io.kvslim.kv.format.LexicoEncodeCpuBench
 * </pre>
 */
public class LexicoEncodeCpuBench {
  public static void main(String[] a) throws Exception {
    ThreadMXBean mx = ManagementFactory.getThreadMXBean();
    int d = 64;
    int atoms = 1024;
    float[] dict;
    String profile = System.getProperty("profile");
    if (profile != null) {
      var p = CalibrationProfile.read(Path.of(profile));
      atoms = p.lexico().atoms();
      dict = p.lexico().dictionary(0, false);
      d = dict.length / atoms;
    } else {
      dict = new float[atoms * d];
      SplittableRandom r = new SplittableRandom(1);
      for (int at = 0; at < atoms; at++) {
        double n = 0;
        for (int i = 0; i < d; i++) {
          dict[at * d + i] = (float) r.nextGaussian();
          n += dict[at * d + i] * dict[at * d + i];
        }
        for (int i = 0; i < d; i++) {
          dict[at * d + i] = (float) (dict[at * d + i] / Math.sqrt(n));
        }
      }
    }
    int s = Integer.getInteger("s", 8);
    int oldRows = Integer.getInteger("oldRows", 1024);
    int newRows = Integer.getInteger("newRows", 8192);
    int rounds = Integer.getInteger("rounds", 7);
    SplittableRandom r = new SplittableRandom(2);
    float[] x = new float[newRows * d];
    for (int i = 0; i < x.length; i++) {
      x[i] = (float) r.nextGaussian();
    }
    OmpEncoder enc = new OmpEncoder(dict, atoms, d);
    int[] index = new int[32 * s];
    float[] coef = new float[32 * s];
    int[] counts = new int[32];
    double[] oldUs = new double[rounds];
    double[] newUs = new double[rounds];
    long sink = 0;
    for (int round = -1; round < rounds; round++) {
      long t0 = mx.getCurrentThreadCpuTime();
      for (int t = 0; t < oldRows; t++) {
        sink += Omp.encode(dict, atoms, d, x, t * d, s, index, coef, null);
      }
      long t1 = mx.getCurrentThreadCpuTime();
      for (int t = 0; t < newRows; t += 32) {
        enc.encode(x, t * d, d, Math.min(32, newRows - t), s, index, coef, counts);
        sink += counts[0];
      }
      long t2 = mx.getCurrentThreadCpuTime();
      if (round >= 0) {
        oldUs[round] = (t1 - t0) / 1e3 / oldRows;
        newUs[round] = (t2 - t1) / 1e3 / newRows;
        System.out.printf(
            "round %d: Omp.encode %.2f us/row, OmpEncoder %.3f us/row%n",
            round, oldUs[round], newUs[round]);
      }
    }
    // agreement: the rows both encoders code in a round
    int same = 0;
    double worst = 0;
    int[] refIndex = new int[s];
    float[] refCoef = new float[s];
    for (int t = 0; t < oldRows; t++) {
      int k = Omp.encode(dict, atoms, d, x, t * d, s, refIndex, refCoef, null);
      enc.encode(x, t * d, d, 1, s, index, coef, counts);
      boolean equal = k == counts[0];
      for (int j = 0; equal && j < k; j++) {
        equal = refIndex[j] == index[j];
        worst = Math.max(worst, Math.abs(refCoef[j] - coef[j]) / (1e-6 + Math.abs(refCoef[j])));
      }
      same += equal ? 1 : 0;
    }
    System.out.printf(
        "rows with the same atoms: %d of %d; largest relative coefficient difference %.2e%n",
        same, oldRows, worst);
    Arrays.sort(oldUs);
    Arrays.sort(newUs);
    double rows = 4096.0 * 12 * 2;
    System.out.printf(
        "median (min..max): Omp.encode %.2f (%.2f..%.2f) us/row = %.1f s per layer;"
            + " OmpEncoder %.3f (%.3f..%.3f) us/row = %.3f s per layer; %.1fx (sink %d)%n",
        oldUs[rounds / 2],
        oldUs[0],
        oldUs[rounds - 1],
        oldUs[rounds / 2] * rows / 1e6,
        newUs[rounds / 2],
        newUs[0],
        newUs[rounds - 1],
        newUs[rounds / 2] * rows / 1e6,
        oldUs[rounds / 2] / newUs[rounds / 2],
        sink);
  }
}
