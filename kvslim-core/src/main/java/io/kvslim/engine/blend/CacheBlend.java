package io.kvslim.engine.blend;

import io.kvslim.engine.Engine;
import io.kvslim.kv.KvCache;
import io.kvslim.model.Batch;
import io.kvslim.model.Model;
import io.kvslim.model.ModelConfig;
import io.kvslim.model.Rope;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.function.Supplier;

/**
 * CacheBlend (Yao et al. 2024, "CacheBlend: Fast Large Language Model Serving for RAG with Cached
 * Knowledge Fusion", arXiv 2405.16444; METHODS.md H1): the prefill of a prompt {@code prefix +
 * chunk_1 + … + chunk_m + suffix} from the chunks' KV computed on their own.
 *
 * <ol>
 *   <li>Each chunk is prefilled alone, as {@code prefix + chunk} from position 0, the first time it
 *       is seen, and its KV stored in a {@link ChunkKvStore} under a hash of the model, the KV spec
 *       and those token ids (as the authors' {@code example/blend.py} lines 57–80 prefill each
 *       chunk behind the BOS token and keep its rows after it).
 *   <li>Their keys are re-rotated from the positions they were computed at to their positions in
 *       the prompt: RoPE by the difference, {@code R(p + Δ)k = R(Δ)R(p)k} (METHODS.md M6); the
 *       prefix comes from the first chunk's entry, where it already sits at its positions.
 *   <li>The prompt runs through the model once ({@link BlendCache}): every token up to the check
 *       layer, then the {@code recompute} share of the chunk tokens whose values deviate most at
 *       that layer and the suffix; the other tokens keep their stored KV.
 * </ol>
 *
 * With {@code recompute=0%} nothing but the suffix is computed: naive reuse, the stored KV fused as
 * is. With {@code recompute=100%} every token is recomputed and the result is a full prefill's, bit
 * for bit.
 *
 * <p>Why not a KV method of the registry ({@code KvMethods}): those methods decide what a cache
 * keeps and how it stores it, for any prompt; CacheBlend changes how a prompt's KV is computed and
 * needs the prompt's chunk boundaries, which only the request knows, and a store that outlives
 * sequences. It is an engine feature on top of any cache whose layers store rotated keys, with its
 * own spec ({@link BlendOptions}). Not thread-safe: one prefill at a time, like the {@link Engine}.
 */
public final class CacheBlend {
  private final Engine engine;
  private final Supplier<KvCache> caches;
  private final ChunkKvStore store;
  private final String model;
  private final String kvSpec;
  private final BlendOptions options;
  private final Batch batch = new Batch();

  /**
   * @param kvSpec the KV spec of {@code engine}'s caches, part of every chunk's key (a chunk
   *     computed with a compressed cache has other KV)
   */
  public CacheBlend(Engine engine, String kvSpec, ChunkKvStore store, BlendOptions options) {
    this(engine, engine::newCache, kvSpec, store, options);
  }

  /**
   * As {@link #CacheBlend(Engine, String, ChunkKvStore, BlendOptions)}, computing chunks in caches
   * from {@code caches} (of spec {@code kvSpec}) instead of the engine's (the server's per-request
   * KV specs).
   */
  public CacheBlend(
      Engine engine,
      Supplier<KvCache> caches,
      String kvSpec,
      ChunkKvStore store,
      BlendOptions options) {
    this.engine = engine;
    this.caches = caches;
    this.store = store;
    this.kvSpec = kvSpec;
    this.options = options;
    this.model = identity(engine.config(), engine.numerics().name());
    if (options.checkLayer() >= engine.config().layers()) {
      throw new IllegalArgumentException(
          "cacheblend check layer "
              + options.checkLayer()
              + " must be below the model's "
              + engine.config().layers()
              + " layers");
    }
  }

  /** What a blended prefill did. */
  public record Result(int tokens, int cachedTokens, int recomputed, int hits, int misses) {}

  public BlendOptions options() {
    return options;
  }

  public ChunkKvStore store() {
    return store;
  }

  /**
   * Prefills {@code target} (empty) with {@code prefix + chunks + suffix} from position 0 and
   * writes the last token's logits to {@code logits}; chunks not in the store are computed and
   * stored first.
   */
  public Result prefill(
      KvCache target, int[] prefix, List<int[]> chunks, int[] suffix, float[] logits) {
    ModelConfig c = engine.config();
    if (chunks.isEmpty()) {
      throw new IllegalArgumentException("cacheblend needs at least one chunk");
    }
    if (suffix.length == 0) {
      throw new IllegalArgumentException("cacheblend needs a non-empty prompt after the chunks");
    }
    long total = prefix.length + (long) suffix.length;
    for (int[] chunk : chunks) {
      if (chunk.length == 0) {
        throw new IllegalArgumentException("cacheblend chunks must not be empty");
      }
      total += chunk.length;
    }
    if (total > c.contextLength()) {
      throw new IllegalArgumentException(
          "the blended prompt has "
              + total
              + " tokens, more than the context of "
              + c.contextLength());
    }
    checkTarget(target, engine.model().rope());
    int rows = (int) total;
    int width = c.kvDim();
    int[] all = new int[rows];
    System.arraycopy(prefix, 0, all, 0, prefix.length);
    int at = prefix.length;
    ChunkKv[] stored = new ChunkKv[chunks.size()];
    int hits = 0;
    for (int i = 0; i < stored.length; i++) {
      int[] chunk = chunks.get(i);
      int[] tokens = new int[prefix.length + chunk.length];
      System.arraycopy(prefix, 0, tokens, 0, prefix.length);
      System.arraycopy(chunk, 0, tokens, prefix.length, chunk.length);
      String key = ChunkKvStore.key(model, kvSpec, tokens);
      stored[i] = store.get(key, tokens);
      if (stored[i] == null) {
        stored[i] = compute(tokens);
        store.put(key, stored[i]);
      } else {
        hits++;
      }
      System.arraycopy(chunk, 0, all, at, chunk.length);
      at += chunk.length;
    }
    int cached = at;
    System.arraycopy(suffix, 0, all, cached, suffix.length);
    float[][] keys = new float[c.layers()][cached * width];
    float[][] values = new float[c.layers()][cached * width];
    assemble(stored, prefix.length, keys, values);
    target.beginPrompt(rows);
    batch.clear();
    int recompute = (int) Math.floor(cached * options.recompute() + 1e-9);
    if (options.recompute() == 0) {
      int[] positions = new int[cached];
      for (int i = 0; i < cached; i++) {
        positions[i] = i;
      }
      for (int l = 0; l < c.layers(); l++) {
        target.layer(l).append(cached, positions, keys[l], values[l]);
      }
      batch.add(target, all, cached, rows, cached, false, true);
    } else {
      BlendCache view =
          new BlendCache(target, options.checkLayer(), rows, cached, recompute, keys, values);
      batch.add(view, all, 0, rows, 0, false, true);
    }
    engine.forward().run(batch, logits);
    batch.clear();
    engine.replayPrompt(target, all, 0, rows, 0);
    target.afterStep(KvCache.StepKind.PREFILL);
    return new Result(rows, cached, recompute + suffix.length, hits, stored.length - hits);
  }

  /** A chunk prefilled on its own from position 0, every layer's keys and values recorded. */
  private ChunkKv compute(int[] tokens) {
    try (ChunkCapture capture = new ChunkCapture(caches.get(), tokens.length)) {
      float[] scratch = new float[engine.config().vocabSize()];
      engine.prefill(capture, tokens, 0, tokens.length, 0, false, scratch);
      return capture.chunk(tokens);
    }
  }

  /**
   * The stored rows in prompt order: the prefix's from the first chunk, then each chunk's own rows
   * with keys re-rotated from where they were computed to where they now sit.
   */
  private void assemble(ChunkKv[] stored, int prefix, float[][] keys, float[][] values) {
    ModelConfig c = engine.config();
    int width = c.kvDim();
    Rope rope = engine.model().rope();
    float[] cos = new float[c.ropeDims() / 2];
    float[] sin = new float[c.ropeDims() / 2];
    for (int l = 0; l < c.layers(); l++) {
      System.arraycopy(stored[0].keys()[l], 0, keys[l], 0, prefix * width);
      System.arraycopy(stored[0].values()[l], 0, values[l], 0, prefix * width);
    }
    int at = prefix;
    for (ChunkKv chunk : stored) {
      int n = chunk.rows() - prefix;
      int delta = at - prefix;
      if (delta != 0) {
        rope.angles(delta, cos, sin, 0);
      }
      for (int l = 0; l < c.layers(); l++) {
        System.arraycopy(chunk.keys()[l], prefix * width, keys[l], at * width, n * width);
        System.arraycopy(chunk.values()[l], prefix * width, values[l], at * width, n * width);
        if (delta != 0) {
          rerotate(rope, keys[l], at, n, c, cos, sin);
        }
      }
      at += n;
    }
  }

  /**
   * Rotates the keys of rows {@code [from, from + n)} by the angles in {@code cos}, {@code sin}: a
   * key rotated at position p comes out rotated at p + Δ (within float rounding).
   */
  static void rerotate(
      Rope rope, float[] keys, int from, int n, ModelConfig c, float[] cos, float[] sin) {
    int width = c.kvDim();
    for (int r = from; r < from + n; r++) {
      rope.rotate(keys, r * width, c.kvHeads(), c.headDim(), cos, sin, 0);
    }
  }

  private static void checkTarget(KvCache target, Rope rope) {
    if (target.thinsPrefill() || target.prefillChunk() != Integer.MAX_VALUE) {
      throw new IllegalArgumentException(
          "cacheblend needs a cache that takes the whole prompt at once, not one that compresses"
              + " or thins it during the prefill");
    }
    for (int l = 0; l < target.layerCount(); l++) {
      if (!target.layer(l).storesKv() || target.layer(l).appliesRope(rope)) {
        throw new IllegalArgumentException(
            "cacheblend needs a cache whose every layer stores its own keys rotated at their"
                + " positions (layer "
                + l
                + " does not)");
      }
    }
  }

  /** The model's identity in chunk keys: its file's name and size, shape and numerics. */
  private static String identity(ModelConfig c, String numerics) {
    Path file = Model.fileOf(c);
    String f = "memory";
    if (file != null) {
      try {
        f = file.toAbsolutePath() + ":" + Files.size(file);
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    }
    return f + "|" + c + "|" + numerics;
  }
}
