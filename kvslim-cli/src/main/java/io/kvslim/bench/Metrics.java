package io.kvslim.bench;

import java.util.Arrays;
import java.util.Locale;

/**
 * The quality measures of BENCHMARKS.md, computed from logits: next-token NLL, KL divergence
 * between two next-token distributions, top-1 agreement, and exact-match scoring of answers.
 */
public final class Metrics {
  private Metrics() {}

  /** log Σ exp(x[off..off+n)), in double precision. */
  public static double logSumExp(float[] x, int off, int n) {
    double max = Double.NEGATIVE_INFINITY;
    for (int i = off; i < off + n; i++) {
      max = Math.max(max, x[i]);
    }
    if (max == Double.NEGATIVE_INFINITY) {
      return max;
    }
    double sum = 0;
    for (int i = off; i < off + n; i++) {
      sum += Math.exp(x[i] - max);
    }
    return max + Math.log(sum);
  }

  /** −log softmax(logits)[target]. */
  public static double nll(float[] logits, int off, int n, int target) {
    return logSumExp(logits, off, n) - logits[off + target];
  }

  /**
   * KL(p ‖ q) = Σ p_i (log p_i − log q_i) for p = softmax(a), q = softmax(b), computed from logits
   * as Σ p_i ((a_i − lse a) − (b_i − lse b)); never negative (rounding is clamped to 0).
   */
  public static double klDivergence(float[] a, int aOff, float[] b, int bOff, int n) {
    double lseA = logSumExp(a, aOff, n);
    double lseB = logSumExp(b, bOff, n);
    double kl = 0;
    for (int i = 0; i < n; i++) {
      double logP = a[aOff + i] - lseA;
      double p = Math.exp(logP);
      if (p > 0) {
        kl += p * (logP - (b[bOff + i] - lseB));
      }
    }
    return Math.max(0, kl);
  }

  /** Index of the largest value (the first on ties). */
  public static int argmax(float[] x, int off, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) {
      if (x[off + i] > x[off + best]) {
        best = i;
      }
    }
    return best;
  }

  /** exp(mean NLL); NaN for no tokens. */
  public static double perplexity(double[] nll) {
    return Math.exp(mean(nll));
  }

  public static double mean(double[] v) {
    if (v.length == 0) {
      return Double.NaN;
    }
    double s = 0;
    for (double x : v) {
      s += x;
    }
    return s / v.length;
  }

  public static double max(double[] v) {
    double m = v.length == 0 ? Double.NaN : Double.NEGATIVE_INFINITY;
    for (double x : v) {
      m = Math.max(m, x);
    }
    return m;
  }

  /** The p-th percentile (0..100) by linear interpolation between closest ranks. */
  public static double percentile(double[] v, double p) {
    if (v.length == 0) {
      return Double.NaN;
    }
    double[] s = v.clone();
    Arrays.sort(s);
    double rank = p / 100.0 * (s.length - 1);
    int lo = (int) Math.floor(rank);
    int hi = Math.min(s.length - 1, lo + 1);
    return s[lo] + (rank - lo) * (s[hi] - s[lo]);
  }

  /** How an answer is compared with the model's output. */
  public enum Scoring {
    /** The output starts with the answer (then ends or goes on with a non-alphanumeric). */
    PREFIX,
    /** Every expected item occurs in the output, as a whole word, in any order. */
    ALL,
    /** The output's first line equals the answer, ignoring surrounding whitespace. */
    LINE,
    /**
     * After leading whitespace, the output starts with the answer's integer literal, and that
     * literal ends there (no further digit, letter, underscore or decimal point).
     */
    INTEGER
  }

  /** Whether {@code output} answers {@code expected} (items separated by ", " for ALL). */
  public static boolean exactMatch(Scoring scoring, String expected, String output) {
    return switch (scoring) {
      case PREFIX -> {
        String e = normalize(expected);
        String o = normalize(output);
        yield !e.isEmpty()
            && o.startsWith(e)
            && (o.length() == e.length() || !Character.isLetterOrDigit(o.charAt(e.length())));
      }
      case ALL -> {
        String o = " " + normalize(output).replaceAll("[^\\p{L}\\p{N}]+", " ") + " ";
        boolean all = true;
        for (String item : expected.split(",")) {
          String w = normalize(item);
          all &= !w.isEmpty() && o.contains(" " + w + " ");
        }
        yield all;
      }
      case LINE -> firstLine(output).strip().equals(expected.strip());
      case INTEGER -> integerMatch(expected.strip(), output.stripLeading());
    };
  }

  private static boolean integerMatch(String expected, String output) {
    if (expected.isEmpty() || !output.startsWith(expected)) {
      return false;
    }
    if (output.length() == expected.length()) {
      return true;
    }
    char c = output.charAt(expected.length());
    return !Character.isLetterOrDigit(c) && c != '_' && c != '.';
  }

  private static String normalize(String s) {
    return s.strip().replaceAll("\\s+", " ").toLowerCase(Locale.ROOT);
  }

  private static String firstLine(String s) {
    int nl = s.indexOf('\n');
    return nl < 0 ? s : s.substring(0, nl);
  }
}
