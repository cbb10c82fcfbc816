package io.kvslim.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** What a forked measurement hands its parent, and a child that fails. */
class SpeedForkTest {
  @Test
  void runsRoundTripThroughTheChildsFile(@TempDir Path tmp) throws IOException {
    SpeedBenchmark.Settings s = new SpeedBenchmark.Settings(16, 4, 48, 2, 3, 1, 7);
    SpeedBenchmark.Result r =
        new SpeedBenchmark.Result(
            s,
            SpeedBenchmark.Stat.of(new double[] {10.5, 12.25, 11}),
            SpeedBenchmark.Stat.of(new double[] {3, 1.5, 2}),
            123_456,
            1.25,
            0.5);
    SpeedSuite.Run run = new SpeedSuite.Run("kivi:kbits=2,vbits=2", r, 9_000, 30, 777);
    Path file = tmp.resolve("runs.json");
    SpeedFork.write(file, List.of(run, run));
    List<SpeedSuite.Run> back = SpeedFork.read(file);
    assertThat(back).hasSize(2);
    SpeedSuite.Run b = back.get(1);
    assertThat(b.spec()).isEqualTo(run.spec());
    assertThat(b.result().settings()).isEqualTo(s);
    assertThat(b.result().prefillTokensPerSecond().runs()).containsExactly(10.5, 12.25, 11);
    assertThat(b.result().prefillTokensPerSecond().median()).isEqualTo(11);
    assertThat(b.result().decodeTokensPerSecond().min()).isEqualTo(1.5);
    assertThat(b.result().kvBytesAfterDecode()).isEqualTo(123_456);
    assertThat(b.result().weightGbPerSecond()).isEqualTo(1.25);
    assertThat(b.result().kvGbPerSecond()).isEqualTo(0.5);
    assertThat(b.policyMsPerStep()).isEqualTo(run.policyMsPerStep());
    assertThat(b.f16Bytes()).isEqualTo(777);
  }

  @Test
  void forksArePooledRunByRun() {
    SpeedBenchmark.Settings s = new SpeedBenchmark.Settings(0, 4, 48, 1, 3, 1, 7);
    SpeedSuite.Run a = run(s, new double[] {10, 11, 12}, 1_000, 5);
    SpeedSuite.Run b = run(s, new double[] {20, 21, 22}, 3_000, 5);
    SpeedSuite.Run pooled = SpeedFork.pool(List.of(a, b));
    assertThat(pooled.result().decodeTokensPerSecond().runs())
        .containsExactly(10, 11, 12, 20, 21, 22);
    assertThat(pooled.result().decodeTokensPerSecond().median()).isEqualTo(16); // (12 + 20) / 2
    assertThat(pooled.result().decodeTokensPerSecond().min()).isEqualTo(10);
    assertThat(pooled.result().decodeTokensPerSecond().max()).isEqualTo(22);
    assertThat(pooled.policyMsPerStep()).isEqualTo(4_000 / 1e6 / 10);
    assertThat(pooled.result().settings()).isEqualTo(s);
    assertThat(SpeedFork.pool(List.of(a))).isSameAs(a);
  }

  private static SpeedSuite.Run run(
      SpeedBenchmark.Settings s, double[] decode, long nanos, long steps) {
    SpeedBenchmark.Result r =
        new SpeedBenchmark.Result(
            s,
            SpeedBenchmark.Stat.of(new double[decode.length]),
            SpeedBenchmark.Stat.of(decode),
            1_000,
            1.0,
            0.5);
    return new SpeedSuite.Run("q8_0", r, nanos, steps, 2_000);
  }

  @Test
  void aChildThatFailsIsReportedInOneSentence() {
    // the CLI refuses an unknown method: the child exits non-zero
    assertThatThrownBy(
            () ->
                SpeedFork.run(
                    List.of("bench", "speed", "--kv", "no-such-method", "--gen", "1"),
                    "'no-such-method'"))
        .isInstanceOf(IOException.class)
        .hasMessageStartingWith("the measurement of 'no-such-method' in its own JVM failed (exit ");
  }
}
