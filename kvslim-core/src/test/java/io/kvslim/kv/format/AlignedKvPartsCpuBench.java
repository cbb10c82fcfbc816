package io.kvslim.kv.format;

import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.util.Arrays;
import java.util.Random;

/**
 * The two halves of AlignedKV's decode attention apart, by the calling thread's CPU time: key
 * scores ({@link KvFormat#scores}) and weighted value sums ({@link KvFormat#accumulateBlock}) over
 * {@code -Dblocks} (1,536: 12 KV heads at depth 4,096) blocks of 32 tokens of head dim 64 on the
 * heap, next to the same for {@code f16} and {@code f32}; Gaussian keys, values and query, and
 * weights {@code exp(z − max)} of Gaussian scores {@code z}, as one decode step's softmax has them.
 * Interleaved rounds ({@code -Drounds}, 7) of {@code -Dcalls} (20) passes; prints each part's
 * median µs per pass and its ratio to F32.
 *
 * <pre>
 * java --add-modules jdk.incubator.vector -cp kvslim-core/target/classes:kvslim-core/target/test-classes \
 *     io.kvslim.kv.format.AlignedKvPartsCpuBench
 * </pre>
 */
public final class AlignedKvPartsCpuBench {
  private AlignedKvPartsCpuBench() {}

  public static void main(String[] args) {
    ThreadMXBean mx = ManagementFactory.getThreadMXBean();
    int blocks = Integer.getInteger("blocks", 1536);
    int rounds = Integer.getInteger("rounds", 7);
    int calls = Integer.getInteger("calls", 20);
    int d = 64;
    int cap = 32;
    KvFormat[][] formats = {
      {KvFormats.F32, KvFormats.F32},
      {KvFormats.F16, KvFormats.F16},
      {new AlignedKvFormat(true, 4, 8, 11), new AlignedKvFormat(false, 4, 8, 11)}
    };
    String[] names = {"f32", "f16", "alignedkv"};
    Random random = new Random(1);
    float[] q = new float[d];
    for (int i = 0; i < d; i++) {
      q[i] = (float) random.nextGaussian();
    }
    float[] weights = new float[blocks * cap];
    for (int i = 0; i < weights.length; i++) {
      weights[i] = (float) Math.exp(random.nextGaussian() - 4);
    }
    MemorySegment[][][] segs = new MemorySegment[formats.length][2][blocks];
    float[][] prepared = new float[formats.length][];
    for (int b = 0; b < blocks; b++) {
      float[] k = new float[cap * d];
      float[] v = new float[cap * d];
      for (int i = 0; i < k.length; i++) {
        k[i] = (float) random.nextGaussian();
        v[i] = (float) random.nextGaussian();
      }
      for (int f = 0; f < formats.length; f++) {
        for (int kv = 0; kv < 2; kv++) {
          KvFormat format = formats[f][kv];
          MemorySegment s = MemorySegment.ofArray(new byte[(int) format.blockBytes(cap, d)]);
          format.encode(kv == 0 ? k : v, 0, d, cap, s, 0, cap, d);
          segs[f][kv][b] = s;
        }
      }
    }
    for (int f = 0; f < formats.length; f++) {
      prepared[f] = new float[formats[f][0].preparedQueryLength(d)];
      formats[f][0].prepareQuery(q, 0, d, prepared[f], 0);
    }
    float[] scores = new float[cap];
    float[] acc = new float[d];
    float[] work = new float[KvFormat.workLength(d)];
    double[][][] us = new double[formats.length][2][rounds];
    double sink = 0;
    for (int r = -3; r < rounds; r++) {
      for (int f = 0; f < formats.length; f++) {
        KvFormat kf = formats[f][0];
        KvFormat vf = formats[f][1];
        long t0 = mx.getCurrentThreadCpuTime();
        for (int n = 0; n < calls; n++) {
          for (int b = 0; b < blocks; b++) {
            kf.scores(segs[f][0][b], cap, cap, d, prepared[f], 0, scores, work);
            sink += scores[3];
          }
        }
        long t1 = mx.getCurrentThreadCpuTime();
        for (int n = 0; n < calls; n++) {
          Arrays.fill(acc, 0f);
          for (int b = 0; b < blocks; b++) {
            vf.accumulateBlock(segs[f][1][b], cap, cap, d, weights, b * cap, acc, 0, work);
          }
          sink += acc[5];
        }
        long t2 = mx.getCurrentThreadCpuTime();
        if (r >= 0) {
          us[f][0][r] = (t1 - t0) / 1e3 / calls;
          us[f][1][r] = (t2 - t1) / 1e3 / calls;
        }
      }
    }
    for (int f = 0; f < formats.length; f++) {
      StringBuilder line = new StringBuilder(String.format("%-10s", names[f]));
      for (int kv = 0; kv < 2; kv++) {
        double[] sorted = us[f][kv].clone();
        Arrays.sort(sorted);
        double[] ratio = new double[rounds];
        for (int r = 0; r < rounds; r++) {
          ratio[r] = us[f][kv][r] / us[0][kv][r];
        }
        Arrays.sort(ratio);
        line.append(
            String.format(
                " %s %6.0f us (%.0f-%.0f) x%.2f",
                kv == 0 ? "keys" : "values",
                sorted[rounds / 2],
                sorted[0],
                sorted[rounds - 1],
                ratio[rounds / 2]));
      }
      System.out.println(line);
    }
    if (sink == 42) {
      System.out.println();
    }
  }
}
