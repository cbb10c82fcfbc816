package io.kvslim.kv.format;

import io.kvslim.model.ModelConfig;
import io.kvslim.model.Rope;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.util.Arrays;
import java.util.Random;

/**
 * The parts of one decode step's attention over one layer, each alone, by the calling thread's CPU
 * time: {@code -Dheads} KV heads (12) of {@code -Ddepth} tokens (4,096) in blocks of 32, head dim
 * 64, one query per head. Parts: F32 keys scored ({@link KvFormat#scores}) and F32 values added
 * ({@link KvFormat#accumulateBlock}), KVQuant's keys scored at their positions ({@link
 * KvQuantKeyFormat#scoresAtPositions}) with {@code -Doutliers} sparse outliers (1) and without, and
 * its values added with and without outliers. {@code -Drope=NEOX}: pairs half a head apart. Tables
 * as {@code KvQuantAttendCpuBench} makes them; {@code -Dbits} (4). Interleaved: {@code -Drounds}
 * rounds (7) of {@code -Dcalls} calls (40), the median of the per-round medians.
 *
 * <pre>
 * java --add-modules jdk.incubator.vector -cp kvslim-core/target/classes:kvslim-core/target/test-classes \
 *     io.kvslim.kv.format.KvQuantPartsCpuBench
 * </pre>
 */
public final class KvQuantPartsCpuBench {
  private KvQuantPartsCpuBench() {}

  static final int D = 64;
  static final int CAP = 32;

  public static void main(String[] args) {
    ThreadMXBean mx = ManagementFactory.getThreadMXBean();
    int heads = Integer.getInteger("heads", 12);
    int depth = Integer.getInteger("depth", 4096);
    int bits = Integer.getInteger("bits", 4);
    int outliers = Integer.getInteger("outliers", 1);
    int rounds = Integer.getInteger("rounds", 7);
    int calls = Integer.getInteger("calls", 40);
    int blocks = depth / CAP;
    ModelConfig config =
        new ModelConfig(
            "llama",
            768,
            1,
            heads,
            heads,
            D,
            2048,
            8192,
            16384,
            1e-5f,
            500000f,
            D,
            ModelConfig.RopeType.NORMAL,
            1f,
            false);
    Rope rope = new Rope(config, null);
    int pairOffset = rope.pairOffset();
    int half = D / 2;
    float[] cos = new float[(depth + 1) * half];
    float[] sin = new float[cos.length];
    for (int p = 0; p <= depth; p++) {
      rope.angles(p, cos, sin, p * half);
    }
    float[][] range = new float[heads][D];
    float[][] offset = new float[heads][D];
    for (float[] r : range) {
      Arrays.fill(r, 2.33f);
    }
    int levels = 1 << bits;
    float[] codebook = new float[levels];
    for (int i = 0; i < levels; i++) {
      double u = (i + 0.5) / levels * 2 - 1;
      codebook[i] = (float) (Math.signum(u) * Math.pow(Math.abs(u), 1.3));
    }
    KvQuantKeyFormat keysO = new KvQuantKeyFormat(bits, codebook, offset, range, outliers, 1);
    KvQuantKeyFormat keys0 = new KvQuantKeyFormat(bits, codebook, offset, range, 0, 1);
    KvQuantValueFormat valuesO = new KvQuantValueFormat(bits, codebook, outliers);
    KvQuantValueFormat values0 = new KvQuantValueFormat(bits, codebook, 0);
    Random random = new Random(1);
    MemorySegment[][] f32k = new MemorySegment[heads][blocks];
    MemorySegment[][] f32v = new MemorySegment[heads][blocks];
    MemorySegment[][] kO = new MemorySegment[heads][blocks];
    MemorySegment[][] k0 = new MemorySegment[heads][blocks];
    MemorySegment[][] vO = new MemorySegment[heads][blocks];
    MemorySegment[][] v0 = new MemorySegment[heads][blocks];
    float[] rows = new float[CAP * D];
    float[] vrows = new float[CAP * D];
    for (int b = 0; b < blocks; b++) {
      for (int g = 0; g < heads; g++) {
        for (int i = 0; i < rows.length; i++) {
          rows[i] = (float) random.nextGaussian();
          vrows[i] = (float) random.nextGaussian();
        }
        KvFormat kh = keysO.forHead(g);
        KvFormat kh0 = keys0.forHead(g);
        kO[g][b] = encode(kh, rows);
        k0[g][b] = encode(kh0, rows);
        vO[g][b] = encode(valuesO, vrows);
        v0[g][b] = encode(values0, vrows);
        f32v[g][b] = encode(KvFormats.F32, vrows);
        float[] rotated = rows.clone();
        for (int s = 0; s < CAP; s++) {
          rope.rotate(rotated, s * D, 1, D, cos, sin, (b * CAP + s) * half);
        }
        f32k[g][b] = encode(KvFormats.F32, rotated);
      }
    }
    float[] q = new float[heads * D];
    for (int i = 0; i < q.length; i++) {
      q[i] = (float) random.nextGaussian();
    }
    float[][] preparedO = new float[heads][];
    float[][] prepared0 = new float[heads][];
    for (int g = 0; g < heads; g++) {
      preparedO[g] = new float[keysO.rotatedQueryLength(D)];
      keysO.forHead(g).prepareRotatedQuery(q, g * D, D, pairOffset, preparedO[g], 0);
      prepared0[g] = new float[keys0.rotatedQueryLength(D)];
      keys0.forHead(g).prepareRotatedQuery(q, g * D, D, pairOffset, prepared0[g], 0);
    }
    float[] scores = new float[depth];
    float[] weights = new float[depth];
    for (int i = 0; i < depth; i++) {
      weights[i] = (float) Math.exp(random.nextGaussian() - 3);
    }
    float[] acc = new float[D];
    float[] work = new float[KvFormat.workLength(D)];
    int[][] positions = new int[blocks][CAP];
    for (int b = 0; b < blocks; b++) {
      for (int s = 0; s < CAP; s++) {
        positions[b][s] = b * CAP + s;
      }
    }
    String[] names = {
      "f32 keys", "kvq keys", "kvq keys o0", "f32 values", "kvq values", "kvq values o0"
    };
    Runnable[] parts = {
      () -> {
        for (int g = 0; g < heads; g++) {
          for (int b = 0; b < blocks; b++) {
            KvFormats.F32.scores(f32k[g][b], CAP, CAP, D, q, g * D, scores, work);
          }
        }
      },
      () ->
          rotated(
              keysO, kO, preparedO, heads, blocks, pairOffset, positions, cos, sin, scores, work),
      () ->
          rotated(
              keys0, k0, prepared0, heads, blocks, pairOffset, positions, cos, sin, scores, work),
      () -> add(KvFormats.F32, f32v, heads, blocks, weights, acc, work),
      () -> add(valuesO, vO, heads, blocks, weights, acc, work),
      () -> add(values0, v0, heads, blocks, weights, acc, work),
    };
    long[][] medians = new long[parts.length][rounds];
    long[] times = new long[calls];
    for (int warm = 0; warm < 3; warm++) {
      for (Runnable part : parts) {
        for (int i = 0; i < calls; i++) {
          part.run();
        }
      }
    }
    for (int round = 0; round < rounds; round++) {
      for (int v = 0; v < parts.length; v++) {
        for (int i = 0; i < calls; i++) {
          long t0 = mx.getCurrentThreadCpuTime();
          parts[v].run();
          times[i] = mx.getCurrentThreadCpuTime() - t0;
        }
        Arrays.sort(times);
        medians[v][round] = times[calls / 2];
      }
    }
    for (int v = 0; v < parts.length; v++) {
      long[] m = medians[v].clone();
      Arrays.sort(m);
      System.out.printf(
          "%-14s %d bits, %d heads x %d: %.3f ms CPU (rounds %.3f..%.3f)%n",
          names[v], bits, heads, depth, m[m.length / 2] / 1e6, m[0] / 1e6, m[m.length - 1] / 1e6);
    }
  }

  private static MemorySegment encode(KvFormat f, float[] rows) {
    MemorySegment block = MemorySegment.ofArray(new byte[(int) f.blockBytes(CAP, D)]);
    f.encode(rows, 0, D, CAP, block, 0, CAP, D);
    return block;
  }

  private static void rotated(
      KvQuantKeyFormat layer,
      MemorySegment[][] blocks,
      float[][] prepared,
      int heads,
      int count,
      int pairOffset,
      int[][] positions,
      float[] cos,
      float[] sin,
      float[] scores,
      float[] work) {
    for (int g = 0; g < heads; g++) {
      KvFormat f = layer.forHead(g);
      for (int b = 0; b < count; b++) {
        f.scoresAtPositions(
            blocks[g][b],
            CAP,
            D,
            prepared[g],
            0,
            pairOffset,
            positions[b],
            cos,
            sin,
            scores,
            b * CAP,
            work);
      }
    }
  }

  private static void add(
      KvFormat f,
      MemorySegment[][] blocks,
      int heads,
      int count,
      float[] weights,
      float[] acc,
      float[] work) {
    for (int g = 0; g < heads; g++) {
      for (int b = 0; b < count; b++) {
        f.accumulateBlock(blocks[g][b], CAP, CAP, D, weights, b * CAP, acc, 0, work);
      }
    }
  }
}
