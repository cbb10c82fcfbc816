package io.kvslim.kv.format;

import java.lang.foreign.MemorySegment;
import java.util.Random;
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
import org.openjdk.jmh.annotations.Warmup;
import org.openjdk.jmh.infra.Blackhole;

/**
 * JMH benchmark of one decode step's attention reads over {@code heads} KV heads at a given depth,
 * per storage format (issue "long-context speed"): {@code attend} scores every key block with the
 * fused kernel ({@link KvFormat#scores}, the query prepared once) and adds every value block
 * ({@link KvFormat#accumulateBlock}) with fixed weights — the two passes a decode step makes over a
 * head's cache, without the softmax. {@code readOnly} sums the same bytes as longs with the Vector
 * API: the machine's plain read speed for the same memory. KV GB/s = {@link #bytes} / time; {@code
 * keyBytes + valueBytes} are printed at setup. Compiled and run only with the {@code jmh} Maven
 * profile:
 *
 * <pre>
 * mvn -Pjmh -q -pl kvslim-core test-compile dependency:build-classpath -Dmdep.outputFile=target/jmh.cp
 * cd kvslim-core && java -cp target/classes:target/test-classes:$(cat target/jmh.cp) org.openjdk.jmh.Main KvReadBench
 * </pre>
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(
    value = 1,
    jvmArgsAppend = {"--add-modules", "jdk.incubator.vector"})
public class KvReadBench {
  /** Key format / value format, as the caches pair them. */
  @Param({
    "f32/f32",
    "f16/f16",
    "bf16/bf16",
    "q8_0/q8_0",
    "q4_0/q4_0",
    "kivi4/kivi4",
    "kivi2/kivi2",
    "tq4/tqv4",
    "tq3/tqv3"
  })
  public String formats;

  @Param({"8192"})
  public int depth;

  @Param({"64"})
  public int headDim;

  /** KV heads read per step (all layers' heads of a model), so the cache does not fit in L3. */
  @Param({"32"})
  public int heads;

  /** Query rows per KV head (1: multi-head attention; a GQA group's size otherwise). */
  @Param({"1"})
  public int group;

  /** Tokens per block (KIVI's key group is the block). */
  @Param({"32"})
  public int block;

  private KvFormat keyFormat;
  private KvFormat valueFormat;
  private MemorySegment[] keys;
  private MemorySegment[] values;
  private float[] prepared;
  private float[] scores;
  private float[] weights;
  private float[] acc;
  private float[] work;
  private float[] decoded;
  private int[] rowList;
  private long bytes;

  static KvFormat format(String name) {
    return switch (name) {
      case "kivi4" -> new KiviKeyFormat(4);
      case "kivi2" -> new KiviKeyFormat(2);
      case "tq4" -> new TurboQuantKeyFormat(4, true);
      case "tq3" -> new TurboQuantKeyFormat(3, true);
      case "tqv4" -> new TurboQuantValueFormat(4);
      case "tqv3" -> new TurboQuantValueFormat(3);
      default -> KvFormats.byName(name);
    };
  }

  static KvFormat valueFormat(String name) {
    return switch (name) {
      case "kivi4" -> new KiviValueFormat(4, 32);
      case "kivi2" -> new KiviValueFormat(2, 32);
      default -> format(name);
    };
  }

  @Setup(Level.Trial)
  public void setUp() {
    String[] kv = formats.split("/");
    keyFormat = format(kv[0]);
    valueFormat = valueFormat(kv[1]);
    int blocks = heads * (depth / block);
    keys = new MemorySegment[blocks];
    values = new MemorySegment[blocks];
    Random r = new Random(1);
    float[] rows = new float[block * headDim];
    for (int b = 0; b < blocks; b++) {
      // heap arrays, as KvBlock allocates them (the kernels' array fast paths)
      keys[b] = MemorySegment.ofArray(new byte[(int) keyFormat.blockBytes(block, headDim)]);
      values[b] = MemorySegment.ofArray(new byte[(int) valueFormat.blockBytes(block, headDim)]);
      for (int i = 0; i < rows.length; i++) {
        rows[i] = (float) r.nextGaussian();
      }
      keyFormat.encode(rows, 0, headDim, block, keys[b], 0, block, headDim);
      valueFormat.encode(rows, 0, headDim, block, values[b], 0, block, headDim);
      bytes += keys[b].byteSize() + values[b].byteSize();
    }
    float[] q = new float[headDim];
    for (int i = 0; i < headDim; i++) {
      q[i] = (float) r.nextGaussian();
    }
    int pl = keyFormat.preparedQueryLength(headDim);
    prepared = new float[group * pl];
    for (int i = 0; i < group; i++) {
      keyFormat.prepareQuery(q, 0, headDim, prepared, i * pl);
    }
    rowList = new int[group];
    for (int i = 0; i < group; i++) {
      rowList[i] = i;
    }
    scores = new float[group * block];
    weights = new float[group * block];
    java.util.Arrays.fill(weights, 1f / depth);
    acc = new float[group * headDim];
    decoded = new float[block * headDim];
    work = new float[KvFormat.workLength(headDim)];
    System.out.printf("%n%s at depth %d, %d heads: %d KV bytes%n", formats, depth, heads, bytes);
  }

  /** Bytes the step reads, for GB/s. */
  public long bytes() {
    return bytes;
  }

  @Benchmark
  public void attend(Blackhole bh) {
    float max = 0f;
    int perHead = depth / block;
    for (int b = 0; b < keys.length; b++) {
      if (b % perHead == 0) {
        java.util.Arrays.fill(acc, 0f); // the next head's output
      }
      // the calls the decode step makes (OwnTileAttention): the rows of a KV head together
      int pl = prepared.length / group;
      keyFormat.scoresRows(
          keys[b], block, block, headDim, prepared, pl, rowList, group, scores, block, work,
          decoded);
      valueFormat.accumulateBlockRows(
          values[b], block, block, headDim, weights, 0, block, rowList, group, acc, headDim, work);
      max = Math.max(max, scores[0]);
    }
    bh.consume(max);
    bh.consume(acc);
  }

  /** The key pass of {@link #attend} alone. */
  @Benchmark
  public float keysOnly() {
    float max = 0f;
    for (int b = 0; b < keys.length; b++) {
      keyFormat.scoresRows(
          keys[b],
          block,
          block,
          headDim,
          prepared,
          prepared.length / group,
          rowList,
          group,
          scores,
          block,
          work,
          decoded);
      max = Math.max(max, scores[0]);
    }
    return max;
  }

  /** The value pass of {@link #attend} alone. */
  @Benchmark
  public float valuesOnly() {
    int perHead = depth / block;
    float sum = 0f;
    for (int b = 0; b < values.length; b++) {
      if (b % perHead == 0) {
        sum += acc[0];
        java.util.Arrays.fill(acc, 0f);
      }
      valueFormat.accumulateBlockRows(
          values[b], block, block, headDim, weights, 0, block, rowList, group, acc, headDim, work);
    }
    return sum;
  }

  @Benchmark
  public long readOnly() {
    long sum = 0;
    for (int b = 0; b < keys.length; b++) {
      sum += sumLongs(keys[b]) + sumLongs(values[b]);
    }
    return sum;
  }

  private static final jdk.incubator.vector.VectorSpecies<Long> LONGS =
      jdk.incubator.vector.LongVector.SPECIES_PREFERRED;

  private static final jdk.incubator.vector.VectorSpecies<Byte> LONG_BYTES =
      jdk.incubator.vector.VectorSpecies.of(byte.class, LONGS.vectorShape());

  /**
   * A vectorised sum of the block's longs, loaded from its byte array as the kernels load: a read
   * loop the CPU runs at its load bandwidth.
   */
  private static long sumLongs(MemorySegment s) {
    byte[] array = (byte[]) s.heapBase().orElseThrow();
    var acc = jdk.incubator.vector.LongVector.zero(LONGS);
    int step = LONG_BYTES.length();
    int n = array.length - array.length % step;
    int i = 0;
    for (; i < n; i += step) {
      acc =
          acc.add(
              jdk.incubator.vector.ByteVector.fromArray(LONG_BYTES, array, i).reinterpretAsLongs());
    }
    long sum = acc.reduceLanes(jdk.incubator.vector.VectorOperators.ADD);
    for (; i < array.length; i++) {
      sum += array[i];
    }
    return sum;
  }
}
