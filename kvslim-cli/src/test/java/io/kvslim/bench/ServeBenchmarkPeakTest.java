package io.kvslim.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class ServeBenchmarkPeakTest {

  private static long[] ticks(long from, long to, long step) {
    List<Long> t = new ArrayList<>();
    for (long x = from; x <= to; x += step) {
      t.add(x);
    }
    return t.stream().mapToLong(Long::longValue).toArray();
  }

  @Test
  void countsTheTokensOfTheTimesWhenMostStreamsRan() {
    // A generates from 0 to 1 s, B from 0.5 s to 1.5 s, one token per 10 ms each; C alone later
    List<long[]> runs = new ArrayList<>();
    runs.add(ticks(0, 1_000_000_000L, 10_000_000L));
    runs.add(ticks(500_000_000L, 1_500_000_000L, 10_000_000L));
    runs.add(ticks(2_000_000_000L, 3_000_000_000L, 5_000_000L));
    ServeBenchmark.Peak peak = ServeBenchmark.peak(runs);
    assertThat(peak.streams()).isEqualTo(2);
    assertThat(peak.seconds()).isCloseTo(0.5, within(1e-9));
    // 50 tokens of each stream arrive in (0.5 s, 1 s]
    assertThat(peak.tokensPerSecond()).isCloseTo(200.0, within(1e-6));
  }

  @Test
  void oneStreamAtATimeIsItsOwnRate() {
    List<long[]> runs = new ArrayList<>();
    runs.add(ticks(0, 1_000_000_000L, 20_000_000L));
    runs.add(ticks(1_500_000_000L, 2_500_000_000L, 20_000_000L));
    ServeBenchmark.Peak peak = ServeBenchmark.peak(runs);
    assertThat(peak.streams()).isEqualTo(1);
    assertThat(peak.seconds()).isCloseTo(2.0, within(1e-9));
    assertThat(peak.tokensPerSecond()).isCloseTo(50.0, within(1e-6));
    assertThat(ServeBenchmark.peak(new ArrayList<>()).streams()).isZero();
  }
}
