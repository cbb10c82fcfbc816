package io.kvslim.engine;

import io.kvslim.kv.ContextReplay;
import io.kvslim.kv.KvCache;
import io.kvslim.model.Batch;
import io.kvslim.model.Forward;
import io.kvslim.model.Model;
import io.kvslim.model.ModelConfig;
import io.kvslim.model.Numerics;
import io.kvslim.tensor.Parallel;
import io.kvslim.tokenizer.Tokenizer;

/**
 * A model with its thread pool, forward pass and a KV cache factory: what every command and the
 * server run on, with the {@link Numerics} chosen when it is built. Not thread-safe: one step at a
 * time (the scheduler batches sequences).
 */
public final class Engine implements AutoCloseable {
  /** Rows per prefill step: long prompts are split so scratch buffers stay bounded. */
  public static final int DEFAULT_PREFILL_CHUNK = 512;

  private final Model model;
  private final Parallel pool;
  private final Forward forward;
  private final KvCacheFactory kvFactory;
  private final Batch batch = new Batch();
  private int prefillChunk = DEFAULT_PREFILL_CHUNK;
  private Tokenizer tokenizer; // the model's, read when a replay first needs it

  /** An engine with kvslim's own numerics ({@link Numerics#DEFAULT}). */
  public Engine(Model model, int threads, KvCacheFactory kvFactory) {
    this(model, threads, kvFactory, Numerics.DEFAULT);
  }

  public Engine(Model model, int threads, KvCacheFactory kvFactory, Numerics numerics) {
    this.model = model;
    this.pool = new Parallel(threads);
    this.forward = new Forward(model, pool, numerics);
    this.kvFactory = kvFactory;
  }

  public Model model() {
    return model;
  }

  public ModelConfig config() {
    return model.config();
  }

  public Forward forward() {
    return forward;
  }

  public Numerics numerics() {
    return forward.numerics();
  }

  public Parallel pool() {
    return pool;
  }

  public int threads() {
    return pool.threads();
  }

  /** Rows per prefill run ({@link #setPrefillChunk}). */
  public int prefillChunk() {
    return prefillChunk;
  }

  public void setPrefillChunk(int rows) {
    if (rows < 1) {
      throw new IllegalArgumentException("prefill chunk must be >= 1, got " + rows);
    }
    this.prefillChunk = rows;
  }

  public KvCache newCache() {
    return kvFactory.create(model.config());
  }

  /**
   * Feeds {@code tokens[from..to)} at positions from {@code firstPos} into {@code cache}. With
   * {@code allLogits}, {@code logits} receives every row's logits ({@code (to-from) × vocab});
   * otherwise only the last row's (first {@code vocab} floats).
   */
  public void prefill(
      KvCache cache,
      int[] tokens,
      int from,
      int to,
      int firstPos,
      boolean allLogits,
      float[] logits) {
    int vocab = model.config().vocabSize();
    float[] chunkLogits = allLogits ? null : logits;
    cache.beginPrompt(to - from);
    int chunk = cache.prefillChunk(); // a method compressing inside the prefill: its chunks
    int rows = cache.thinsPrefill() ? Integer.MAX_VALUE : prefillChunk; // PyramidInfer: one run
    for (int s = from; s < to; ) {
      int e = (int) Math.min(to, (long) s + rows);
      if (chunk != Integer.MAX_VALUE) {
        e = Math.min(e, from + ((s - from) / chunk + 1) * chunk); // steps never cross a chunk end
      }
      boolean last = e == to;
      batch.clear().add(cache, tokens, s, e, firstPos + (s - from), allLogits, last);
      if (allLogits) {
        float[] out = logits;
        int rowOff = (s - from) * vocab;
        if (rowOff == 0) {
          forward.run(batch, out);
        } else {
          if (chunkLogits == null || chunkLogits.length < (e - s) * vocab) {
            chunkLogits = new float[(e - s) * vocab];
          }
          forward.run(batch, chunkLogits);
          System.arraycopy(chunkLogits, 0, out, rowOff, (e - s) * vocab);
        }
      } else {
        forward.run(batch, logits);
      }
      s = e;
    }
    replayPrompt(cache, tokens, from, to, firstPos);
    cache.afterStep(KvCache.StepKind.PREFILL);
  }

  /**
   * Lends {@code cache} the prompt {@code tokens[from..to)} (at positions from {@code firstPos}),
   * the model's tokenizer and extra forward passes ({@link ContextReplay}) when it {@link
   * KvCache#wantsReplay wants them}: whoever feeds a prompt calls this after its last step and
   * before {@code afterStep(PREFILL)} ({@link #prefill} does). The passes overwrite the forward
   * pass's scratch buffers, so the prompt's logits must have been read.
   */
  public void replayPrompt(KvCache cache, int[] tokens, int from, int to, int firstPos) {
    if (!cache.wantsReplay()) {
      return;
    }
    int[] prompt = java.util.Arrays.copyOfRange(tokens, from, to);
    cache.replay(
        new ContextReplay() {
          @Override
          public int[] prompt() {
            return prompt.clone();
          }

          @Override
          public int firstPosition() {
            return firstPos;
          }

          @Override
          public int[] encode(String text) {
            return tokenizer().encode(text, false, false);
          }

          @Override
          public void forward(KvCache target, int[] toks, int n, int first) {
            for (int s = 0; s < n; ) {
              int e = Math.min(n, s + prefillChunk);
              batch.clear().add(target, toks, s, e, first + s, false, false);
              forward.run(batch, NO_LOGITS);
              s = e;
            }
          }
        });
  }

  private static final float[] NO_LOGITS = new float[0];

  /** The model's tokenizer, read from its file when first needed. */
  private Tokenizer tokenizer() {
    if (tokenizer == null) {
      if (model.file() == null) {
        throw new IllegalStateException("the model has no file to read a tokenizer from");
      }
      tokenizer = Tokenizer.fromGguf(model.file());
    }
    return tokenizer;
  }

  /** One decode step of one sequence: appends {@code token} at {@code pos}, logits to out. */
  public void decode(KvCache cache, int token, int pos, float[] logits) {
    int[] one = {token};
    batch.clear().add(cache, one, 0, 1, pos, false, true);
    forward.run(batch, logits);
    cache.afterStep(KvCache.StepKind.DECODE);
  }

  /** One batched decode step: sequence i appends {@code tokens[i]} at {@code positions[i]}. */
  public void decodeBatch(KvCache[] caches, int[] tokens, int[] positions, int n, float[] logits) {
    batch.clear();
    for (int i = 0; i < n; i++) {
      batch.add(caches[i], tokens, i, i + 1, positions[i], false, true);
    }
    forward.run(batch, logits);
    for (int i = 0; i < n; i++) {
      caches[i].afterStep(KvCache.StepKind.DECODE);
    }
  }

  @Override
  public void close() {
    pool.close();
  }
}
