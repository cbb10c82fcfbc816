package io.kvslim.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.ArrayDeque;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The reservation arithmetic the scheduler and the throughput benchmark share. */
class AdmissionTest {

  @Test
  void admitsWhileTheReservationsFitTheLimitExactly() {
    Admission a = new Admission(1000, 16);
    assertThat(a.tryAdmit(400)).isTrue();
    assertThat(a.tryAdmit(400)).isTrue();
    assertThat(a.fits(201)).isFalse();
    assertThat(a.tryAdmit(201)).isFalse();
    assertThat(a.reservedBytes()).isEqualTo(800);
    assertThat(a.admitted()).isEqualTo(2);
    // up to the limit itself
    assertThat(a.tryAdmit(200)).isTrue();
    assertThat(a.reservedBytes()).isEqualTo(1000);
    assertThat(a.tryAdmit(0)).isTrue();
    assertThat(a.tryAdmit(1)).isFalse();
  }

  @Test
  void releaseFreesTheBytesAndTheSlot() {
    Admission a = new Admission(1000, 2);
    assertThat(a.tryAdmit(600)).isTrue();
    assertThat(a.tryAdmit(500)).isFalse();
    a.release(600);
    assertThat(a.reservedBytes()).isZero();
    assertThat(a.admitted()).isZero();
    assertThat(a.tryAdmit(500)).isTrue();
    assertThat(a.tryAdmit(500)).isTrue();
  }

  @Test
  void maxBatchLimitsTheSlotsEvenWhenBytesFit() {
    Admission a = new Admission(1L << 30, 3);
    for (int i = 0; i < 3; i++) {
      assertThat(a.tryAdmit(1)).isTrue();
    }
    assertThat(a.fits(1)).isFalse();
    assertThat(a.tryAdmit(0)).isFalse();
    assertThat(a.admitted()).isEqualTo(3);
    a.release(1);
    assertThat(a.tryAdmit(1)).isTrue();
  }

  @Test
  void fitsAloneComparesWithTheWholeLimitWhateverIsReserved() {
    Admission a = new Admission(1000, 1);
    assertThat(a.fitsAlone(1000)).isTrue();
    assertThat(a.fitsAlone(1001)).isFalse();
    assertThat(a.tryAdmit(1000)).isTrue();
    assertThat(a.fitsAlone(1000)).isTrue();
    assertThat(a.fits(0)).isFalse();
  }

  @Test
  void hugeReservationsDoNotOverflow() {
    Admission a = new Admission(Long.MAX_VALUE - 1, 4);
    assertThat(a.tryAdmit(Long.MAX_VALUE - 10)).isTrue();
    assertThat(a.fits(Long.MAX_VALUE)).isFalse();
    assertThat(a.tryAdmit(100)).isFalse();
    assertThat(a.tryAdmit(9)).isTrue();
  }

  @Test
  void badUseIsRefusedWithOneSentence() {
    assertThatThrownBy(() -> new Admission(0, 1))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessage("the KV memory limit must be positive, got 0");
    assertThatThrownBy(() -> new Admission(1, 0))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessage("--max-batch must be at least 1, got 0");
    Admission a = new Admission(100, 2);
    assertThatThrownBy(() -> a.tryAdmit(-1))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessage("a reservation cannot be negative, got -1");
    assertThatThrownBy(() -> a.release(1)).isInstanceOf(IllegalStateException.class);
    assertThat(a.tryAdmit(10)).isTrue();
    assertThatThrownBy(() -> a.release(11)).isInstanceOf(IllegalStateException.class);
    assertThat(a.reservedBytes()).isEqualTo(10);
    assertThat(a.admitted()).isEqualTo(1);
  }

  /**
   * Random arrivals and retirements in arrival order, as the scheduler's queue: the reservations
   * never pass the limit nor the slots the batch, and a head that is refused really did not fit.
   */
  @Test
  void randomTrafficNeverPassesTheLimitOrTheBatch() {
    SplittableRandom r = new SplittableRandom(7);
    for (int round = 0; round < 200; round++) {
      long limit = 1 + r.nextLong(10_000);
      int maxBatch = 1 + r.nextInt(8);
      Admission a = new Admission(limit, maxBatch);
      ArrayDeque<Long> waiting = new ArrayDeque<>();
      ArrayDeque<Long> running = new ArrayDeque<>();
      long sum = 0;
      for (int step = 0; step < 300; step++) {
        if (r.nextInt(3) == 0) {
          waiting.add((long) r.nextInt((int) Math.min(limit, 4000) + 1));
        }
        if (!running.isEmpty() && r.nextInt(4) == 0) {
          long e = running.poll();
          a.release(e);
          sum -= e;
        }
        while (!waiting.isEmpty()) {
          long e = waiting.peek();
          boolean expected = running.size() < maxBatch && sum + e <= limit;
          assertThat(a.tryAdmit(e)).isEqualTo(expected);
          if (!expected) {
            break;
          }
          running.add(waiting.poll());
          sum += e;
        }
        assertThat(a.reservedBytes()).isEqualTo(sum).isLessThanOrEqualTo(limit);
        assertThat(a.admitted()).isEqualTo(running.size()).isLessThanOrEqualTo(maxBatch);
      }
    }
  }
}
