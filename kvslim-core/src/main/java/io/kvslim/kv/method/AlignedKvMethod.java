package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.integer;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.format.AlignedKvFormat;
import io.kvslim.kv.format.KvFormat;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.store.KvCacheFormat;
import java.util.List;

/**
 * AlignedKV ("AlignedKV: Reducing Memory Access of KV-Cache with Precision-Aligned Quantization",
 * arXiv:2409.16546; METHODS.md Q8): keys and values stored as fp16 split into bit planes ({@link
 * AlignedKvFormat}); each attention read takes only the planes an element needs given the query, by
 * the paper's criterion (a product far below the largest one in its sum needs fewer mantissa bits).
 * The authors' code is AlignedQuant/AlignedKV ({@code new_extension/util_kcache.py}, {@code
 * util_vcache.py}; thresholds 4/8/11 in {@code csrc/kcache.cu}, per METHODS.md).
 *
 * <p>What it saves is memory <em>traffic</em>, not memory: the bytes held are fp16's plus {@code d
 * + C} bytes of exponent maxima per block of {@code C} tokens. New tokens wait in a tail of fewer
 * than {@code block} tokens, as the authors' {@code restk} (there fp16; here f32, because a block
 * with its maxima is larger than the same tokens in fp16 and a flush must not grow the cache), and
 * are split into planes a block at a time; the tail is read in full and its bytes are not in the
 * count. The policy (which evicts nothing) counts, per decode step, the bytes the fused kernels
 * read and the bytes a full fp16 read of the same elements takes ({@link Policy#bytesReadPerStep},
 * {@link Policy#fullBytesPerStep}), from the kernels' own counters.
 */
public final class AlignedKvMethod implements KvMethod {
  @Override
  public String name() {
    return "alignedkv";
  }

  @Override
  public Family family() {
    return Family.QUANTIZATION;
  }

  @Override
  public String paper() {
    return "AlignedKV: Reducing Memory Access of KV-Cache with Precision-Aligned Quantization,"
        + " arXiv:2409.16546";
  }

  @Override
  public String summary() {
    return "AlignedKV: fp16 in bit planes; each read skips the low planes of small products.";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        integer("t1", "4", "exponent gap from which the last 4 mantissa bits are not read")
            .between(0, 64),
        integer("t2", "8", "gap from which the middle 4 bits are not read either").between(0, 64),
        integer("t3", "11", "gap from which the element is not read (taken as 0)").between(0, 64),
        integer("block", "32", "tokens a block (the authors' COLUMN_BLOCK)").between(1, 4096));
  }

  @Override
  public void validate(MethodCall c) {
    if (c.integer("t1") > c.integer("t2") || c.integer("t2") > c.integer("t3")) {
      throw new KvSpecException(
          "alignedkv thresholds must satisfy t1 <= t2 <= t3, got "
              + c.integer("t1")
              + ", "
              + c.integer("t2")
              + ", "
              + c.integer("t3"));
    }
  }

  @Override
  public KvCacheFormat format(MethodCall c) {
    int t1 = c.integer("t1");
    int t2 = c.integer("t2");
    int t3 = c.integer("t3");
    return new KvCacheFormat(
        new AlignedKvFormat(true, t1, t2, t3),
        new AlignedKvFormat(false, t1, t2, t3),
        c.integer("block"),
        0,
        KvFormats.F32,
        KvFormats.F32);
  }

  @Override
  public KvPolicy policy(MethodCall c, PolicyContext ctx) {
    return new Policy(ctx.layers());
  }

  /** The paper's thresholds, and a tighter setting that reads less. */
  @Override
  public List<String> benchmarkSpecs() {
    return List.of("alignedkv", "alignedkv:t1=2,t2=4,t3=8");
  }

  @Override
  public String specCompressing(int tokens) {
    return "alignedkv:t1=1,t2=2,t3=3,block=4";
  }

  /** Counts the bytes each decode step's attention reads, over the rule's layers. */
  public static final class Policy implements KvPolicy {
    private final boolean[] layers;
    private long lastRead;
    private long lastFull;
    private double read;
    private double full;
    private long steps;

    Policy(boolean[] layers) {
      this.layers = layers;
    }

    private long[] totals(ManagedKvCache cache) {
      long r = 0;
      long f = 0;
      for (int l = 0; l < layers.length; l++) {
        if (!layers[l]) {
          continue;
        }
        KvCacheFormat format = cache.paged(l).store().format();
        for (KvFormat k : new KvFormat[] {format.keys(), format.values()}) {
          if (k instanceof AlignedKvFormat a) {
            r += a.bitsRead();
            f += a.fullBits();
          }
        }
      }
      return new long[] {r, f};
    }

    @Override
    public void afterStep(ManagedKvCache cache, KvCache.StepKind kind) {
      long[] now = totals(cache);
      if (kind == KvCache.StepKind.DECODE) {
        read += (now[0] - lastRead) / 8.0;
        full += (now[1] - lastFull) / 8.0;
        steps++;
      }
      lastRead = now[0];
      lastFull = now[1];
    }

    /** Bytes the decode steps so far read (planes and exponent maxima), all layers and heads. */
    public double bytesRead() {
      return read;
    }

    /** Bytes a full fp16 read of the same elements would have taken. */
    public double fullBytes() {
      return full;
    }

    public long decodeSteps() {
      return steps;
    }

    public double bytesReadPerStep() {
      return steps == 0 ? 0 : read / steps;
    }

    public double fullBytesPerStep() {
      return steps == 0 ? 0 : full / steps;
    }
  }
}
