package io.kvslim.model;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

class BatchTest {

  /** Hundreds of one-row segments (a large batched decode) and then a long prefill segment. */
  @Test
  void holdsAnyNumberOfSegmentsAndRows() {
    Batch b = new Batch();
    for (int round = 0; round < 2; round++) {
      b.clear();
      int n = 300;
      for (int s = 0; s < n; s++) {
        b.add(null, new int[] {s}, 0, 1, 1000 + s, false, true);
      }
      int[] prompt = new int[70];
      for (int i = 0; i < prompt.length; i++) {
        prompt[i] = 5000 + i;
      }
      b.add(null, prompt, 10, 70, 7, false, true);
      assertThat(b.segments()).isEqualTo(n + 1);
      assertThat(b.rows()).isEqualTo(n + 60);
      for (int s = 0; s < n; s++) {
        assertThat(b.segmentStart(s)).isEqualTo(s);
        assertThat(b.segmentEnd(s)).isEqualTo(s + 1);
        assertThat(b.token(s)).isEqualTo(s);
        assertThat(b.positions()[s]).isEqualTo(1000 + s);
      }
      assertThat(b.segmentStart(n)).isEqualTo(n);
      assertThat(b.segmentEnd(n)).isEqualTo(n + 60);
      assertThat(b.token(n)).isEqualTo(5010);
      assertThat(b.positions()[n + 59]).isEqualTo(7 + 59);
      assertThat(b.logitCount()).isEqualTo(n + 1);
      assertThat(b.logitRow(n)).isEqualTo(n + 59);
    }
  }
}
