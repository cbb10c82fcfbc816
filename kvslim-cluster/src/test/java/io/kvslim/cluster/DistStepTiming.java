package io.kvslim.cluster;

import io.kvslim.engine.Engine;
import io.kvslim.engine.KvCacheFactory;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.DenseLayerKv;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.LayerKv;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.UUID;

/**
 * Decode step time of DistAttention with 1, 2 and 3 in-process members on loopback against the
 * single-node caches, at a given depth (not a test: a measurement, run by hand, see
 * docs/results/dist/README.md). Arguments: model, depth, decode steps, repeats, threads.
 */
public final class DistStepTiming {
  public static void main(String[] args) throws Exception {
    Path modelPath = Path.of(args[0]);
    int depth = Integer.parseInt(args[1]);
    int steps = Integer.parseInt(args[2]);
    int repeats = Integer.parseInt(args[3]);
    int threads = Integer.parseInt(args[4]);
    int block = args.length > 5 ? Integer.parseInt(args[5]) : 32;
    try (Model model = Model.load(modelPath)) {
      var c = model.config();
      System.out.printf(
          Locale.ROOT,
          "model %s: %d layers, %d KV heads x %d, depth %d, %d decode steps x %d repeats"
              + " (configurations interleaved), %d threads, blocks of %d tokens%n",
          modelPath.getFileName(),
          c.layers(),
          c.kvHeads(),
          c.headDim(),
          depth,
          steps,
          repeats,
          threads,
          block);
      String name = "kvslim-timing-" + UUID.randomUUID();
      List<InetSocketAddress> seeds =
          List.of(new InetSocketAddress("127.0.0.1", DistAttentionTest.freePort()));
      List<KvCluster> members = new ArrayList<>();
      List<String> labels = new ArrayList<>();
      List<KvCacheFactory> factories = new ArrayList<>();
      labels.add("single node, dense F32 (DenseLayerKv)");
      factories.add(DistStepTiming::dense);
      labels.add("single node, --kv full (paged F32)");
      factories.add(KvSpecs.factory(KvSpec.FULL, new BlockPool()));
      try {
        for (int n = 1; n <= 3; n++) {
          members.add(KvCluster.join(name, seeds, Duration.ofSeconds(30)));
          List<com.hazelcast.cluster.Member> first = members.get(0).members();
          int blockTokens = block;
          KvCluster coordinator = members.get(0);
          labels.add("DistAttention, " + n + " member(s)");
          factories.add(
              cfg ->
                  new DistributedKvCache(
                      coordinator, first, blockTokens, cfg.layers(), cfg.kvHeads(), cfg.headDim()));
        }
        double[][] ms = new double[labels.size()][repeats + 1];
        double[][] att = new double[labels.size()][repeats + 1];
        try (Engine engine = new Engine(model, threads, null)) {
          for (int r = 0; r <= repeats; r++) { // round 0 warms the JIT up
            for (int k = 0; k < labels.size(); k++) {
              double[] t = run(engine, factories.get(k), model, depth, steps);
              ms[k][r] = t[0];
              att[k][r] = t[1];
            }
          }
        }
        for (int k = 0; k < labels.size(); k++) {
          double[] timed = Arrays.copyOfRange(ms[k], 1, repeats + 1);
          double[] inAttention = Arrays.copyOfRange(att[k], 1, repeats + 1);
          Arrays.sort(timed);
          Arrays.sort(inAttention);
          System.out.printf(
              Locale.ROOT,
              "%-40s decode %.2f ms/token (median of %d; min %.2f, max %.2f); in attend() %.3f"
                  + " ms/token (median; min %.3f)%n",
              labels.get(k),
              timed[timed.length / 2],
              timed.length,
              timed[0],
              timed[timed.length - 1],
              inAttention[inAttention.length / 2],
              inAttention[0]);
        }
      } finally {
        members.forEach(KvCluster::close);
      }
    }
  }

  /**
   * Prefills {@code depth} tokens, then times {@code steps} decode steps: ms per step, and ms per
   * step spent in the layers' attend calls (RPCs and merge included).
   */
  private static double[] run(
      Engine engine, KvCacheFactory caches, Model model, int depth, int steps) {
    int vocab = model.config().vocabSize();
    int[] prompt = new int[depth];
    prompt[0] = 1;
    for (int i = 1; i < depth; i++) {
      prompt[i] = 3 + (i * 37) % (vocab - 3);
    }
    float[] logits = new float[vocab];
    try (TimedCache cache = new TimedCache(caches.create(model.config()))) {
      engine.prefill(cache, prompt, 0, depth, 0, false, logits);
      cache.nanos[0] = 0;
      long t0 = System.nanoTime();
      for (int s = 0; s < steps; s++) {
        engine.decode(cache, 3 + (s * 11) % (vocab - 3), depth + s, logits);
      }
      return new double[] {(System.nanoTime() - t0) / 1e6 / steps, cache.nanos[0] / 1e6 / steps};
    }
  }

  /** A cache whose layers add the time spent in attend to {@code nanos[0]}. */
  private static final class TimedCache implements KvCache {
    final KvCache inner;
    final long[] nanos = new long[1];
    final LayerKv[] layers;

    TimedCache(KvCache inner) {
      this.inner = inner;
      this.layers = new LayerKv[inner.layerCount()];
      for (int l = 0; l < layers.length; l++) {
        LayerKv kv = inner.layer(l);
        layers[l] =
            new LayerKv() {
              @Override
              public int kvHeads() {
                return kv.kvHeads();
              }

              @Override
              public int headDim() {
                return kv.headDim();
              }

              @Override
              public void append(int n, int[] p, float[] k, float[] v) {
                kv.append(n, p, k, v);
              }

              @Override
              public void attend(
                  int n,
                  int[] p,
                  int heads,
                  float[] q,
                  float scale,
                  float[] out,
                  io.kvslim.kv.AttentionObserver o) {
                attend(n, p, heads, q, scale, out, o, null, io.kvslim.kv.AttentionOrder.OWN);
              }

              @Override
              public void attend(
                  int n,
                  int[] p,
                  int heads,
                  float[] q,
                  float scale,
                  float[] out,
                  io.kvslim.kv.AttentionObserver o,
                  io.kvslim.tensor.Parallel pool,
                  io.kvslim.kv.AttentionOrder order) {
                long t = System.nanoTime();
                kv.attend(n, p, heads, q, scale, out, o, pool, order);
                nanos[0] += System.nanoTime() - t;
              }

              @Override
              public int size(int g) {
                return kv.size(g);
              }

              @Override
              public long bytes() {
                return kv.bytes();
              }

              @Override
              public long bytes(int g) {
                return kv.bytes(g);
              }
            };
      }
    }

    @Override
    public int layerCount() {
      return layers.length;
    }

    @Override
    public LayerKv layer(int l) {
      return layers[l];
    }

    @Override
    public long bytes() {
      return inner.bytes();
    }

    @Override
    public void afterStep(StepKind kind) {
      inner.afterStep(kind);
    }

    @Override
    public void close() {
      inner.close();
    }
  }

  private static KvCache dense(io.kvslim.model.ModelConfig c) {
    LayerKv[] layers = new LayerKv[c.layers()];
    for (int l = 0; l < layers.length; l++) {
      layers[l] = new DenseLayerKv(c.kvHeads(), c.headDim());
    }
    return new KvCache() {
      @Override
      public int layerCount() {
        return layers.length;
      }

      @Override
      public LayerKv layer(int layer) {
        return layers[layer];
      }

      @Override
      public long bytes() {
        return 0;
      }

      @Override
      public void close() {}
    };
  }
}
