package io.kvslim.engine.blend;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import io.kvslim.model.ModelConfig;
import io.kvslim.model.Rope;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * CacheBlend on the bundled trained model: the extremes of the recompute share against a full
 * prefill and against naive reuse built here, key re-rotation against keys computed at the new
 * positions, the chunk store's hits and misses, and its errors.
 */
class CacheBlendTest {
  private static final int BOS = 1;
  private static final int[] PREFIX = {BOS};
  private static Model model;
  private static Engine engine;

  @BeforeAll
  static void load() {
    model = Model.load(SharedData.model("pycoder-6m-f16.gguf"));
    engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()));
  }

  @AfterAll
  static void close() {
    if (engine != null) {
      engine.close();
      model.close();
    }
  }

  private static List<int[]> chunks(long seed, int... lengths) {
    Random random = new Random(seed);
    List<int[]> chunks = new ArrayList<>();
    for (int n : lengths) {
      chunks.add(random.ints(n, 3, engine.config().vocabSize()).toArray());
    }
    return chunks;
  }

  private static int[] concat(int[] prefix, List<int[]> chunks, int[] suffix) {
    int n = prefix.length + suffix.length;
    for (int[] c : chunks) {
      n += c.length;
    }
    int[] all = new int[n];
    System.arraycopy(prefix, 0, all, 0, prefix.length);
    int at = prefix.length;
    for (int[] c : chunks) {
      System.arraycopy(c, 0, all, at, c.length);
      at += c.length;
    }
    System.arraycopy(suffix, 0, all, at, suffix.length);
    return all;
  }

  private static CacheBlend blend(String spec) {
    return new CacheBlend(engine, "full", new ChunkKvStore(1L << 30), BlendOptions.parse(spec));
  }

  /** Logits after the prompt, then after each of {@code steps} decoded tokens. */
  private static float[][] continuation(KvCache cache, float[] first, int[] next, int at) {
    int vocab = engine.config().vocabSize();
    float[][] out = new float[next.length + 1][];
    out[0] = first.clone();
    for (int i = 0; i < next.length; i++) {
      out[i + 1] = new float[vocab];
      engine.decode(cache, next[i], at + i, out[i + 1]);
    }
    return out;
  }

  @Test
  void fullRecomputeEqualsFullPrefillBitForBit() {
    List<int[]> chunks = chunks(1, 40, 55, 33, 61);
    int[] suffix = {17, 400, 92, 3000, 5};
    int[] all = concat(PREFIX, chunks, suffix);
    int[] next = {11, 12, 13};
    int vocab = engine.config().vocabSize();
    float[] full = new float[vocab];
    float[] blended = new float[vocab];
    try (KvCache a = engine.newCache();
        KvCache b = engine.newCache()) {
      engine.prefill(a, all, 0, all.length, 0, false, full);
      CacheBlend.Result r =
          blend("cacheblend:recompute=100%").prefill(b, PREFIX, chunks, suffix, blended);
      assertThat(r.recomputed()).isEqualTo(all.length);
      assertThat(continuation(b, blended, next, all.length))
          .isDeepEqualTo(continuation(a, full, next, all.length));
      assertThat(b.bytes()).isEqualTo(a.bytes());
    }
  }

  @Test
  void noRecomputeEqualsNaiveReuse() {
    List<int[]> chunks = chunks(2, 30, 47, 52);
    int[] suffix = {8, 9, 10, 2000};
    int[] next = {21, 22};
    ModelConfig c = engine.config();
    int vocab = c.vocabSize();
    float[] naive = new float[vocab];
    float[] blended = new float[vocab];
    try (KvCache a = engine.newCache();
        KvCache b = engine.newCache()) {
      // naive reuse, written out: each chunk alone behind the prefix, its rows re-rotated and
      // appended in prompt order, then the suffix prefilled normally
      int at = PREFIX.length;
      for (int i = 0; i < chunks.size(); i++) {
        int[] tokens = concat(PREFIX, List.of(chunks.get(i)), new int[0]);
        Recorder rec = new Recorder(engine.newCache());
        engine.prefill(rec, tokens, 0, tokens.length, 0, false, new float[vocab]);
        int from = i == 0 ? 0 : PREFIX.length;
        int n = tokens.length - from;
        int delta = at - PREFIX.length;
        Rope rope = model.rope();
        float[] cos = new float[c.ropeDims() / 2];
        float[] sin = new float[c.ropeDims() / 2];
        rope.angles(delta, cos, sin, 0);
        int[] pos = new int[n];
        for (int j = 0; j < n; j++) {
          pos[j] = (i == 0 ? 0 : at) + j;
        }
        for (int l = 0; l < c.layers(); l++) {
          float[] k = Arrays.copyOfRange(rec.keys(l), from * c.kvDim(), tokens.length * c.kvDim());
          float[] v =
              Arrays.copyOfRange(rec.values(l), from * c.kvDim(), tokens.length * c.kvDim());
          if (delta != 0) {
            for (int j = 0; j < n; j++) {
              rope.rotate(k, j * c.kvDim(), c.kvHeads(), c.headDim(), cos, sin, 0);
            }
          }
          a.layer(l).append(n, pos, k, v);
        }
        rec.close();
        at = pos[n - 1] + 1;
      }
      int[] all = concat(PREFIX, chunks, suffix);
      engine.prefill(a, all, at, all.length, at, false, naive);
      blend("cacheblend:recompute=0%").prefill(b, PREFIX, chunks, suffix, blended);
      assertThat(continuation(b, blended, next, all.length))
          .isDeepEqualTo(continuation(a, naive, next, all.length));
    }
  }

  @Test
  void partialRecomputeLiesBetweenNaiveAndFull() {
    List<int[]> chunks = chunks(3, 60, 60, 60, 60);
    int[] suffix = {100, 200, 300};
    int vocab = engine.config().vocabSize();
    float[][] logits = new float[3][vocab];
    String[] specs = {
      "cacheblend:recompute=0%", "cacheblend:recompute=15%", "cacheblend:recompute=100%"
    };
    int recomputed = 0;
    for (int i = 0; i < 3; i++) {
      try (KvCache cache = engine.newCache()) {
        CacheBlend.Result r = blend(specs[i]).prefill(cache, PREFIX, chunks, suffix, logits[i]);
        if (i == 1) {
          recomputed = r.recomputed();
        }
      }
    }
    assertThat(recomputed).isEqualTo((int) Math.floor(241 * 0.15 + 1e-9) + suffix.length);
    assertThat(logits[1]).isNotEqualTo(logits[0]).isNotEqualTo(logits[2]);
  }

  @Test
  void partialRecomputeFusesFreshAndStoredKvAsThePaperSays() {
    List<int[]> chunks = chunks(10, 45, 38, 52);
    int[] suffix = {300, 301, 302, 303};
    int[] all = concat(PREFIX, chunks, suffix);
    ModelConfig c = engine.config();
    int w = c.kvDim();
    int cached = all.length - suffix.length;
    float[] logits = new float[c.vocabSize()];
    try (Recorder full = new Recorder(engine.newCache());
        Recorder naive = new Recorder(engine.newCache());
        Recorder blended = new Recorder(engine.newCache())) {
      engine.prefill(full, all, 0, all.length, 0, false, logits);
      blend("cacheblend:recompute=0%").prefill(naive, PREFIX, chunks, suffix, logits);
      blend("cacheblend:recompute=20%,check=2").prefill(blended, PREFIX, chunks, suffix, logits);
      // layers up to the check layer: every token's fresh KV, as the full prefill's
      for (int l = 0; l <= 2; l++) {
        assertThat(blended.keys(l)).as("layer %d", l).isEqualTo(full.keys(l));
        assertThat(blended.values(l)).as("layer %d", l).isEqualTo(full.values(l));
      }
      // the selection: the chunk rows whose layer-2 values moved most from the stored ones
      int k = (int) Math.floor(cached * 0.2 + 1e-9);
      double[] d = new double[cached];
      Integer[] order = new Integer[cached];
      for (int r = 0; r < cached; r++) {
        order[r] = r;
        for (int j = r * w; j < (r + 1) * w; j++) {
          double x = (double) full.values(2)[j] - naive.values(2)[j];
          d[r] += x * x;
        }
      }
      Arrays.sort(order, (a, b) -> Double.compare(d[b], d[a]));
      boolean[] selected = new boolean[cached];
      for (int i = 0; i < k; i++) {
        selected[order[i]] = true;
      }
      // deeper layers: unselected chunk rows keep their stored KV, the others are recomputed
      for (int l = 3; l < c.layers(); l++) {
        int changed = 0;
        for (int r = 0; r < cached; r++) {
          float[] got = Arrays.copyOfRange(blended.values(l), r * w, (r + 1) * w);
          float[] stored = Arrays.copyOfRange(naive.values(l), r * w, (r + 1) * w);
          if (!selected[r]) {
            assertThat(got).as("layer %d row %d", l, r).isEqualTo(stored);
            assertThat(Arrays.copyOfRange(blended.keys(l), r * w, (r + 1) * w))
                .isEqualTo(Arrays.copyOfRange(naive.keys(l), r * w, (r + 1) * w));
          } else if (!Arrays.equals(got, stored)) {
            changed++;
          }
        }
        assertThat(changed).as("layer %d", l).isEqualTo(k);
      }
    }
  }

  @Test
  void reRotatedKeysEqualKeysComputedAtTheNewPositions() {
    List<int[]> chunks = chunks(4, 50, 70, 90);
    int[] all = concat(PREFIX, chunks, new int[0]);
    ModelConfig c = engine.config();
    Rope rope = model.rope();
    float[] cos = new float[c.ropeDims() / 2];
    float[] sin = new float[c.ropeDims() / 2];
    try (Recorder whole = new Recorder(engine.newCache())) {
      engine.prefill(whole, all, 0, all.length, 0, false, new float[c.vocabSize()]);
      int at = 1 + 50 + 70; // the third chunk's place in the prompt
      int[] alone = concat(PREFIX, List.of(chunks.get(2)), new int[0]);
      try (Recorder rec = new Recorder(engine.newCache())) {
        engine.prefill(rec, alone, 0, alone.length, 0, false, new float[c.vocabSize()]);
        // layer 0's keys depend on the token only: they differ only by the rotation
        float[] k = Arrays.copyOfRange(rec.keys(0), c.kvDim(), alone.length * c.kvDim());
        float[] expected =
            Arrays.copyOfRange(whole.keys(0), at * c.kvDim(), all.length * c.kvDim());
        assertThat(maxRelative(k, expected, c)).as("before re-rotation").isGreaterThan(0.1);
        rope.angles(at - 1, cos, sin, 0);
        CacheBlend.rerotate(rope, k, 0, 90, c, cos, sin);
        // float rounding of the angles at positions below 256 and of the two rotations
        assertThat(maxRelative(k, expected, c)).isLessThan(1e-4);
      }
    }
  }

  /** The largest difference of any element, relative to the norm of its head's vector. */
  private static double maxRelative(float[] a, float[] b, ModelConfig c) {
    double worst = 0;
    int d = c.headDim();
    for (int h = 0; h < a.length / d; h++) {
      double norm = 0;
      double diff = 0;
      for (int j = h * d; j < (h + 1) * d; j++) {
        norm += (double) b[j] * b[j];
        diff = Math.max(diff, Math.abs(a[j] - b[j]));
      }
      worst = Math.max(worst, diff / Math.sqrt(norm));
    }
    return worst;
  }

  @Test
  void chunkHitsAndMissesAreCounted() {
    List<int[]> chunks = chunks(5, 20, 25, 30);
    int[] suffix = {4, 5};
    ChunkKvStore store = new ChunkKvStore(1L << 30);
    CacheBlend blend = new CacheBlend(engine, "full", store, BlendOptions.DEFAULT);
    float[] logits = new float[engine.config().vocabSize()];
    float[] reordered = new float[logits.length];
    try (KvCache a = engine.newCache();
        KvCache b = engine.newCache();
        KvCache d = engine.newCache()) {
      CacheBlend.Result first = blend.prefill(a, PREFIX, chunks, suffix, logits);
      assertThat(first.misses()).isEqualTo(3);
      assertThat(first.hits()).isZero();
      List<int[]> shuffled = List.of(chunks.get(2), chunks.get(0), chunks.get(1));
      CacheBlend.Result second = blend.prefill(b, PREFIX, shuffled, suffix, reordered);
      assertThat(second.hits()).isEqualTo(3);
      assertThat(second.misses()).isZero();
      assertThat(reordered).isNotEqualTo(logits);
      List<int[]> oneNew = List.of(chunks.get(1), chunks(6, 12).get(0));
      CacheBlend.Result third = blend.prefill(d, PREFIX, oneNew, suffix, logits);
      assertThat(third.hits()).isEqualTo(1);
      assertThat(third.misses()).isEqualTo(1);
    }
    assertThat(store.hits()).isEqualTo(4);
    assertThat(store.misses()).isEqualTo(4);
    assertThat(store.size()).isEqualTo(4);
    // another KV spec is another key
    assertThat(ChunkKvStore.key("m", "full", new int[] {1, 2}))
        .isNotEqualTo(ChunkKvStore.key("m", "q8_0", new int[] {1, 2}))
        .isNotEqualTo(ChunkKvStore.key("m", "full", new int[] {2, 1}));
  }

  @Test
  void storeEvictsLeastRecentlyUsedBeyondCapacity() {
    float[][] one = {new float[10]};
    ChunkKv kv = new ChunkKv(new int[] {1}, one, one);
    ChunkKvStore store = new ChunkKvStore(2 * kv.bytes());
    store.put("a", kv);
    store.put("b", kv);
    assertThat(store.get("a", new int[] {1})).isNotNull();
    store.put("c", kv);
    assertThat(store.get("b", new int[] {1})).isNull();
    assertThat(store.get("a", new int[] {1})).isNotNull();
    assertThat(store.get("c", new int[] {2})).as("other tokens under the key").isNull();
    assertThat(store.bytes()).isEqualTo(2 * kv.bytes());
  }

  @Test
  void selectionMatchesBruteForce() {
    Random random = new Random(7);
    for (int trial = 0; trial < 50; trial++) {
      int rows = 1 + random.nextInt(40);
      int width = 1 + random.nextInt(6);
      int k = random.nextInt(rows + 1);
      float[] fresh = new float[rows * width];
      float[] stored = new float[rows * width];
      for (int i = 0; i < fresh.length; i++) {
        fresh[i] = random.nextInt(3); // small integers: ties happen
        stored[i] = random.nextInt(3);
      }
      double[] d = new double[rows];
      for (int r = 0; r < rows; r++) {
        for (int j = 0; j < width; j++) {
          double x = fresh[r * width + j] - stored[r * width + j];
          d[r] += x * x;
        }
      }
      boolean[] taken = new boolean[rows];
      for (int i = 0; i < k; i++) {
        int best = -1;
        for (int r = 0; r < rows; r++) {
          if (!taken[r] && (best < 0 || d[r] > d[best])) {
            best = r;
          }
        }
        taken[best] = true;
      }
      int[] expected = java.util.stream.IntStream.range(0, rows).filter(r -> taken[r]).toArray();
      assertThat(BlendCache.mostDeviating(fresh, stored, rows, width, k)).isEqualTo(expected);
    }
  }

  @Test
  void badInputIsOneSentence() {
    String[] specs = {
      "cacheblend:recompute=150%",
      "cacheblend:recompute=x",
      "cacheblend:check=0",
      "cacheblend:check=two",
      "cacheblend:window=3",
      "cacheblend:recompute",
      "snapkv:budget=10",
      ""
    };
    for (String spec : specs) {
      assertThatThrownBy(() -> BlendOptions.parse(spec))
          .as(spec)
          .isInstanceOf(IllegalArgumentException.class)
          .satisfies(e -> assertOneSentence(e.getMessage()));
    }
    assertThatThrownBy(() -> blend("cacheblend:check=6"))
        .satisfies(e -> assertOneSentence(e.getMessage()))
        .hasMessageContaining("6 layers");
    CacheBlend blend = blend("cacheblend");
    float[] logits = new float[engine.config().vocabSize()];
    try (KvCache cache = engine.newCache()) {
      assertThatThrownBy(() -> blend.prefill(cache, PREFIX, List.of(), new int[] {5}, logits))
          .satisfies(e -> assertOneSentence(e.getMessage()));
      assertThatThrownBy(() -> blend.prefill(cache, PREFIX, chunks(8, 5), new int[0], logits))
          .satisfies(e -> assertOneSentence(e.getMessage()));
      assertThatThrownBy(
              () -> blend.prefill(cache, PREFIX, List.of(new int[0]), new int[] {5}, logits))
          .satisfies(e -> assertOneSentence(e.getMessage()));
      assertThatThrownBy(
              () -> blend.prefill(cache, PREFIX, chunks(9, 1000, 100), new int[] {5}, logits))
          .satisfies(e -> assertOneSentence(e.getMessage()))
          .hasMessageContaining("context of 1024");
    }
    assertThat(BlendOptions.parse("cacheblend:recompute=0.2, check=2"))
        .isEqualTo(new BlendOptions(0.2, 2));
    assertThat(BlendOptions.parse(BlendOptions.DEFAULT.toString())).isEqualTo(BlendOptions.DEFAULT);
  }

  private static void assertOneSentence(String message) {
    assertThat(message).isNotBlank().doesNotContain("\n");
    assertThat(message.strip().split("(?<=[.!?])\\s+[A-Z]")).hasSize(1);
  }

  /** A cache that records the keys and values appended to each layer, in append order. */
  private static final class Recorder implements KvCache {
    private final KvCache inner;
    private final Layer[] layers;

    Recorder(KvCache inner) {
      this.inner = inner;
      this.layers = new Layer[inner.layerCount()];
      for (int l = 0; l < layers.length; l++) {
        layers[l] = new Layer(inner.layer(l));
      }
    }

    float[] keys(int l) {
      return layers[l].keys;
    }

    float[] values(int l) {
      return layers[l].values;
    }

    @Override
    public int layerCount() {
      return layers.length;
    }

    @Override
    public io.kvslim.kv.LayerKv layer(int l) {
      return layers[l];
    }

    @Override
    public long bytes() {
      return inner.bytes();
    }

    @Override
    public void close() {
      inner.close();
    }

    private static final class Layer extends ForwardingLayer {
      float[] keys = new float[0];
      float[] values = new float[0];

      Layer(io.kvslim.kv.LayerKv inner) {
        super(inner);
      }

      @Override
      public void append(int n, int[] positions, float[] k, float[] v) {
        int w = kvHeads() * headDim();
        int old = keys.length;
        keys = Arrays.copyOf(keys, old + n * w);
        values = Arrays.copyOf(values, old + n * w);
        System.arraycopy(k, 0, keys, old, n * w);
        System.arraycopy(v, 0, values, old, n * w);
        super.append(n, positions, k, v);
      }
    }
  }
}
