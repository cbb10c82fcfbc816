package io.kvslim.engine;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Picks the next token from logits: repetition penalty (Keskar et al. 2019, CTRL §4.1), then
 * greedy, or top-k → top-p (Holtzman et al. 2020) → min-p (Nguyen et al. 2024) → temperature → a
 * seeded draw. Buffers are reused; one sampler per sequence.
 */
public final class Sampler {
  private final SamplerConfig cfg;
  private final SplittableRandom random;
  private int[] idx = new int[0];
  private float[] work = new float[0];
  private double[] probs = new double[0];

  public Sampler(SamplerConfig cfg) {
    this.cfg = cfg;
    this.random = new SplittableRandom(cfg.seed());
  }

  public SamplerConfig config() {
    return cfg;
  }

  /**
   * Samples from {@code logits[off .. off+vocab)}; {@code history[0..historyLen)} are the tokens so
   * far (for the repetition penalty). The logits are not modified.
   */
  public int sample(float[] logits, int off, int vocab, int[] history, int historyLen) {
    if (work.length < vocab) {
      work = new float[vocab];
      idx = new int[vocab];
      probs = new double[vocab];
    }
    System.arraycopy(logits, off, work, 0, vocab);
    if (cfg.repeatPenalty() != 1f && history != null) {
      int from = Math.max(0, historyLen - cfg.repeatLastN());
      for (int i = from; i < historyLen; i++) {
        int t = history[i];
        if (t >= 0 && t < vocab) {
          // Apply once per distinct token: mark by checking for earlier occurrences in the window.
          boolean seen = false;
          for (int j = from; j < i && !seen; j++) {
            seen = history[j] == t;
          }
          if (!seen) {
            work[t] = work[t] > 0 ? work[t] / cfg.repeatPenalty() : work[t] * cfg.repeatPenalty();
          }
        }
      }
    }
    if (cfg.greedy()) {
      int best = 0;
      for (int i = 1; i < vocab; i++) {
        if (work[i] > work[best]) {
          best = i;
        }
      }
      return best;
    }
    int n = candidates(vocab);
    // softmax over the candidates (sorted by logit, descending)
    float max = work[idx[0]];
    double sum = 0;
    for (int i = 0; i < n; i++) {
      probs[i] = Math.exp(work[idx[i]] - max);
      sum += probs[i];
    }
    // top-p: smallest prefix whose mass reaches p
    if (cfg.topP() < 1f) {
      double acc = 0;
      int keep = n;
      for (int i = 0; i < n; i++) {
        acc += probs[i] / sum;
        if (acc >= cfg.topP()) {
          keep = i + 1;
          break;
        }
      }
      n = keep;
    }
    // min-p: drop tokens below minP × the top probability
    if (cfg.minP() > 0f) {
      double threshold = cfg.minP() * probs[0];
      int keep = 1;
      while (keep < n && probs[keep] >= threshold) {
        keep++;
      }
      n = keep;
    }
    // temperature, then draw
    double total = 0;
    for (int i = 0; i < n; i++) {
      probs[i] = Math.exp((work[idx[i]] - max) / cfg.temperature());
      total += probs[i];
    }
    double r = random.nextDouble() * total;
    for (int i = 0; i < n; i++) {
      r -= probs[i];
      if (r <= 0) {
        return idx[i];
      }
    }
    return idx[n - 1];
  }

  /** Fills idx with candidate ids sorted by logit descending (the top-k only, when set). */
  private int candidates(int vocab) {
    int k = cfg.topK() > 0 ? Math.min(cfg.topK(), vocab) : vocab;
    if (k == vocab) {
      Integer[] boxed = new Integer[vocab];
      for (int i = 0; i < vocab; i++) {
        boxed[i] = i;
      }
      Arrays.sort(boxed, (a, b) -> Float.compare(work[b], work[a]));
      for (int i = 0; i < vocab; i++) {
        idx[i] = boxed[i];
      }
      return vocab;
    }
    // keep a sorted (descending) array of the best k by insertion
    int n = 0;
    for (int i = 0; i < vocab; i++) {
      float v = work[i];
      if (n == k && v <= work[idx[n - 1]]) {
        continue;
      }
      int j = n < k ? n++ : k - 1;
      while (j > 0 && work[idx[j - 1]] < v) {
        idx[j] = idx[j - 1];
        j--;
      }
      idx[j] = i;
    }
    return n;
  }
}
