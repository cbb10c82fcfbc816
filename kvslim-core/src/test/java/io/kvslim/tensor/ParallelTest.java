package io.kvslim.tensor;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.concurrent.atomic.AtomicIntegerArray;
import org.junit.jupiter.api.Test;

class ParallelTest {
  @Test
  void everyIndexRunsExactlyOnceAcrossManyDispatches() {
    try (Parallel p = new Parallel(3)) {
      for (int round = 0; round < 2000; round++) {
        int n = 1 + round % 97;
        AtomicIntegerArray hits = new AtomicIntegerArray(n);
        p.forRange(
            n,
            1 + round % 5,
            (s, e) -> {
              for (int i = s; i < e; i++) {
                hits.incrementAndGet(i);
              }
            });
        for (int i = 0; i < n; i++) {
          assertThat(hits.get(i)).as("round %d index %d", round, i).isEqualTo(1);
        }
      }
    }
  }

  @Test
  void rangesRespectTheGrain() {
    try (Parallel p = new Parallel(2)) {
      p.forRange(
          100,
          16,
          (s, e) -> {
            assertThat(s % 16).isZero();
            assertThat(e == 100 || e % 16 == 0).isTrue();
          });
    }
  }

  @Test
  void aWorkersExceptionReachesTheCaller() {
    try (Parallel p = new Parallel(2)) {
      assertThatThrownBy(
              () ->
                  p.forRange(
                      10,
                      (s, e) -> {
                        if (s > 0) {
                          throw new IllegalStateException("boom");
                        }
                      }))
          .hasMessage("boom");
      // the pool still works afterwards
      int[] sum = new int[1];
      p.forRange(1, (s, e) -> sum[0] += e - s);
      assertThat(sum[0]).isEqualTo(1);
    }
  }

  @Test
  void nestedCallsRunInline() {
    try (Parallel p = new Parallel(2)) {
      AtomicIntegerArray hits = new AtomicIntegerArray(4);
      p.forRange(
          2,
          (s, e) -> {
            for (int i = s; i < e; i++) {
              int outer = i;
              p.forRange(
                  2,
                  (a, b) -> {
                    for (int j = a; j < b; j++) {
                      hits.incrementAndGet(outer * 2 + j);
                    }
                  });
            }
          });
      for (int i = 0; i < 4; i++) {
        assertThat(hits.get(i)).isEqualTo(1);
      }
    }
  }
}
