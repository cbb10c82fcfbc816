package io.kvslim.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import io.kvslim.bench.Metrics.Scoring;
import org.junit.jupiter.api.Test;

class MetricsTest {
  @Test
  void klDivergenceOfIdenticalDistributionsIsZero() {
    float[] a = {1.5f, -2f, 0.25f, 3f};
    float[] shifted = {11.5f, 8f, 10.25f, 13f}; // same softmax
    assertThat(Metrics.klDivergence(a, 0, a, 0, 4)).isEqualTo(0.0);
    assertThat(Metrics.klDivergence(a, 0, shifted, 0, 4)).isCloseTo(0.0, within(1e-12));
  }

  @Test
  void klDivergenceMatchesTheClosedForm() {
    // p = (1/4, 3/4), q = (1/2, 1/2): KL = 1/4 ln(1/2) + 3/4 ln(3/2)
    float[] p = {0f, (float) Math.log(3)};
    float[] q = {5f, 5f};
    double expected = 0.25 * Math.log(0.5) + 0.75 * Math.log(1.5);
    assertThat(Metrics.klDivergence(p, 0, q, 0, 2)).isCloseTo(expected, within(1e-7));
    // and at offsets inside longer rows
    float[] rows = {9f, 0f, (float) Math.log(3), 5f, 5f};
    assertThat(Metrics.klDivergence(rows, 1, rows, 3, 2)).isCloseTo(expected, within(1e-7));
  }

  @Test
  void perplexityOfAUniformModelIsTheVocabularySize() {
    int vocab = 1000;
    float[] logits = new float[vocab]; // all equal
    double[] nll = new double[10];
    for (int i = 0; i < nll.length; i++) {
      nll[i] = Metrics.nll(logits, 0, vocab, i * 7);
    }
    assertThat(Metrics.perplexity(nll)).isCloseTo(vocab, within(1e-6));
  }

  @Test
  void topOneAgreementComparesArgmaxes() {
    float[] a = {0f, 3f, 1f};
    float[] b = {0f, 2f, 1.5f};
    float[] c = {4f, 2f, 1.5f};
    assertThat(Metrics.argmax(a, 0, 3)).isEqualTo(Metrics.argmax(b, 0, 3));
    assertThat(Metrics.argmax(a, 0, 3)).isNotEqualTo(Metrics.argmax(c, 0, 3));
  }

  @Test
  void percentileInterpolatesBetweenRanks() {
    double[] v = {4, 1, 3, 2, 5};
    assertThat(Metrics.percentile(v, 50)).isEqualTo(3.0);
    assertThat(Metrics.percentile(v, 100)).isEqualTo(5.0);
    assertThat(Metrics.percentile(v, 99)).isCloseTo(4.96, within(1e-12));
    assertThat(Metrics.max(v)).isEqualTo(5.0);
    assertThat(Metrics.mean(v)).isEqualTo(3.0);
  }

  @Test
  void integerScoringReadsTheLiteralAtTheStartOfTheOutput() {
    assertThat(Metrics.exactMatch(Scoring.INTEGER, "48213", "48213")).isTrue();
    assertThat(Metrics.exactMatch(Scoring.INTEGER, "48213", " 48213\nassert")).isTrue();
    assertThat(Metrics.exactMatch(Scoring.INTEGER, "48213", "48213,)\n")).isTrue();
    assertThat(Metrics.exactMatch(Scoring.INTEGER, "48213", "48213 # ok")).isTrue();
    // garbage before the number
    assertThat(Metrics.exactMatch(Scoring.INTEGER, "48213", "x48213")).isFalse();
    assertThat(Metrics.exactMatch(Scoring.INTEGER, "48213", "= 48213")).isFalse();
    assertThat(Metrics.exactMatch(Scoring.INTEGER, "48213", "-48213")).isFalse();
    // extra or missing digits, or a literal that goes on
    assertThat(Metrics.exactMatch(Scoring.INTEGER, "48213", "482130")).isFalse();
    assertThat(Metrics.exactMatch(Scoring.INTEGER, "48213", "4821")).isFalse();
    assertThat(Metrics.exactMatch(Scoring.INTEGER, "48213", "048213")).isFalse();
    assertThat(Metrics.exactMatch(Scoring.INTEGER, "48213", "48213.5")).isFalse();
    assertThat(Metrics.exactMatch(Scoring.INTEGER, "48213", "48213_0")).isFalse();
    assertThat(Metrics.exactMatch(Scoring.INTEGER, "48213", "48213L")).isFalse();
    assertThat(Metrics.exactMatch(Scoring.INTEGER, "48213", "")).isFalse();
    assertThat(Metrics.exactMatch(Scoring.INTEGER, "", "48213")).isFalse();
  }

  @Test
  void exactMatchScoresPrefixesWholeWordsAndLines() {
    assertThat(Metrics.exactMatch(Scoring.PREFIX, "12345", " 12345. Remember")).isTrue();
    assertThat(Metrics.exactMatch(Scoring.PREFIX, "12345", "123456")).isFalse();
    assertThat(Metrics.exactMatch(Scoring.PREFIX, "12345", "the key 12345")).isFalse();
    assertThat(Metrics.exactMatch(Scoring.ALL, "AB, CD", "cd and ab.")).isTrue();
    assertThat(Metrics.exactMatch(Scoring.ALL, "AB, CD", "ABX, CD")).isFalse();
    assertThat(Metrics.exactMatch(Scoring.LINE, "int x = 1;", "    int x = 1;\n  y();")).isTrue();
    assertThat(Metrics.exactMatch(Scoring.LINE, "int x = 1;", "\n int x = 1;")).isFalse();
    assertThat(Metrics.exactMatch(Scoring.PREFIX, "", "anything")).isFalse();
  }
}
