package io.kvslim.engine;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.KvCaches;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Random;

/**
 * Milliseconds per batched decode step for each spec and batch size at a given context length:
 * {@code maxBatch} sequences are prefilled with {@code context} random tokens, then batches of the
 * given sizes decode together (a warm-up, then the median and spread of timed rounds). Not a test;
 * run with
 *
 * <pre>
 * ./kvslim --version  # builds kvslim-cli/target/lib
 * java --add-modules jdk.incubator.vector \
 *     -cp kvslim-core/target/classes:kvslim-core/target/test-classes:kvslim-cli/target/lib/* \
 *     io.kvslim.engine.DecodeStepMain MODEL THREADS CONTEXT BATCHES SPEC...
 * </pre>
 *
 * where {@code BATCHES} is a comma list such as {@code 1,2,9}.
 */
public final class DecodeStepMain {
  private DecodeStepMain() {}

  public static void main(String[] args) {
    Path modelPath = Path.of(args[0]);
    int threads = Integer.parseInt(args[1]);
    int context = Integer.parseInt(args[2]);
    String[] bs = args[3].split(",");
    int[] batches = new int[bs.length];
    int maxBatch = 1;
    for (int i = 0; i < bs.length; i++) {
      batches[i] = Integer.parseInt(bs[i]);
      maxBatch = Math.max(maxBatch, batches[i]);
    }
    int steps = Integer.getInteger("steps", 24);
    int rounds = Integer.getInteger("rounds", 5);
    Model model = Model.load(modelPath);
    try (Engine engine =
        new Engine(model, threads, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      int vocab = engine.config().vocabSize();
      float[] one = new float[vocab];
      for (int a = 4; a < args.length; a++) {
        KvSpec spec = KvSpec.parse(args[a]);
        KvCaches kv = KvSpecs.caches(spec, new BlockPool(), engine.config());
        Random rnd = new Random(7);
        for (int b : batches) {
          // fresh caches per batch size, so every size decodes at the same context
          KvCache[] arr = new KvCache[b];
          int[] pos = new int[b];
          for (int s = 0; s < b; s++) {
            arr[s] = kv.create();
            int[] t = new int[context];
            for (int i = 0; i < context; i++) {
              t[i] = rnd.nextInt(vocab);
            }
            engine.prefill(arr[s], t, 0, context, 0, false, one);
            pos[s] = context;
          }
          float[] logits = new float[b * vocab];
          int[] tok = new int[b];
          int[] p = new int[b];
          double[] ms = new double[rounds + 1];
          for (int r = 0; r <= rounds; r++) {
            long t0 = System.nanoTime();
            for (int g = 0; g < steps; g++) {
              for (int i = 0; i < b; i++) {
                tok[i] = rnd.nextInt(vocab);
                p[i] = pos[i]++;
              }
              engine.decodeBatch(arr, tok, p, b, logits);
            }
            ms[r] = (System.nanoTime() - t0) / 1e6 / steps;
          }
          if (Boolean.getBoolean("attention")) {
            // attention alone over the same caches (no matmuls in between): 12 layers per step
            int heads = engine.config().heads();
            int qd = engine.config().qDim();
            float[] qv = new float[qd];
            float[] out = new float[qd];
            int[] one1 = new int[1];
            for (int i = 0; i < qd; i++) {
              qv[i] = (float) rnd.nextGaussian();
            }
            double best = Double.MAX_VALUE;
            for (int r = 0; r < 20; r++) {
              long t0 = System.nanoTime();
              for (int i = 0; i < b; i++) {
                one1[0] = pos[i] - 1;
                for (int l = 0; l < engine.config().layers(); l++) {
                  arr[i].layer(l).attend(1, one1, heads, qv, 0.125f, out, null, engine.pool());
                }
              }
              best = Math.min(best, (System.nanoTime() - t0) / 1e6);
            }
            System.out.printf(
                Locale.ROOT, "  attention alone: %.2f ms per step of %d sequences%n", best, b);
          }
          double[] timed = java.util.Arrays.copyOfRange(ms, 1, ms.length);
          java.util.Arrays.sort(timed);
          double med = timed[timed.length / 2];
          System.out.printf(
              Locale.ROOT,
              "%-28s ctx %5d batch %3d  %7.2f ms/step (min %6.2f max %6.2f)  %7.1f tok/s%n",
              args[a],
              context,
              b,
              med,
              timed[0],
              timed[timed.length - 1],
              b * 1000.0 / med);
          for (KvCache c : arr) {
            c.close();
          }
        }
      }
    }
  }
}
