package io.kvslim.eval;

import io.kvslim.engine.Engine;
import io.kvslim.kv.KvCache;
import io.kvslim.model.Ops;

/**
 * Scores every next token of a token sequence in windows of {@code ctx} tokens. The first window is
 * the sequence's first {@code ctx} tokens (which start with BOS when the text was tokenized with
 * it); each later window is BOS followed by the next {@code ctx-1} tokens, so every token after the
 * first is scored exactly once. Each window starts from an empty cache.
 */
public final class PerplexityEvaluator {
  /** Receives the logits of each scored position (before its target token). */
  @FunctionalInterface
  public interface RowListener {
    void onRow(int index, float[] logits, int offset, int vocab, int target);
  }

  /** Per-token negative log-likelihoods and summary. */
  public record Result(double[] nll, long nanos, long kvBytesPeak, long kvBytesFinal) {
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

  public Result run(int[] tokens, int ctx, int bos, RowListener listener) {
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
    double[] nll = new double[tokens.length - 1];
    int scored = 0;
    float[] logits = new float[ctx * vocab];
    int[] window = new int[ctx];
    long peak = 0;
    long last = 0;
    long t0 = System.nanoTime();
    int next = 0; // index in tokens of the next token to place in a window
    boolean first = true;
    while (next < tokens.length - (first ? 1 : 0)) {
      int len;
      int scoredFrom; // index in tokens of the window's first target
      if (first || bos < 0) {
        len = Math.min(ctx, tokens.length - next);
        System.arraycopy(tokens, next, window, 0, len);
        scoredFrom = next + 1;
        next += len;
        if (!first && bos < 0) {
          scoredFrom = next - len + 1;
        }
      } else {
        window[0] = bos;
        len = 1 + Math.min(ctx - 1, tokens.length - next);
        System.arraycopy(tokens, next, window, 1, len - 1);
        scoredFrom = next;
        next += len - 1;
      }
      first = false;
      if (len < 2) {
        break;
      }
      try (KvCache cache = engine.newCache()) {
        engine.prefill(cache, window, 0, len, 0, true, logits);
        peak = Math.max(peak, cache.bytes());
        last = cache.bytes();
      }
      for (int i = 0; i < len - 1; i++) {
        int target = window[i + 1];
        int off = i * vocab;
        nll[scored] = Ops.logSumExp(logits, off, vocab) - logits[off + target];
        if (listener != null) {
          listener.onRow(scored, logits, off, vocab, target);
        }
        scored++;
      }
      assert scoredFrom >= 0;
    }
    long t1 = System.nanoTime();
    return new Result(java.util.Arrays.copyOf(nll, scored), t1 - t0, peak, last);
  }
}
