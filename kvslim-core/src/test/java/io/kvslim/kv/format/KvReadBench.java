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
    "tq3/tqv3",
    "kvq4/kvq4",
    "kvq3/kvq3",
    "kvq2/kvq2",
    "cq2/cq2",
    "cq4/cq4",
    "cq8/cq8",
    "lexico8/lexico8",
    "lexico16/lexico16",
    "qaq/qaq",
    "qaqk2/qaqk2",
    "alignedkv/alignedkv",
    "gear4/gear4",
    "gear2/gear2",
    "asym1/asym1"
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
      case "asym1" -> new KiviKeyFormat(1); // asymkv's 1-bit layers
      case "tq4" -> new TurboQuantKeyFormat(4, true);
      case "tq3" -> new TurboQuantKeyFormat(3, true);
      case "tqv4" -> new TurboQuantValueFormat(4);
      case "tqv3" -> new TurboQuantValueFormat(3);
      // KVQuant: its unit test's random tables (head 0 of two), one sparse outlier per key (1% of
      // 64 channels rounded up, the method's default)
      case "kvq4", "kvq3", "kvq2" ->
          KvQuantFormatTest.keys(bits(name), 1, new java.util.SplittableRandom(5)).forHead(0);
      // CQ: codebooks by k-means on Gaussian data, as its unit test makes them
      case "cq2", "cq4", "cq8" -> CqFormatTest.format(bits(name), 7);
      // Lexico: 1,024 random unit atoms (the calibrated dictionaries' size) of 64 channels
      case "lexico8", "lexico16" ->
          new LexicoFormat(dictionary(1024, 64, 3), 1024, bits(name), "k");
      // QAQ's per-slot widths as its method mixes them: 8 bits every 8th slot, 4 every other, else
      // 2
      case "qaq" -> new QaqFormat(qaqBits(32), 1, 1, 64);
      // QAQ's keys on the 110m model: 2.0045 bits a key on average, nearly all 2-bit rows
      case "qaqk2" -> new QaqFormat(qaqKeyBits(32), 1, 1, 64);
      case "alignedkv" -> new AlignedKvFormat(true, 4, 8, 11); // the method's default thresholds
      // GEAR's defaults (rank 2, 3 power iterations, 2% outliers), one 32-token group a block
      case "gear4", "gear2" -> new GearKeyFormat(bits(name), 2, 3, 0.02);
      default -> KvFormats.byName(name);
    };
  }

  static KvFormat valueFormat(String name) {
    return switch (name) {
      case "kivi4" -> new KiviValueFormat(4, 32);
      case "kivi2" -> new KiviValueFormat(2, 32);
      case "asym1" -> new KiviValueFormat(1, 32);
      case "kvq4", "kvq3", "kvq2" ->
          new KvQuantValueFormat(
              bits(name),
              KvQuantFormatTest.codebook(bits(name), new java.util.SplittableRandom(6)),
              1);
      case "lexico8", "lexico16" ->
          new LexicoFormat(dictionary(1024, 64, 4), 1024, bits(name), "v");
      case "alignedkv" -> new AlignedKvFormat(false, 4, 8, 11);
      case "gear4", "gear2" -> new GearValueFormat(bits(name), 32, 2, 3, 0.02);
      default -> format(name);
    };
  }

  /** The number a format's bench name ends with (its bits, CQ's coupled channels, sparsity). */
  private static int bits(String name) {
    int i = name.length();
    while (i > 0 && Character.isDigit(name.charAt(i - 1))) {
      i--;
    }
    return Integer.parseInt(name.substring(i));
  }

  /** Every row 2 bits but one row in 32 at 3. */
  private static byte[] qaqKeyBits(int capacity) {
    byte[] b = new byte[capacity];
    for (int s = 0; s < capacity; s++) {
      b[s] = (byte) (s == 13 ? 3 : 2);
    }
    return b;
  }

  private static byte[] qaqBits(int capacity) {
    byte[] b = new byte[capacity];
    for (int s = 0; s < capacity; s++) {
      b[s] = (byte) (s % 8 == 0 ? 8 : s % 2 == 0 ? 4 : 2);
    }
    return b;
  }

  /** {@code atoms} random unit-norm atoms of {@code d} channels. */
  private static float[] dictionary(int atoms, int d, long seed) {
    return OmpEncoderTest.dictionary(atoms, d, seed);
  }

  /**
   * Distinct blocks a format's setup encodes (the rest copy them: distinct arrays, so the same
   * memory traffic): formats whose encoder is slow (OMP over 1,024 atoms, power iterations, a
   * 256-centroid search) encode 512; the others every block.
   */
  private static int distinct(String name, int blocks) {
    return name.startsWith("lexico") || name.startsWith("gear") || name.startsWith("cq")
        ? Math.min(blocks, 512)
        : blocks;
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
    int distinctKeys = distinct(kv[0], blocks);
    int distinctValues = distinct(kv[1], blocks);
    for (int b = 0; b < blocks; b++) {
      // heap arrays, as KvBlock allocates them (the kernels' array fast paths)
      keys[b] = MemorySegment.ofArray(new byte[(int) keyFormat.blockBytes(block, headDim)]);
      values[b] = MemorySegment.ofArray(new byte[(int) valueFormat.blockBytes(block, headDim)]);
      for (int i = 0; i < rows.length; i++) {
        rows[i] = (float) r.nextGaussian();
      }
      if (b < distinctKeys) {
        keyFormat.encode(rows, 0, headDim, block, keys[b], 0, block, headDim);
      } else {
        MemorySegment.copy(keys[b % distinctKeys], 0, keys[b], 0, keys[b].byteSize());
      }
      if (b < distinctValues) {
        valueFormat.encode(rows, 0, headDim, block, values[b], 0, block, headDim);
      } else {
        MemorySegment.copy(values[b % distinctValues], 0, values[b], 0, values[b].byteSize());
      }
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
