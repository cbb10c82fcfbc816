package io.kvslim.kv.policy;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.KvCaches;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.KvBlock;
import io.kvslim.model.Model;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The invariants of DESIGN.md §3.5 for every eviction policy, on a real (tiny) model. */
class PolicyInvariantTest {
  static Model model;
  static Engine engine;
  static int[] tokens;
  static final int PROMPT = 64;
  static final int DECODE = 16;

  @BeforeAll
  static void load() {
    if (!SharedData.present()) {
      return;
    }
    model = Model.load(SharedData.model("llama-spm-f32.gguf"));
    engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()));
    SplittableRandom r = new SplittableRandom(7);
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

  /** Logits of every step: prefill of PROMPT tokens, then DECODE single steps. */
  static float[][] run(ManagedKvCache cache) {
    int vocab = model.config().vocabSize();
    float[][] out = new float[DECODE + 1][vocab];
    engine.prefill(cache, tokens, 0, PROMPT, 0, false, out[0]);
    for (int i = 0; i < DECODE; i++) {
      engine.decode(cache, tokens[PROMPT + i], PROMPT + i, out[i + 1]);
    }
    return out;
  }

  static ManagedKvCache cache(String spec) {
    return KvSpecs.caches(KvSpec.parse(spec), new BlockPool(), model.config()).create();
  }

  @Test
  void streamingKeepsSinksAndWindowAtItsCapacity() {
    SharedData.require();
    try (ManagedKvCache c = cache("streaming:sinks=4,window=28")) {
      run(c);
      for (int l = 0; l < c.layerCount(); l++) {
        PagedLayerKv layer = c.paged(l);
        for (int g = 0; g < layer.kvHeads(); g++) {
          int[] pos = layer.positions(g);
          // between steps, one short of the capacity: room for the next token
          assertThat(pos).hasSize(31);
          assertThat(pos).startsWith(0, 1, 2, 3);
          // the window: the most recent 27 positions that were appended (the last token of the
          // run is appended by the last decode step)
          int last = PROMPT + DECODE - 1;
          assertThat(pos[30]).isEqualTo(last);
          assertThat(pos[4]).isEqualTo(last - 26);
        }
      }
    }
  }

  @Test
  void h2oHoldsItsCapacityDuringDecodeAndKeepsTheRecentWindow() {
    SharedData.require();
    try (ManagedKvCache c = cache("h2o:budget=32,recent=0.5")) {
      int vocab = model.config().vocabSize();
      float[] logits = new float[vocab];
      engine.prefill(c, tokens, 0, PROMPT, 0, false, logits);
      assertThat(c.paged(0).size(0)).isEqualTo(32);
      for (int i = 0; i < DECODE; i++) {
        engine.decode(c, tokens[PROMPT + i], PROMPT + i, logits);
        for (int l = 0; l < c.layerCount(); l++) {
          for (int g = 0; g < c.paged(l).kvHeads(); g++) {
            int[] pos = c.paged(l).positions(g);
            assertThat(pos).hasSize(32);
            // the 16 most recent tokens are always kept, in order
            for (int k = 0; k < 16; k++) {
              assertThat(pos[31 - k]).isEqualTo(PROMPT + i - k);
            }
            // positions stay original and increasing
            for (int k = 1; k < pos.length; k++) {
              assertThat(pos[k]).isGreaterThan(pos[k - 1]);
            }
          }
        }
      }
    }
  }

  /** Slots the blocks of every head hold, written or not, and their bytes summed. */
  static void assertBytesAreTheBlocksAndSlotsAreTheTokens(ManagedKvCache c, boolean noSlack) {
    long total = 0;
    for (int l = 0; l < c.layerCount(); l++) {
      PagedLayerKv layer = c.paged(l);
      for (int g = 0; g < layer.kvHeads(); g++) {
        long sum = 0;
        int slots = 0;
        for (KvBlock b : layer.head(g).blocks()) {
          sum += b.bytes();
          slots += b.capacity();
        }
        assertThat(layer.bytes(g)).isEqualTo(sum);
        if (noSlack) {
          assertThat(slots).as("slots of layer %d head %d", l, g).isEqualTo(layer.size(g));
        }
        total += sum;
      }
    }
    assertThat(c.bytes()).isEqualTo(total);
  }

  @ParameterizedTest
  @ValueSource(
      strings = {
        "streaming:budget=40 + f16",
        "h2o:budget=40 + f16",
        "tova:budget=40 + f16",
        "snapkv:budget=40,window=16 + f16",
        "pyramidkv:budget=40,window=16 + f16",
        "adakv:budget=40,window=16 + f16",
        "h2o:budget=40 + kivi:kbits=2,vbits=2,group=32,residual=32"
      })
  void evictingCachesHoldTheirTokensWithoutSlackAndCountEveryBlock(String spec) {
    SharedData.require();
    BlockPool pool = new BlockPool();
    boolean decodeEvicts = !spec.contains("snapkv") && !spec.contains("kv:");
    boolean perToken = !spec.contains("kivi");
    try (ManagedKvCache c = KvSpecs.caches(KvSpec.parse(spec), pool, model.config()).create()) {
      int vocab = model.config().vocabSize();
      float[] logits = new float[vocab];
      engine.prefill(c, tokens, 0, PROMPT, 0, false, logits);
      // the prefill's eviction repacked every head and cut its last block to its tokens
      assertBytesAreTheBlocksAndSlotsAreTheTokens(c, perToken);
      for (int i = 0; i < DECODE; i++) {
        engine.decode(c, tokens[PROMPT + i], PROMPT + i, logits);
        assertBytesAreTheBlocksAndSlotsAreTheTokens(c, perToken && decodeEvicts);
        assertThat(pool.usedBytes()).isEqualTo(c.bytes());
      }
    }
    assertThat(pool.usedBytes()).isZero();
  }

  @Test
  void tovaKeepsTheSameTokensInEveryHeadOfALayer() {
    SharedData.require();
    try (ManagedKvCache c = cache("tova:budget=40")) {
      run(c);
      for (int l = 0; l < c.layerCount(); l++) {
        PagedLayerKv layer = c.paged(l);
        int[] first = layer.positions(0);
        assertThat(first).hasSize(40);
        for (int g = 1; g < layer.kvHeads(); g++) {
          assertThat(layer.positions(g)).containsExactly(first);
        }
      }
    }
  }

  @Test
  void snapKvKeepsTheWindowAndExactlyTheBudgetPerHead() {
    SharedData.require();
    try (ManagedKvCache c = cache("snapkv:budget=40,window=16")) {
      int vocab = model.config().vocabSize();
      engine.prefill(c, tokens, 0, PROMPT, 0, false, new float[vocab]);
      for (int l = 0; l < c.layerCount(); l++) {
        for (int g = 0; g < c.paged(l).kvHeads(); g++) {
          int[] pos = c.paged(l).positions(g);
          assertThat(pos).hasSize(40);
          for (int k = 0; k < 16; k++) {
            assertThat(pos[40 - 16 + k]).isEqualTo(PROMPT - 16 + k);
          }
        }
      }
    }
  }

  @Test
  void pyramidBudgetsDecreaseWithDepthAndAdaKvGivesHeadsDifferentMemory() {
    SharedData.require();
    try (ManagedKvCache c = cache("pyramidkv:budget=24,window=8,beta=4")) {
      engine.prefill(c, tokens, 0, PROMPT, 0, false, new float[model.config().vocabSize()]);
      int total = 0;
      for (int l = 0; l < c.layerCount(); l++) {
        total += c.paged(l).size(0);
        if (l > 0) {
          assertThat(c.paged(l).size(0)).isLessThanOrEqualTo(c.paged(l - 1).size(0));
        }
      }
      assertThat(c.paged(0).size(0)).isGreaterThan(c.paged(c.layerCount() - 1).size(0));
      assertThat(Math.abs(total - 24 * c.layerCount())).isLessThanOrEqualTo(c.layerCount());
    }
    try (ManagedKvCache c = cache("adakv:budget=24,window=8,alpha=0.2")) {
      engine.prefill(c, tokens, 0, PROMPT, 0, false, new float[model.config().vocabSize()]);
      boolean differ = false;
      for (int l = 0; l < c.layerCount(); l++) {
        PagedLayerKv layer = c.paged(l);
        int sum = 0;
        for (int g = 0; g < layer.kvHeads(); g++) {
          sum += layer.size(g) - 8;
          assertThat(layer.size(g)).isGreaterThanOrEqualTo(8 + (int) Math.floor(0.2 * 16));
          differ |= layer.size(g) != layer.size(0);
          // memory follows the head's own length: the repacked blocks hold its tokens' rows only
          long rows = 0;
          for (KvBlock b : layer.head(g).blocks()) {
            rows += b.bytes() - b.bookkeepingBytes();
          }
          assertThat(rows).isEqualTo(layer.size(g) * 2L * 4 * layer.headDim());
        }
        assertThat(Math.abs(sum - 16 * layer.kvHeads())).isLessThanOrEqualTo(layer.kvHeads());
      }
      assertThat(differ).as("some heads keep different numbers of tokens").isTrue();
    }
  }

  @Test
  void closingAllSequencesReturnsThePoolToItsBaseline() {
    SharedData.require();
    BlockPool pool = new BlockPool();
    KvCaches caches = KvSpecs.caches(KvSpec.parse("h2o:budget=32 + q8_0"), pool, model.config());
    long before = pool.usedBytes();
    KvCache a = caches.create();
    KvCache b = caches.create();
    run((ManagedKvCache) a);
    run((ManagedKvCache) b);
    assertThat(pool.usedBytes()).isEqualTo(a.bytes() + b.bytes()).isGreaterThan(before);
    a.close();
    b.close();
    assertThat(pool.usedBytes()).isEqualTo(before);
  }
}
