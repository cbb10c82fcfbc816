package io.kvslim.calibrate;

import io.kvslim.engine.Engine;
import io.kvslim.kv.AttentionObserver;
import io.kvslim.kv.KvCache;
import io.kvslim.model.ModelConfig;
import java.util.function.IntConsumer;

/**
 * Where a model's heads look, layer by layer and head by head: the figures that explain why
 * eviction methods rank as they do on it. The model reads a text with the full cache; for every
 * query at position {@code p ≥ from}, the attention probabilities of each head are reduced to
 *
 * <ul>
 *   <li><b>sink</b>: the mass on the first {@link #SINK_TOKENS} positions (StreamingLLM's attention
 *       sinks; position 0 is the BOS token), and <b>bos</b>, the mass on position 0;
 *   <li><b>local</b>: the mass on the last {@link #LOCAL_TOKENS} positions ({@code p − 63..p}, the
 *       query's own included), and <b>near</b>, on the last {@link #NEAR_TOKENS};
 *   <li><b>distance</b>: the mean of {@code p − j} under the probabilities (how far back a head
 *       reads on average);
 *   <li><b>rest</b>: the mass on neither the sink nor the local window: what a StreamingLLM cache
 *       of {@code 4 + 64} tokens would drop.
 * </ul>
 *
 * <p>Each figure is the mean over the queries. A head is called <i>local</i> when its local mass is
 * at least 0.9 and a <i>sink head</i> when its sink mass is at least 0.5. The probabilities are
 * those the engine computes (its own attention order), observed through {@link
 * io.kvslim.model.Forward#setLayerObservers}.
 */
public final class AttentionProfile {
  public static final int SINK_TOKENS = 4;
  public static final int LOCAL_TOKENS = 64;
  public static final int NEAR_TOKENS = 16;

  /** The figures of one head, means over {@link #queries} queries. */
  public record Head(
      double bos, double sink, double near, double local, double rest, double distance) {}

  /**
   * The profile of a model on a text.
   *
   * @param heads {@code [layer][head]}
   * @param queries queries averaged per head (positions {@code from..tokens−1})
   */
  public record Result(int tokens, int from, int queries, Head[][] heads) {
    /** The mean of {@code figure} over the heads of layer {@code l}. */
    public double layerMean(int l, java.util.function.ToDoubleFunction<Head> figure) {
      double s = 0;
      for (Head h : heads[l]) {
        s += figure.applyAsDouble(h);
      }
      return s / heads[l].length;
    }

    /** How many heads of the model satisfy {@code test}. */
    public int count(java.util.function.Predicate<Head> test) {
      int n = 0;
      for (Head[] layer : heads) {
        for (Head h : layer) {
          n += test.test(h) ? 1 : 0;
        }
      }
      return n;
    }
  }

  private AttentionProfile() {}

  /**
   * Adds the figures of one query at position {@code p}, whose probabilities over positions {@code
   * 0..p} are {@code probs[0..p]}, to {@code sums}: bos, sink, near, local, rest, distance.
   */
  static void accumulate(float[] probs, int p, double[] sums) {
    double sink = 0;
    double near = 0;
    double local = 0;
    double rest = 0;
    double distance = 0;
    for (int j = 0; j <= p; j++) {
      double w = probs[j];
      int back = p - j;
      distance += w * back;
      boolean inSink = j < SINK_TOKENS;
      boolean inLocal = back < LOCAL_TOKENS;
      if (inSink) {
        sink += w;
      }
      if (inLocal) {
        local += w;
      }
      if (back < NEAR_TOKENS) {
        near += w;
      }
      if (!inSink && !inLocal) {
        rest += w;
      }
    }
    sums[0] += probs[0];
    sums[1] += sink;
    sums[2] += near;
    sums[3] += local;
    sums[4] += rest;
    sums[5] += distance;
  }

  /**
   * Runs {@code tokens} through {@code engine} with a full cache (the engine's factory must give
   * one: every token retained, in position order) and profiles every head of every layer over the
   * queries at positions {@code from} and after. {@code progress} receives the tokens done.
   */
  public static Result run(Engine engine, int[] tokens, int from, IntConsumer progress) {
    ModelConfig c = engine.config();
    if (from < 0 || from >= tokens.length) {
      throw new IllegalArgumentException(
          "the profile starts at position "
              + from
              + " but the text has "
              + tokens.length
              + " tokens");
    }
    if (tokens.length > c.contextLength()) {
      throw new IllegalArgumentException(
          tokens.length
              + " tokens do not fit the model's context of "
              + c.contextLength()
              + " (use fewer)");
    }
    int layers = c.layers();
    int heads = c.heads();
    double[][][] sums = new double[layers][heads][6];
    int[] chunkStart = {0};
    engine
        .forward()
        .setLayerObservers(
            layer ->
                new AttentionObserver() {
                  @Override
                  public void observe(int qi, int head, int kvHead, float[] probs, int count) {
                    int p = chunkStart[0] + qi;
                    if (p < from) {
                      return;
                    }
                    if (count < p + 1) {
                      throw new IllegalStateException(
                          "the attention profile needs the full cache, but position "
                              + p
                              + " saw "
                              + count
                              + " tokens");
                    }
                    accumulate(probs, p, sums[layer][head]); // observers run serially
                  }
                });
    KvCache cache = engine.newCache();
    try {
      int chunk = Engine.DEFAULT_PREFILL_CHUNK;
      float[] logits = new float[c.vocabSize()];
      for (int s = 0; s < tokens.length; s += chunk) {
        int e = Math.min(tokens.length, s + chunk);
        chunkStart[0] = s;
        engine.prefill(cache, tokens, s, e, s, false, logits);
        if (progress != null) {
          progress.accept(e);
        }
      }
    } finally {
      engine.forward().setLayerObservers(null);
      cache.close();
    }
    int queries = tokens.length - from;
    Head[][] out = new Head[layers][heads];
    for (int l = 0; l < layers; l++) {
      for (int h = 0; h < heads; h++) {
        double[] s = sums[l][h];
        out[l][h] =
            new Head(
                s[0] / queries,
                s[1] / queries,
                s[2] / queries,
                s[3] / queries,
                s[4] / queries,
                s[5] / queries);
      }
    }
    return new Result(tokens.length, from, queries, out);
  }
}
