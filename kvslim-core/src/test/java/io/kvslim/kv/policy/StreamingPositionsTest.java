package io.kvslim.kv.policy;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.AttentionObserver;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.LayerKv;
import io.kvslim.kv.Rotary;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import io.kvslim.tensor.Parallel;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * StreamingLLM's positions (METHODS.md E1) through the real (tiny) model: with {@code
 * positions=rolling} attention uses indices in the cache, never more than C − 1; a capacity that
 * covers the sequence changes nothing bit for bit; both modes match an independent scalar cache.
 */
class StreamingPositionsTest {
  static Model model;
  static Engine engine;
  static int[] tokens;
  static final int SINKS = 4;
  static final int WINDOW = 28;
  static final int CAPACITY = SINKS + WINDOW;
  static final int PROMPT = 40;
  static final int DECODE = 40;

  @BeforeAll
  static void load() {
    if (!SharedData.present()) {
      return;
    }
    model = Model.load(SharedData.model("llama-spm-f32.gguf"));
    engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()));
    SplittableRandom r = new SplittableRandom(11);
    tokens = new int[PROMPT + DECODE];
    for (int i = 0; i < tokens.length; i++) {
      tokens[i] = 3 + r.nextInt(model.config().vocabSize() - 3);
    }
  }

  @AfterAll
  static void close() {
    if (engine != null) {
      engine.close();
      model.close();
    }
  }

  static ManagedKvCache cache(String spec) {
    return KvSpecs.caches(KvSpec.parse(spec), new BlockPool(), model.config()).create();
  }

  /** Logits of the prompt's last token and of every decode step. */
  static float[][] run(KvCache cache, int prefillChunk) {
    int vocab = model.config().vocabSize();
    float[][] out = new float[DECODE + 1][vocab];
    engine.setPrefillChunk(prefillChunk);
    try {
      engine.prefill(cache, tokens, 0, PROMPT, 0, false, out[0]);
    } finally {
      engine.setPrefillChunk(Engine.DEFAULT_PREFILL_CHUNK);
    }
    for (int i = 0; i < DECODE; i++) {
      engine.decode(cache, tokens[PROMPT + i], PROMPT + i, out[i + 1]);
    }
    return out;
  }

  @ParameterizedTest
  @ValueSource(booleans = {false, true})
  void rollingPositionsWithACapacityCoveringTheSequenceChangeNothingBitForBit(boolean llamaCpp) {
    SharedData.require();
    Engine saved = engine;
    if (llamaCpp) {
      engine =
          new Engine(
              model,
              2,
              KvSpecs.factory(KvSpec.FULL, new BlockPool()),
              io.kvslim.model.Numerics.LLAMA_CPP);
    }
    try (ManagedKvCache full = cache("full");
        ManagedKvCache rolling = cache("streaming:sinks=4,window=1000,positions=rolling")) {
      float[][] a = run(full, 16);
      float[][] b = run(rolling, 16);
      for (int i = 0; i < a.length; i++) {
        assertThat(b[i]).as("step %d", i).containsExactly(a[i]);
      }
    } finally {
      if (engine != saved) {
        engine.close();
        engine = saved;
      }
    }
  }

  @Test
  void rollingPositionsNeverPassCapacityMinusOneToRope() {
    SharedData.require();
    int vocab = model.config().vocabSize();
    float[] logits = new float[vocab];
    int prompt = 24; // shorter than the capacity: the whole run is streamed
    try (ManagedKvCache managed = cache("streaming:sinks=4,window=28")) {
      Recording cache = new Recording(managed);
      engine.prefill(cache, tokens, 0, prompt, 0, false, logits);
      assertThat(cache.rope.largest).isEqualTo(prompt - 1);
      for (int p = prompt; p < tokens.length; p++) {
        cache.rope.largest = -1;
        engine.decode(cache, tokens[p], p, logits);
        // the query is the last token in the cache: index p until the cache is full, then C − 1
        assertThat(cache.rope.largest).as("decode at %d", p).isEqualTo(Math.min(p, CAPACITY - 1));
        for (int l = 0; l < managed.layerCount(); l++) {
          for (int g = 0; g < managed.paged(l).kvHeads(); g++) {
            int[] pos = managed.paged(l).positions(g);
            // between steps, room for the next token: C − 1 tokens once full
            assertThat(pos).hasSize(Math.min(p + 1, CAPACITY - 1)).startsWith(0, 1, 2, 3);
            assertThat(pos[pos.length - 1]).isEqualTo(p);
            if (p + 1 >= CAPACITY) {
              assertThat(pos[SINKS]).isEqualTo(p - (WINDOW - 2));
            }
          }
        }
      }
    }
  }

  @Test
  void aPromptLongerThanTheCapacityIsPrunedOnceThenPositionsAreCapped() {
    SharedData.require();
    float[] logits = new float[model.config().vocabSize()];
    try (ManagedKvCache managed = cache("streaming:sinks=4,window=28")) {
      Recording cache = new Recording(managed);
      engine.setPrefillChunk(16); // however many chunks, the prompt is taken whole
      try {
        engine.prefill(cache, tokens, 0, PROMPT, 0, false, logits);
      } finally {
        engine.setPrefillChunk(Engine.DEFAULT_PREFILL_CHUNK);
      }
      assertThat(cache.rope.largest).isEqualTo(PROMPT - 1);
      assertThat(managed.paged(0).size(0)).isEqualTo(CAPACITY - 1);
      for (int i = 0; i < 4; i++) {
        cache.rope.largest = -1;
        engine.decode(cache, tokens[PROMPT + i], PROMPT + i, logits);
        assertThat(cache.rope.largest).isEqualTo(CAPACITY - 1);
      }
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"rolling", "original"})
  void bothModesMatchAnIndependentScalarCache(String positions) {
    SharedData.require();
    boolean rolling = positions.equals("rolling");
    float[][] got;
    float[][] want;
    try (ManagedKvCache c = cache("streaming:sinks=4,window=28,positions=" + positions)) {
      got = run(c, 512);
    }
    want = run(new ReferenceCache(model.config().layers(), rolling), 512);
    // (the prompt, 40 tokens, is longer than the capacity: it is pruned once, then streamed)
    for (int i = 0; i < got.length; i++) {
      assertThat(largestDifference(got[i], want[i])).as("step %d", i).isLessThan(2e-4f);
    }
  }

  @Test
  void rollingAndOriginalPositionsDifferOnceTokensAreEvicted() {
    SharedData.require();
    float[][] rolling;
    float[][] original;
    try (ManagedKvCache a = cache("streaming:sinks=4,window=28,positions=rolling");
        ManagedKvCache b = cache("streaming:sinks=4,window=28,positions=original")) {
      rolling = run(a, 512);
      original = run(b, 512);
    }
    float largest = 0;
    for (int i = 0; i < rolling.length; i++) {
      largest = Math.max(largest, largestDifference(rolling[i], original[i]));
    }
    assertThat(largest).isGreaterThan(1e-2f);
  }

  static float largestDifference(float[] a, float[] b) {
    assertThat(a).hasSameSizeAs(b);
    float largest = 0;
    for (int j = 0; j < a.length; j++) {
      largest = Math.max(largest, Math.abs(a[j] - b[j]));
    }
    return largest;
  }

  /** The model's RoPE, recording the largest position each rotation uses. */
  static final class RecordingRotary implements Rotary {
    Rotary rope;
    int largest = -1;

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
      largest = Math.max(largest, a / (rope.dims() / 2));
      rope.rotate(x, off, heads, headDim, cos, sin, a);
    }
  }

  /** A cache seen through layers that hand it a recording RoPE. */
  static final class Recording implements KvCache {
    final ManagedKvCache inner;
    final RecordingRotary rope = new RecordingRotary();
    final LayerKv[] layers;

    Recording(ManagedKvCache inner) {
      this.inner = inner;
      this.layers = new LayerKv[inner.layerCount()];
      for (int l = 0; l < layers.length; l++) {
        LayerKv in = inner.layer(l);
        layers[l] =
            new LayerKv() {
              @Override
              public int kvHeads() {
                return in.kvHeads();
              }

              @Override
              public int headDim() {
                return in.headDim();
              }

              @Override
              public void append(int n, int[] positions, float[] keys, float[] values) {
                in.append(n, positions, keys, values);
              }

              @Override
              public boolean appliesRope(Rotary r) {
                rope.rope = r;
                return in.appliesRope(rope);
              }

              @Override
              public void attend(
                  int n,
                  int[] positions,
                  int heads,
                  float[] queries,
                  float scale,
                  float[] out,
                  AttentionObserver observer) {
                in.attend(n, positions, heads, queries, scale, out, observer);
              }

              @Override
              public void attend(
                  int n,
                  int[] positions,
                  int heads,
                  float[] queries,
                  float scale,
                  float[] out,
                  AttentionObserver observer,
                  Parallel pool) {
                in.attend(n, positions, heads, queries, scale, out, observer, pool);
              }

              @Override
              public int size(int kvHead) {
                return in.size(kvHead);
              }

              @Override
              public long bytes() {
                return in.bytes();
              }

              @Override
              public long bytes(int kvHead) {
                return in.bytes(kvHead);
              }
            };
      }
    }

    @Override
    public int layerCount() {
      return layers.length;
    }

    @Override
    public LayerKv layer(int layer) {
      return layers[layer];
    }

    @Override
    public long bytes() {
      return inner.bytes();
    }

    @Override
    public void afterStep(StepKind kind) {
      inner.afterStep(kind);
    }

    @Override
    public void close() {}
  }

  /**
   * StreamingLLM written plainly: once the prompt is in, before {@code n} tokens come, keep the
   * sinks and the last {@code window − n} others, and after each step the sinks and the last {@code
   * window − 1}. With rolling positions, keys are kept before RoPE and every attention rotates key
   * j by j and the query by its own index; scores, softmax and sums in double.
   */
  static final class ReferenceCache implements KvCache {
    final RefLayer[] layers;
    boolean promptDone;

    ReferenceCache(int layerCount, boolean rolling) {
      layers = new RefLayer[layerCount];
      for (int l = 0; l < layerCount; l++) {
        layers[l] = new RefLayer(this, model.config().kvHeads(), model.config().headDim(), rolling);
      }
    }

    @Override
    public int layerCount() {
      return layers.length;
    }

    @Override
    public LayerKv layer(int layer) {
      return layers[layer];
    }

    @Override
    public long bytes() {
      return 0;
    }

    @Override
    public void afterStep(StepKind kind) {
      promptDone = true;
      for (RefLayer l : layers) {
        l.keepSinksAnd(WINDOW - 1);
      }
    }

    @Override
    public void close() {}
  }

  static final class RefLayer implements LayerKv {
    final ReferenceCache cache;
    final int kvHeads;
    final int headDim;
    final boolean rolling;
    Rotary rope;
    final List<Integer> positions = new ArrayList<>();
    final List<float[]> keys = new ArrayList<>(); // token-major, kvHeads × headDim each
    final List<float[]> values = new ArrayList<>();

    RefLayer(ReferenceCache cache, int kvHeads, int headDim, boolean rolling) {
      this.cache = cache;
      this.kvHeads = kvHeads;
      this.headDim = headDim;
      this.rolling = rolling;
    }

    void keepSinksAnd(int recent) {
      while (positions.size() > SINKS + recent) {
        positions.remove(SINKS);
        keys.remove(SINKS);
        values.remove(SINKS);
      }
    }

    @Override
    public int kvHeads() {
      return kvHeads;
    }

    @Override
    public int headDim() {
      return headDim;
    }

    @Override
    public boolean appliesRope(Rotary r) {
      rope = r;
      return rolling;
    }

    @Override
    public void append(int n, int[] pos, float[] k, float[] v) {
      if (cache.promptDone && positions.size() + n > CAPACITY) {
        keepSinksAnd(Math.max(0, WINDOW - n));
      }
      int row = kvHeads * headDim;
      for (int i = 0; i < n; i++) {
        positions.add(pos[i]);
        keys.add(java.util.Arrays.copyOfRange(k, i * row, (i + 1) * row));
        values.add(java.util.Arrays.copyOfRange(v, i * row, (i + 1) * row));
      }
    }

    final List<float[][]> angles = new ArrayList<>(); // cos and sin by position

    /** Head vector {@code x[off..+headDim)} rotated to {@code position}, as a new array. */
    float[] rotated(float[] x, int off, int position) {
      float[] y = java.util.Arrays.copyOfRange(x, off, off + headDim);
      if (rolling) {
        while (angles.size() <= position) {
          float[][] a = new float[2][rope.dims() / 2];
          rope.angles(angles.size(), a[0], a[1], 0);
          angles.add(a);
        }
        rope.rotate(y, 0, 1, headDim, angles.get(position)[0], angles.get(position)[1], 0);
      }
      return y;
    }

    @Override
    public void attend(
        int n,
        int[] pos,
        int heads,
        float[] queries,
        float scale,
        float[] out,
        AttentionObserver observer) {
      int size = positions.size();
      int group = heads / kvHeads;
      float[][][] rotatedKeys = new float[size][kvHeads][];
      for (int j = 0; j < size; j++) {
        for (int g = 0; g < kvHeads; g++) {
          rotatedKeys[j][g] = rotated(keys.get(j), g * headDim, j);
        }
      }
      for (int i = 0; i < n; i++) {
        for (int h = 0; h < heads; h++) {
          int g = h / group;
          float[] q = rotated(queries, (i * heads + h) * headDim, size - n + i);
          double[] score = new double[size];
          double max = Double.NEGATIVE_INFINITY;
          for (int j = 0; j < size; j++) {
            if (positions.get(j) > pos[i]) {
              score[j] = Double.NEGATIVE_INFINITY;
              continue;
            }
            float[] k = rotatedKeys[j][g];
            double dot = 0;
            for (int d = 0; d < headDim; d++) {
              dot += (double) q[d] * k[d];
            }
            score[j] = dot * scale;
            max = Math.max(max, score[j]);
          }
          double sum = 0;
          double[] acc = new double[headDim];
          for (int j = 0; j < size; j++) {
            double w = score[j] == Double.NEGATIVE_INFINITY ? 0 : Math.exp(score[j] - max);
            sum += w;
            for (int d = 0; d < headDim; d++) {
              acc[d] += w * values.get(j)[g * headDim + d];
            }
          }
          for (int d = 0; d < headDim; d++) {
            out[(i * heads + h) * headDim + d] = (float) (acc[d] / sum);
          }
        }
      }
    }

    @Override
    public int size(int kvHead) {
      return positions.size();
    }

    @Override
    public long bytes() {
      return 0;
    }

    @Override
    public long bytes(int kvHead) {
      return 0;
    }
  }
}
