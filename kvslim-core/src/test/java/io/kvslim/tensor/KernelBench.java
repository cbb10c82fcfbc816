package io.kvslim.tensor;

import io.kvslim.gguf.GgmlType;
import java.lang.foreign.Arena;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * JMH benchmark of one {@code rows × cols} matvec per weight type, single-threaded ({@code dot} per
 * row) and as a 4-activation-row tile ({@code dotTile}). GB/s of weights = {@code rows ×
 * bytesPerRow / time}; {@link KernelSpeedMain} prints that figure directly. Compiled and run only
 * with the {@code jmh} Maven profile (see pom.xml).
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(
    value = 1,
    jvmArgsAppend = {"--add-modules", "jdk.incubator.vector"})
public class KernelBench {
  @Param({"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"})
  public String type;

  @Param({"2048"})
  public int rows;

  @Param({"2048"})
  public int cols;

  private Arena arena;
  private WeightMatrix weights;
  private float[] x;
  private float[] out;

  @Setup(Level.Trial)
  public void setUp() {
    arena = Arena.ofShared();
    GgmlType t = GgmlType.valueOf(type);
    weights = WeightMatrix.of(t, RandomWeights.segment(t, rows, cols, 1, arena), rows, cols);
    x = RandomWeights.activations(4 * cols, 2);
    out = new float[4 * rows];
  }

  @TearDown(Level.Trial)
  public void tearDown() {
    arena.close();
  }

  @Benchmark
  public float[] matvec() {
    for (int r = 0; r < rows; r++) {
      out[r] = weights.dot(r, x, 0);
    }
    return out;
  }

  @Benchmark
  public float[] tile4() {
    for (int r = 0; r < rows; r++) {
      weights.dotTile(r, x, 0, cols, 4, out, r, rows);
    }
    return out;
  }
}
