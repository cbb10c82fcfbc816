package io.kvslim.kv.cache;

import io.kvslim.kv.AttentionObserver;
import io.kvslim.kv.format.QaqFormat;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvCacheFormat;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.util.Arrays;
import java.util.Random;

/**
 * One decode step's attention over one layer of QAQ blocks (not a test), beside f16 and F32, with
 * and without an observer: thread CPU time per call, interleaved rounds, median. {@code -Dheads} KV
 * heads (12), {@code -Ddepth} tokens (4,096), head dim 64, blocks of 32; QAQ rows get 2 bits but
 * for a share of wider ones ({@code -Dwide}, 0.1, widths 3..8), as QAQ gives a long prompt's rows.
 * Arguments name the variants (default all but the last two): {@code f16}, {@code f32}, {@code
 * qaq}, {@code qaqK} (QAQ keys, f16 values), {@code qaqV} (f16 keys, QAQ values); {@code +observer}
 * attends with an observer. {@code -Dwidths=FILE} takes the widths of layer {@code -Dlayer} (0)
 * from a file of {@link io.kvslim.kv.method.QaqWidthsDumpBench} instead (the engine's state after a
 * prefill: its blocks converted with the widths QAQ's policy gave them, the rest left in f16), the
 * rows still random.
 *
 * <pre>
 * java --add-modules jdk.incubator.vector -cp target/classes:target/test-classes \
 *     io.kvslim.kv.cache.QaqAttendCpuBench
 * </pre>
 */
public final class QaqAttendCpuBench {
  private QaqAttendCpuBench() {}

  /** Per KV head and block: the key and value widths of one layer in a widths file, or null. */
  static String[][][] widths(String file, int layer) {
    if (file == null) {
      return null;
    }
    java.util.Map<Integer, java.util.List<String[]>> heads = new java.util.TreeMap<>();
    try {
      for (String line : java.nio.file.Files.readAllLines(java.nio.file.Path.of(file))) {
        String[] f = line.trim().split(" ");
        if (f.length == 5 && Integer.parseInt(f[0]) == layer) {
          heads
              .computeIfAbsent(Integer.parseInt(f[1]), h -> new java.util.ArrayList<>())
              .add(new String[] {f[3], f[4]});
        }
      }
    } catch (java.io.IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
    String[][][] out = new String[heads.size()][][];
    heads.forEach((h, blocks) -> out[h] = blocks.toArray(new String[0][]));
    long[] histogram = new long[9];
    for (String[][] head : out) {
      for (String[] kv : head) {
        for (String w : kv) {
          for (char ch : w.toCharArray()) {
            histogram[ch == '-' ? 0 : ch - '0']++;
          }
        }
      }
    }
    System.out.println(
        "widths of layer "
            + layer
            + " (key and value rows by width 1..8): "
            + Arrays.toString(Arrays.copyOfRange(histogram, 1, 9)));
    return out;
  }

  public static void main(String[] args) {
    ThreadMXBean mx = ManagementFactory.getThreadMXBean();
    int kvHeads = Integer.getInteger("heads", 12);
    int depth = Integer.getInteger("depth", 4096);
    int rounds = Integer.getInteger("rounds", 7);
    int calls = Integer.getInteger("calls", 100);
    int warm = Integer.getInteger("warm", 300);
    double wide = Double.parseDouble(System.getProperty("wide", "0.1"));
    String[][][] fromFile = widths(System.getProperty("widths"), Integer.getInteger("layer", 0));
    int dim = 64;
    String[] names =
        args.length > 0 ? args : new String[] {"f16", "f32", "qaq", "qaq+observer", "f16+observer"};
    PagedLayerKv[] layers = new PagedLayerKv[names.length];
    AttentionObserver[] observers = new AttentionObserver[names.length];
    float[] sink = new float[1];
    AttentionObserver observer = (qi, h, g, probs, count) -> sink[0] += probs[count - 1];
    float[] q = null;
    for (int x = 0; x < names.length; x++) {
      String format = names[x].startsWith("f32") ? "f32" : "f16";
      PagedKvCache cache =
          PagedKvCache.create(1, kvHeads, dim, KvCacheFormat.parse(format).withBlockTokens(32));
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
      if (names[x].startsWith("qaq")) {
        int low = QaqFormat.lowOutliers(0.01, dim);
        int high = QaqFormat.highOutliers(0.01, dim);
        for (int g = 0; g < kvHeads; g++) {
          HeadStore head = layer.head(g);
          float[] scratch = new float[4 * 32 * dim];
          for (int b = 0; b < head.blocks().size() - 1; b++) {
            byte[] kb = new byte[32];
            byte[] vb = new byte[32];
            for (int s = 0; s < 32; s++) {
              kb[s] = (byte) (random.nextDouble() < wide ? 3 + random.nextInt(6) : 2);
              vb[s] = (byte) (random.nextDouble() < wide ? 3 + random.nextInt(6) : 2);
            }
            if (fromFile != null) {
              String[] kv = b < fromFile[g].length ? fromFile[g][b] : null;
              if (kv == null || kv[0].equals("-") || kv[1].equals("-")) {
                continue; // left in f16 by the policy
              }
              for (int s = 0; s < 32; s++) {
                kb[s] = (byte) (kv[0].charAt(s) - '0');
                vb[s] = (byte) (kv[1].charAt(s) - '0');
              }
            }
            head.convertBlock(
                b,
                names[x].startsWith("qaqV")
                    ? head.blocks().get(b).keyFormat()
                    : new QaqFormat(kb, low, high, dim),
                names[x].startsWith("qaqK")
                    ? head.blocks().get(b).valueFormat()
                    : new QaqFormat(vb, low, high, dim),
                scratch);
          }
        }
      }
      q = new float[kvHeads * dim];
      for (int i = 0; i < q.length; i++) {
        q[i] = (float) random.nextGaussian();
      }
      layers[x] = layer;
      observers[x] = names[x].endsWith("observer") ? observer : null;
    }
    float[] out = new float[q.length];
    int[] position = {depth};
    for (int x = 0; x < names.length; x++) {
      for (int i = 0; i < warm; i++) {
        layers[x].attend(1, position, kvHeads, q, 0.125f, out, observers[x], null);
      }
    }
    double[][] us = new double[names.length][rounds];
    for (int r = 0; r < rounds; r++) {
      for (int x = 0; x < names.length; x++) {
        long t0 = mx.getCurrentThreadCpuTime();
        for (int n = 0; n < calls; n++) {
          layers[x].attend(1, position, kvHeads, q, 0.125f, out, observers[x], null);
        }
        us[x][r] = (mx.getCurrentThreadCpuTime() - t0) / 1e3 / calls;
      }
    }
    for (int x = 0; x < names.length; x++) {
      double[] sorted = us[x].clone();
      Arrays.sort(sorted);
      System.out.printf(
          "%-14s %d KV heads x %d: attend median %.0f us (%.0f-%.0f)%n",
          names[x], kvHeads, depth, sorted[rounds / 2], sorted[0], sorted[rounds - 1]);
    }
    System.out.println(sink[0] == 12345f ? "" : "done");
  }
}
