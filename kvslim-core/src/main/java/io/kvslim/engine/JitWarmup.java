package io.kvslim.engine;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.KvCaches;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import java.util.SplittableRandom;

/**
 * Runs an engine through the shapes a server meets before it serves, so that the JIT has compiled
 * their kernels: a prompt chunk, then batched decode steps at every batch size from {@code
 * min(maxBatch, 16)} down to one. Each batch size takes its own matmul kernel (one, two, three to
 * six rows in registers, the float panel beyond), and a kernel that has not been compiled yet runs
 * the Vector API's Java fallback, tens of times slower and allocating every vector: without this a
 * fresh server's first requests ran so for up to half a minute. The caches come from their own
 * unlimited pool and are closed after; the engine keeps no state from the run.
 */
public final class JitWarmup {
  /** The most batch sizes warmed: above this many rows every step takes the same panel kernel. */
  public static final int MAX_BATCH = 16;

  private JitWarmup() {}

  /**
   * What ran: the largest batch, the steps per batch size (fewer than asked where the model's
   * context would not hold them), and how long it took.
   */
  public record Report(int batchSizes, int stepsPerSize, double seconds) {}

  /**
   * Prefills one cache of {@code spec} with a prompt of {@code promptTokens} (the server's prefill
   * chunk) and the others with four tokens, then decodes {@code steps} batched steps at each batch
   * size from {@code min(maxBatch, 16)} down to one.
   *
   * @throws IllegalArgumentException if a count is negative or {@code maxBatch} below one
   */
  public static Report run(Engine engine, KvSpec spec, int maxBatch, int promptTokens, int steps) {
    if (maxBatch < 1 || promptTokens < 1 || steps < 0) {
      throw new IllegalArgumentException(
          "warm-up needs maxBatch >= 1, promptTokens >= 1 and steps >= 0, got "
              + maxBatch
              + ", "
              + promptTokens
              + ", "
              + steps);
    }
    long t0 = System.nanoTime();
    int sizes = Math.min(maxBatch, MAX_BATCH);
    int context = engine.config().contextLength();
    // the first cache decodes at every batch size: keep its last position inside the context
    steps = Math.min(steps, Math.max(0, (context - 8) / sizes - 1));
    int prompt = Math.max(1, Math.min(promptTokens, context - steps * sizes - 4));
    int vocab = engine.config().vocabSize();
    KvCaches factory = KvSpecs.caches(spec, new BlockPool(), engine.config());
    KvCache[] caches = new KvCache[sizes];
    int[] positions = new int[sizes];
    SplittableRandom random = new SplittableRandom(1);
    float[] logits = new float[sizes * vocab];
    try {
      for (int s = 0; s < sizes; s++) {
        caches[s] = factory.create();
        int n = s == 0 ? prompt : Math.min(4, prompt);
        int[] tokens = random.ints(n, 0, vocab).toArray();
        engine.prefill(caches[s], tokens, 0, n, 0, false, logits);
        positions[s] = n;
      }
      int[] tokens = new int[sizes];
      int[] at = new int[sizes];
      for (int b = sizes; b >= 1; b--) {
        for (int g = 0; g < steps; g++) {
          for (int s = 0; s < b; s++) {
            tokens[s] = random.nextInt(vocab);
            at[s] = positions[s]++;
          }
          engine.decodeBatch(caches, tokens, at, b, logits);
        }
      }
    } finally {
      for (KvCache c : caches) {
        if (c != null) {
          c.close();
        }
      }
    }
    return new Report(sizes, steps, (System.nanoTime() - t0) / 1e9);
  }
}
