package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.ContextReplay;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.LayerKv;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.policy.KvzipPolicy;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.model.Model;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * KVzip on a real (tiny) model: the repeat passes leave the cache as it was, plain scores are
 * probabilities and sinks score 1, the eviction keeps exactly the budget, the highest scores and
 * the sinks, and the compressed cache does not depend on what is asked after it.
 */
class KvzipMethodTest {
  static final int PROMPT = 64;
  static Model model;
  static Engine engine;
  static int[] tokens;

  @BeforeAll
  static void load() {
    SharedData.require();
    model = Model.load(SharedData.model("llama-spm-f32.gguf"));
    engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()));
    SplittableRandom r = new SplittableRandom(3);
    tokens = new int[PROMPT + 8];
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

  static ManagedKvCache prefilled(String spec) {
    ManagedKvCache c = cache(spec);
    engine.prefill(c, tokens, 0, PROMPT, 0, false, new float[model.config().vocabSize()]);
    return c;
  }

  static KvzipPolicy policy(int budget, int chunk) {
    boolean[] all = new boolean[model.config().layers()];
    Arrays.fill(all, true);
    return new KvzipPolicy(
        all, new KvzipPolicy.Settings(Budget.parse("" + budget), chunk, 8, 4, false), 0);
  }

  /** The scores {@code policy} gives the prompt of the (uncompressed) {@code cache}. */
  static float[][][] scores(ManagedKvCache cache, KvzipPolicy policy) {
    float[][][][] out = new float[1][][][];
    engine.replayPrompt(
        new Probe(cache, r -> out[0] = policy.score(cache, r)), tokens, 0, PROMPT, 0);
    return out[0];
  }

  @Test
  void repeatPassesLeaveTheCacheByteIdenticalAndScoresAreProbabilities() {
    try (ManagedKvCache full = prefilled("full")) {
      List<float[]> before = snapshot(full, Integer.MAX_VALUE);
      long bytes = full.bytes();
      float[][][] s = scores(full, policy(8, 20)); // chunks of 20, 20, 20 and 4 tokens
      assertThat(full.bytes()).isEqualTo(bytes);
      assertThat(full.tokens()).isEqualTo(PROMPT);
      List<float[]> after = snapshot(full, Integer.MAX_VALUE);
      assertThat(after).hasSameSizeAs(before);
      for (int i = 0; i < before.size(); i++) {
        assertThat(after.get(i)).as("entry list %d", i).isEqualTo(before.get(i));
      }
      int positive = 0;
      for (float[][] layer : s) {
        for (float[] head : layer) {
          assertThat(head).hasSize(PROMPT);
          for (int t = 0; t < PROMPT; t++) {
            assertThat(head[t]).isBetween(0f, 1f);
            positive += head[t] > 0 ? 1 : 0;
          }
          assertThat(Arrays.copyOf(head, 4)).containsOnly(1f);
        }
      }
      // every chunk was repeated: (nearly) every token got some probability
      assertThat(positive).isGreaterThan(s.length * s[0].length * (PROMPT - 4));
    }
  }

  @Test
  void evictionKeepsTheBudgetTheSinksAndTheHighestScores() {
    for (String extra : new String[] {"", ",layerwise=true"}) {
      float[][][] s;
      try (ManagedKvCache full = prefilled("full")) {
        s = scores(full, policy(8, 20));
      }
      try (ManagedKvCache c = prefilled("kvzip:budget=8,chunk=20" + extra)) {
        int layers = c.layerCount();
        int heads = c.paged(0).kvHeads();
        int kept = 0;
        float lowestKept = Float.POSITIVE_INFINITY;
        float highestEvicted = Float.NEGATIVE_INFINITY;
        for (int l = 0; l < layers; l++) {
          int layerKept = 0;
          for (int g = 0; g < heads; g++) {
            int[] pos = c.paged(l).positions(g);
            assertThat(pos).as("layer %d head %d", l, g).contains(0, 1, 2, 3);
            layerKept += pos.length;
            boolean[] in = new boolean[PROMPT];
            for (int p : pos) {
              in[p] = true;
            }
            for (int t = 4; t < PROMPT; t++) {
              if (in[t]) {
                lowestKept = Math.min(lowestKept, s[l][g][t]);
              } else {
                highestEvicted = Math.max(highestEvicted, s[l][g][t]);
              }
            }
          }
          if (!extra.isEmpty()) {
            assertThat(layerKept).as("layer %d", l).isEqualTo(8 * heads);
          }
          kept += layerKept;
        }
        assertThat(kept).isEqualTo(8 * layers * heads);
        if (extra.isEmpty()) { // pooled: one threshold over all layers and heads
          assertThat(lowestKept).isGreaterThanOrEqualTo(highestEvicted);
        }
      }
    }
  }

  @Test
  void twoQuestionsAfterCompressionSeeTheSameCache() {
    try (ManagedKvCache a = prefilled("kvzip:budget=12,chunk=32");
        ManagedKvCache b = prefilled("kvzip:budget=12,chunk=32")) {
      List<float[]> compressed = snapshot(a, PROMPT);
      assertThat(sameEntries(snapshot(b, PROMPT), compressed)).isTrue();
      float[] logits = new float[model.config().vocabSize()];
      for (int i = 0; i < 8; i++) { // two different questions
        engine.decode(a, tokens[PROMPT + i], PROMPT + i, logits);
        engine.decode(b, (tokens[PROMPT + 7 - i] + 1) % logits.length, PROMPT + i, logits);
      }
      assertThat(sameEntries(snapshot(a, PROMPT), compressed)).isTrue();
      assertThat(sameEntries(snapshot(b, PROMPT), compressed)).isTrue();
      assertThat(sameEntries(snapshot(a, Integer.MAX_VALUE), snapshot(b, Integer.MAX_VALUE)))
          .isFalse();
    }
  }

  static boolean sameEntries(List<float[]> x, List<float[]> y) {
    if (x.size() != y.size()) {
      return false;
    }
    for (int i = 0; i < x.size(); i++) {
      if (!Arrays.equals(x.get(i), y.get(i))) {
        return false;
      }
    }
    return true;
  }

  /**
   * Per (layer, KV head): the positions, keys and values of the entries at positions below {@code
   * below}, keys and values compared as their bits.
   */
  static List<float[]> snapshot(ManagedKvCache c, int below) {
    List<float[]> out = new ArrayList<>();
    int dim = c.paged(0).headDim();
    for (int l = 0; l < c.layerCount(); l++) {
      for (int g = 0; g < c.paged(l).kvHeads(); g++) {
        HeadStore h = c.paged(l).head(g);
        int n = h.size();
        int[] pos = new int[n];
        h.positions(pos);
        float[] ks = new float[n * dim];
        float[] vs = new float[n * dim];
        h.readKeys(ks);
        h.readValues(vs);
        int m = 0;
        while (m < n && pos[m] < below) {
          m++;
        }
        float[] p = new float[m];
        for (int i = 0; i < m; i++) {
          p[i] = pos[i];
        }
        out.add(p);
        out.add(Arrays.copyOf(ks, m * dim));
        out.add(Arrays.copyOf(vs, m * dim));
      }
    }
    return out;
  }

  /** A cache that asks for the replay and hands it to {@code onReplay}; layers are the target's. */
  record Probe(ManagedKvCache target, java.util.function.Consumer<ContextReplay> onReplay)
      implements KvCache {
    @Override
    public int layerCount() {
      return target.layerCount();
    }

    @Override
    public LayerKv layer(int layer) {
      return target.layer(layer);
    }

    @Override
    public long bytes() {
      return target.bytes();
    }

    @Override
    public boolean wantsReplay() {
      return true;
    }

    @Override
    public void replay(ContextReplay replay) {
      onReplay.accept(replay);
    }

    @Override
    public void close() {}
  }
}
