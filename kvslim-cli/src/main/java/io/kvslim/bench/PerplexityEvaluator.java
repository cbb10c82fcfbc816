package io.kvslim.bench;

import io.kvslim.engine.Engine;
import io.kvslim.engine.KvCacheFactory;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.model.Ops;
import java.util.Arrays;

/**
 * Scores every next token of a token sequence in windows of {@code ctx} tokens. The first window is
 * the sequence's first {@code ctx} tokens (which start with BOS when the text was tokenized with
 * it); each later window is BOS followed by the next {@code ctx-1} tokens, so every token after the
 * first is scored exactly once. Each window starts from an empty cache.
 *
 * <p>Within a window, tokens before {@code decodeFrom} are fed as one prefill and the rest one at a
 * time as decode steps, so that a cache policy acting after prefill or after each step (eviction)
 * affects the scores of the later tokens, as it would in generation. With {@code decodeFrom >= ctx}
 * the window is one prefill, as llama.cpp's perplexity tool does.
 */
public final class PerplexityEvaluator {
  /** Receives the logits of each scored position (before its target token). */
  @FunctionalInterface
  public interface RowListener {
    void onRow(int index, float[] logits, int offset, int vocab, int target);
  }

  /** Per-token negative log-likelihoods and summary. */
  public record Result(
      double[] nll, long nanos, long kvBytesPeak, long kvBytesFinal, int kvTokens) {
    public int scoredTokens() {
      return nll.length;
    }

    public double meanNll() {
      double s = 0;
      for (double v : nll) {
        s += v;
      }
      return nll.length == 0 ? Double.NaN : s / nll.length;
    }

    public double perplexity() {
      return Math.exp(meanNll());
    }

    public double tokensPerSecond() {
      return nanos == 0 ? 0 : (nll.length + 1) * 1e9 / nanos;
    }
  }

  private final Engine engine;

  public PerplexityEvaluator(Engine engine) {
    this.engine = engine;
  }

  /** Plain windows of one prefill each, with the engine's cache factory. */
  public Result run(int[] tokens, int ctx, int bos, RowListener listener) {
    return run(tokens, ctx, bos, Integer.MAX_VALUE, c -> engine.newCache(), listener);
  }

  public Result run(
      int[] tokens, int ctx, int bos, int decodeFrom, KvCacheFactory caches, RowListener listener) {
    Comparison c = compare(tokens, ctx, bos, decodeFrom, caches, null, listener);
    return c.candidate();
  }

  /**
   * Scores the tokens with {@code candidate} caches and, when {@code baseline} is not null, with
   * baseline caches on the same windows in lockstep, comparing their next-token distributions at
   * every position: KL(p_baseline ‖ p_candidate), and whether both pick the same top token.
   */
  public Comparison compare(
      int[] tokens,
      int ctx,
      int bos,
      int decodeFrom,
      KvCacheFactory candidate,
      KvCacheFactory baseline,
      RowListener listener) {
    int vocab = engine.config().vocabSize();
    if (tokens.length < 2) {
      throw new IllegalArgumentException("need at least 2 tokens to score, got " + tokens.length);
    }
    if (ctx < 2) {
      throw new IllegalArgumentException("--ctx must be at least 2, got " + ctx);
    }
    if (ctx > engine.config().contextLength()) {
      throw new IllegalArgumentException(
          "--ctx "
              + ctx
              + " exceeds the model's context length "
              + engine.config().contextLength());
    }
    if (decodeFrom < 1) {
      throw new IllegalArgumentException("--decode-from must be at least 1, got " + decodeFrom);
    }
    double[] nll = new double[tokens.length - 1];
    double[] baseNll = baseline == null ? null : new double[tokens.length - 1];
    double[] kld = baseline == null ? null : new double[tokens.length - 1];
    int agree = 0;
    int scored = 0;
    float[] logits = new float[ctx * vocab];
    float[] baseLogits = baseline == null ? null : new float[ctx * vocab];
    int[] window = new int[ctx];
    long[] bytes = new long[3]; // peak, final, final tokens
    long baseNanos = 0;
    long nanos = 0;
    int next = 0; // index in tokens of the next token to place in a window
    while (next < tokens.length - 1) {
      int len;
      if (next == 0 || bos < 0) {
        len = Math.min(ctx, tokens.length - next);
        System.arraycopy(tokens, next, window, 0, len);
        next += len;
      } else {
        window[0] = bos;
        len = 1 + Math.min(ctx - 1, tokens.length - next);
        System.arraycopy(tokens, next, window, 1, len - 1);
        next += len - 1;
      }
      if (len < 2) {
        break;
      }
      long t0 = System.nanoTime();
      scoreWindow(window, len, decodeFrom, candidate, logits, bytes);
      long t1 = System.nanoTime();
      nanos += t1 - t0;
      if (baseline != null) {
        scoreWindow(window, len, decodeFrom, baseline, baseLogits, new long[3]);
        baseNanos += System.nanoTime() - t1;
      }
      for (int i = 0; i < len - 1; i++) {
        int target = window[i + 1];
        int off = i * vocab;
        double lse = Ops.logSumExp(logits, off, vocab);
        nll[scored] = lse - logits[off + target];
        if (baseline != null) {
          double baseLse = Ops.logSumExp(baseLogits, off, vocab);
          baseNll[scored] = baseLse - baseLogits[off + target];
          kld[scored] = Metrics.klDivergence(baseLogits, off, logits, off, vocab);
          if (Ops.argmax(baseLogits, off, vocab) == Ops.argmax(logits, off, vocab)) {
            agree++;
          }
        }
        if (listener != null) {
          listener.onRow(scored, logits, off, vocab, target);
        }
        scored++;
      }
    }
    Result cand = new Result(Arrays.copyOf(nll, scored), nanos, bytes[0], bytes[1], (int) bytes[2]);
    if (baseline == null) {
      return new Comparison(cand, null, null, Double.NaN);
    }
    return new Comparison(
        cand,
        new Result(Arrays.copyOf(baseNll, scored), baseNanos, 0, 0, 0),
        Arrays.copyOf(kld, scored),
        scored == 0 ? Double.NaN : (double) agree / scored);
  }

  /** Candidate and (optional) baseline results, per-position KL divergence, top-1 agreement. */
  public record Comparison(Result candidate, Result baseline, double[] kld, double top1Agreement) {
    public double kldMean() {
      return Metrics.mean(kld);
    }

    public double kldMax() {
      return Metrics.max(kld);
    }

    public double kldP99() {
      return Metrics.percentile(kld, 99);
    }
  }

  private void scoreWindow(
      int[] window, int len, int decodeFrom, KvCacheFactory caches, float[] logits, long[] bytes) {
    int vocab = engine.config().vocabSize();
    try (KvCache cache = caches.create(engine.config())) {
      // rows [0, pre) come from one prefill; row i >= pre from the decode step of token i
      int pre = Math.min(len, decodeFrom);
      engine.prefill(cache, window, 0, pre, 0, true, logits);
      // a managed cache knows its peak inside the prefill (before a one-shot compression, or
      // between the chunks of one compressing inside it)
      long held = cache instanceof ManagedKvCache m ? m.peakBytes() : cache.bytes();
      bytes[0] = Math.max(bytes[0], held);
      for (int i = pre; i < len - 1; i++) {
        float[] row = decodeRow(logits, i, vocab);
        engine.decode(cache, window[i], i, row);
        if (row != logits) {
          System.arraycopy(row, 0, logits, i * vocab, vocab);
        }
        bytes[0] = Math.max(bytes[0], cache.bytes());
      }
      bytes[1] = cache.bytes();
      bytes[2] = pre >= len ? len : len - 1; // tokens the cache has seen
    }
  }

  private float[] rowBuffer = new float[0];

  /** Decode writes its logits at offset 0; use a scratch row unless it is row 0. */
  private float[] decodeRow(float[] logits, int i, int vocab) {
    if (i == 0) {
      return logits;
    }
    if (rowBuffer.length < vocab) {
      rowBuffer = new float[vocab];
    }
    return rowBuffer;
  }
}
