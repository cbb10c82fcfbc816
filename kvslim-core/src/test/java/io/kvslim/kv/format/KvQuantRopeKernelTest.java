package io.kvslim.kv.format;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.kv.Rotary;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.kv.store.LayerStore;
import io.kvslim.model.ModelConfig;
import io.kvslim.model.Rope;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * KVQuant's scores of keys stored before RoPE, each rotated at its position without decoding it
 * ({@link KvQuantKeyFormat#scoresAtPositions}): the register kernels (adjacent pairs, among them
 * the 4-bit one that widens a run's bytes and adds each row's outliers in its loop, with 0..5
 * outlier entries a key; pairs half a head apart) and the scalar path (blocks off the heap, runs
 * whose last word would leave the row) against the key decoded, rotated by the model's RoPE and
 * scored in double; and a layer's attention with the kernel against the same layer decoding and
 * rotating each key.
 */
class KvQuantRopeKernelTest {
  static final int D = KvQuantFormatTest.D;
  static final int CAP = KvQuantFormatTest.CAP;

  static Rope rope(ModelConfig.RopeType type) {
    ModelConfig c =
        new ModelConfig(
            "llama", 2 * D, 1, 2, 2, D, 64, 10, 16384, 1e-5f, 500000f, D, type, 1f, false);
    return new Rope(c, null);
  }

  @ParameterizedTest
  @CsvSource({
    "2, 0, NORMAL",
    "2, 1, NORMAL",
    "3, 1, NORMAL",
    "3, 2, NORMAL",
    "4, 0, NORMAL",
    "4, 1, NORMAL",
    "4, 3, NORMAL",
    "4, 2, NORMAL",
    "4, 5, NORMAL",
    "2, 1, NEOX",
    "3, 2, NEOX",
    "4, 1, NEOX",
    "4, 0, NEOX",
    "4, 3, NEOX",
    "2, 0, NEOX",
    "3, 0, NEOX"
  })
  void rotatedScoresEqualTheDecodedKeyRotatedAndScored(
      int bits, int outliers, ModelConfig.RopeType type) {
    SplittableRandom r = new SplittableRandom(31L * bits + outliers);
    KvQuantKeyFormat layer = KvQuantFormatTest.keys(bits, outliers, r);
    KvQuantKeyFormat f = (KvQuantKeyFormat) layer.forHead(1);
    float[] rows = KvQuantFormatTest.keyRows(layer, 1, CAP, r);
    MemorySegment heap = MemorySegment.ofArray(new byte[(int) f.blockBytes(CAP, D)]);
    f.encode(rows, 0, D, CAP, heap, 0, CAP, D);
    MemorySegment offHeap = Arena.ofAuto().allocate(heap.byteSize(), 8);
    offHeap.copyFrom(heap);
    Rope rope = rope(type);
    int half = D / 2;
    int[] positions = new int[CAP];
    int largest = 0;
    for (int s = 0; s < CAP; s++) {
      positions[s] = s % 3 == 0 ? 5000 + r.nextInt(9000) : r.nextInt(40); // any order, gaps
      largest = Math.max(largest, positions[s] + 1);
    }
    float[] cos = new float[largest * half];
    float[] sin = new float[largest * half];
    for (int p = 0; p < largest; p++) {
      rope.angles(p, cos, sin, p * half);
    }
    float[] q = new float[D];
    for (int j = 0; j < D; j++) {
      q[j] = (float) r.nextGaussian();
    }
    float[] prepared = new float[3 + f.rotatedQueryLength(D)];
    f.prepareRotatedQuery(q, 0, D, rope.pairOffset(), prepared, 3);
    float[] work = new float[KvFormat.workLength(D)];
    for (MemorySegment block : new MemorySegment[] {heap, offHeap}) {
      for (int count : new int[] {CAP, 1, 7, CAP - 3}) {
        float[] scores = new float[2 + CAP];
        f.scoresAtPositions(
            block, count, D, prepared, 3, rope.pairOffset(), positions, cos, sin, scores, 2, work);
        float[] key = new float[D];
        for (int s = 0; s < count; s++) {
          f.decode(block, s, CAP, D, key, 0);
          rope.rotate(key, 0, 1, D, cos, sin, positions[s] * half);
          double dot = 0;
          double magnitude = 0;
          for (int j = 0; j < D; j++) {
            dot += (double) q[j] * key[j];
            magnitude += Math.abs((double) q[j] * key[j]);
          }
          assertThat((double) scores[2 + s])
              .as("%d bits, %s block, %d slots, slot %d", bits, block.isNative(), count, s)
              .isCloseTo(dot, org.assertj.core.data.Offset.offset(2e-5 * magnitude + 1e-6));
        }
        assertThat(scores[0]).isZero();
        assertThat(scores[1]).isZero();
      }
    }
  }

  /** The model's RoPE, without saying how its channels pair: the layer decodes and rotates. */
  record Unpaired(Rotary rope) implements Rotary {
    @Override
    public int dims() {
      return rope.dims();
    }

    @Override
    public void angles(int position, float[] cos, float[] sin, int off) {
      rope.angles(position, cos, sin, off);
    }

    @Override
    public void rotate(
        float[] x, int off, int heads, int headDim, float[] cos, float[] sin, int a) {
      rope.rotate(x, off, heads, headDim, cos, sin, a);
    }
  }

  /**
   * A layer attends with the fused kernel as it does decoding and rotating each key, within float
   * rounding: a prefill of several tiles (the F16 sink block among the blocks), then decode steps.
   */
  @ParameterizedTest
  @ValueSource(ints = {2, 3, 4})
  void layerAttendsAsWhenDecodingAndRotatingEachKey(int bits) {
    int kvHeads = KvQuantFormatTest.HEADS;
    Rope rope = rope(ModelConfig.RopeType.NORMAL);
    SplittableRandom r = new SplittableRandom(7 + bits);
    KvQuantKeyFormat keys = sinked(KvQuantFormatTest.keys(bits, 1, r));
    KvCacheFormat format =
        KvCacheFormat.of(
            keys, new KvQuantValueFormat(bits, KvQuantFormatTest.codebook(bits, r), 1));
    PagedLayerKv fused = layer(kvHeads, format, rope);
    PagedLayerKv decoded = layer(kvHeads, format, new Unpaired(rope));
    int heads = 2 * kvHeads; // GQA groups of 2
    int prompt = 150;
    float[] k = new float[prompt * kvHeads * D];
    float[] v = new float[k.length];
    for (int g = 0; g < kvHeads; g++) {
      float[] rows = KvQuantFormatTest.keyRows(keys, g, prompt, r); // 0..3 outliers per row
      for (int t = 0; t < prompt; t++) {
        System.arraycopy(rows, t * D, k, (t * kvHeads + g) * D, D);
      }
    }
    for (int i = 0; i < v.length; i++) {
      v[i] = (float) r.nextGaussian();
    }
    float[] q = new float[prompt * heads * D];
    for (int i = 0; i < q.length; i++) {
      q[i] = (float) r.nextGaussian() * 0.3f;
    }
    int[] positions = new int[prompt];
    for (int t = 0; t < prompt; t++) {
      positions[t] = t;
    }
    float[] outFused = new float[q.length];
    float[] outDecoded = new float[q.length];
    fused.append(prompt, positions, k, v);
    decoded.append(prompt, positions, k, v);
    fused.attend(prompt, positions, heads, q, 0.125f, outFused, null, null);
    decoded.attend(prompt, positions, heads, q, 0.125f, outDecoded, null, null);
    for (int i = 0; i < q.length; i++) {
      assertThat(outFused[i]).as("prefill %d", i).isCloseTo(outDecoded[i], within(1e-4f));
    }
    for (int step = 0; step < 3; step++) {
      int[] at = {prompt + step};
      float[] k1 = new float[kvHeads * D];
      for (int g = 0; g < kvHeads; g++) {
        System.arraycopy(KvQuantFormatTest.keyRows(keys, g, 4, r), 3 * D, k1, g * D, D);
      }
      float[] v1 = new float[kvHeads * D];
      for (int i = 0; i < v1.length; i++) {
        v1[i] = (float) r.nextGaussian();
      }
      float[] q1 = new float[heads * D];
      for (int i = 0; i < q1.length; i++) {
        q1[i] = (float) r.nextGaussian() * 0.3f;
      }
      float[] a = new float[q1.length];
      float[] b = new float[q1.length];
      fused.append(1, at, k1, v1);
      decoded.append(1, at, k1, v1);
      fused.attend(1, at, heads, q1, 0.125f, a, null, null);
      decoded.attend(1, at, heads, q1, 0.125f, b, null, null);
      for (int i = 0; i < a.length; i++) {
        assertThat(a[i]).as("step %d, %d", step, i).isCloseTo(b[i], within(1e-4f));
      }
    }
  }

  static org.assertj.core.data.Offset<Float> within(float f) {
    return org.assertj.core.data.Offset.offset(f);
  }

  /** The same tables, with the first token of each head kept in F16 (KVQuant's default). */
  static KvQuantKeyFormat sinked(KvQuantKeyFormat f) {
    float[] centroids = new float[1 << f.bits()];
    for (int i = 0; i < centroids.length; i++) {
      centroids[i] = f.centroid(i);
    }
    return new KvQuantKeyFormat(f.bits(), centroids, f.offsets(), f.ranges(), f.outliers(), 1);
  }

  static PagedLayerKv layer(int kvHeads, KvCacheFormat format, Rotary rope) {
    PagedLayerKv layer =
        new PagedLayerKv(
            new LayerStore(new BlockPool(), kvHeads, D, format), new PagedLayerKv.Scratch());
    assertThat(layer.appliesRope(rope)).isTrue();
    return layer;
  }
}
