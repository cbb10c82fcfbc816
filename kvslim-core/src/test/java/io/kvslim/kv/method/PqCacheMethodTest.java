package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.SharedData;
import io.kvslim.SpmEngineTest;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.policy.PqIndex;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.KvCacheFormat;
import java.util.Arrays;
import java.util.BitSet;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class PqCacheMethodTest extends SpmEngineTest {

  static float[] gaussian(int n, long seed) {
    SplittableRandom r = new SplittableRandom(seed);
    float[] x = new float[n];
    for (int i = 0; i < n; i++) {
      x[i] = (float) r.nextGaussian();
    }
    return x;
  }

  /** METHODS.md H5's test: with enough centroids for every distinct sub-vector, ŝ is q·k. */
  @Test
  void withACentroidPerDistinctSubvectorTheApproximateScoreIsExact() {
    int dim = 8;
    int subspaces = 2;
    // 100 keys made of 5 distinct halves each side: 2^3 = 8 centroids ≥ 5 distinct sub-vectors
    float[] left = gaussian(5 * 4, 1);
    float[] right = gaussian(5 * 4, 2);
    int n = 100;
    float[] keys = new float[n * dim];
    SplittableRandom r = new SplittableRandom(3);
    for (int i = 0; i < n; i++) {
      System.arraycopy(left, r.nextInt(5) * 4, keys, i * dim, 4);
      System.arraycopy(right, r.nextInt(5) * 4, keys, i * dim + 4, 4);
    }
    PqIndex index = PqIndex.train(keys, 0, n, dim, subspaces, 3, 50, 7);
    assertThat(index.coded()).isEqualTo(n);
    float[] q = gaussian(dim, 4);
    float[] lookup = new float[index.lookupLength()];
    float[] approx = new float[n];
    index.scores(q, 0, n, lookup, approx);
    for (int i = 0; i < n; i++) {
      float exactLeft = 0f;
      float exactRight = 0f;
      for (int j = 0; j < 4; j++) {
        exactLeft += q[j] * keys[i * dim + j];
        exactRight += q[4 + j] * keys[i * dim + 4 + j];
      }
      assertThat(approx[i]).as("token %d", i).isEqualTo(exactLeft + exactRight);
    }
  }

  @Test
  void kmeansReducesTheQuantizationErrorAndCodesAreTheNearestCentroids() {
    int dim = 16;
    int n = 600;
    float[] keys = gaussian(n * dim, 9);
    PqIndex one = PqIndex.train(keys, 0, n, dim, 2, 4, 1, 7);
    PqIndex many = PqIndex.train(keys, 0, n, dim, 2, 4, 30, 7);
    assertThat(error(many, keys, n, dim)).isLessThan(error(one, keys, n, dim));
    for (int t = 0; t < n; t += 37) {
      for (int s = 0; s < 2; s++) {
        int code = many.code(t, s);
        double best = dist(many, keys, t, dim, s, code);
        for (int c = 0; c < 16; c++) {
          assertThat(dist(many, keys, t, dim, s, c)).isGreaterThanOrEqualTo(best);
        }
      }
    }
    // deterministic for a seed; no index with no more keys than centroids
    PqIndex again = PqIndex.train(keys, 0, n, dim, 2, 4, 30, 7);
    for (int t = 0; t < n; t++) {
      assertThat(again.code(t, 0)).isEqualTo(many.code(t, 0));
      assertThat(again.code(t, 1)).isEqualTo(many.code(t, 1));
    }
    assertThat(PqIndex.train(keys, 0, 16, dim, 2, 4, 30, 7)).isNull();
    assertThat(many.bytes()).isEqualTo((600L * 2 * 4 + 7) / 8 + 2L * 2 * 16 * 8);
  }

  static double dist(PqIndex index, float[] keys, int t, int dim, int s, int c) {
    int sub = dim / 2;
    double d = 0;
    for (int j = 0; j < sub; j++) {
      double e = keys[t * dim + s * sub + j] - index.centroid(s, c, j);
      d += e * e;
    }
    return d;
  }

  static double error(PqIndex index, float[] keys, int n, int dim) {
    double e = 0;
    for (int t = 0; t < n; t++) {
      e += dist(index, keys, t, dim, 0, index.code(t, 0));
      e += dist(index, keys, t, dim, 1, index.code(t, 1));
    }
    return e;
  }

  @Test
  void badKnobsAreOneSentence() {
    assertThatThrownBy(() -> KvSpec.parse("pqcache:budget=1MiB")).hasMessageContaining("not bytes");
    assertThatThrownBy(() -> KvSpec.parse("pqcache:bits=0")).hasMessageContaining("bits");
  }

  @Test
  void anLfuCacheServesRepeatedBlocksAndKeepsTheMostFrequent() {
    PqCacheMethod.LfuBlocks lfu = new PqCacheMethod.LfuBlocks(2, 4);
    BitSet step = new BitSet();
    step.set(0, 3); // block 0: 3 tokens
    step.set(8); // block 2: 1 token
    step.set(12, 14); // block 3: 2 tokens
    assertThat(lfu.serve(step)).isZero();
    assertThat(step.cardinality()).isEqualTo(6); // every token fetched
    // blocks 0 and 3 were cached (most tokens first); block 2 was not
    step.clear();
    step.set(1);
    step.set(9);
    step.set(13);
    assertThat(lfu.serve(step)).isEqualTo(2);
    assertThat(step.stream().toArray()).containsExactly(9);
  }

  PqCacheMethod.Policy policy(String spec) {
    var c = model.config();
    boolean[] layers = new boolean[c.layers()];
    Arrays.fill(layers, true);
    MethodCall call = KvSpec.parse(spec).rules().get(0).calls().get(0);
    return (PqCacheMethod.Policy)
        new PqCacheMethod()
            .policy(call, new PolicyContext(layers, c.kvHeads(), c.headDim(), 8.0 * c.headDim()));
  }

  ManagedKvCache cache(PqCacheMethod.Policy policy) {
    var c = model.config();
    KvCacheFormat[] formats = new KvCacheFormat[c.layers()];
    Arrays.fill(formats, KvCacheFormat.of(KvFormats.F32));
    return new ManagedKvCache(new BlockPool(), c.kvHeads(), c.headDim(), formats, List.of(policy));
  }

  @Test
  void decodeFetchesTheTopKAndEqualsTheFullCacheWhenTheBudgetCoversIt() {
    SharedData.require();
    var c = model.config();
    int n = 200;
    int vocab = c.vocabSize();
    SplittableRandom r = new SplittableRandom(2);
    int[] toks = new int[n + 6];
    for (int i = 0; i < toks.length; i++) {
      toks[i] = 3 + r.nextInt(vocab - 3);
    }
    PqCacheMethod.Policy small = policy("pqcache:budget=40,sink=4,bits=4");
    PqCacheMethod.Policy covering = policy("pqcache:budget=" + toks.length);
    float[] lf = new float[vocab];
    float[] ls = new float[vocab];
    float[] lc = new float[vocab];
    boolean differs = false;
    try (ManagedKvCache full =
            KvSpecs.caches(KvSpec.parse("full"), new BlockPool(), model.config()).create();
        ManagedKvCache s = cache(small);
        ManagedKvCache cov = cache(covering)) {
      engine.prefill(full, toks, 0, n, 0, false, lf);
      engine.prefill(s, toks, 0, n, 0, false, ls);
      engine.prefill(cov, toks, 0, n, 0, false, lc);
      assertThat(ls).isEqualTo(lf); // the prefill attends over everything
      for (int step = 0; step < 6; step++) {
        long before = small.fetchedTokens();
        engine.decode(full, toks[n + step], n + step, lf);
        engine.decode(s, toks[n + step], n + step, ls);
        engine.decode(cov, toks[n + step], n + step, lc);
        assertThat(lc).as("a budget covering the sequence").isEqualTo(lf);
        differs |= !Arrays.equals(ls, lf);
        // every layer and KV head fetches its top-k: int(40 · 0.5) = 20 tokens
        assertThat(small.fetchedTokens() - before).isEqualTo(20L * c.layers() * c.kvHeads());
        assertThat(s.bytes()).as("nothing is evicted").isEqualTo(full.bytes());
      }
      double perToken = 8.0 * c.headDim(); // F32 key and value
      assertThat(small.bytesReadPerStep()).isEqualTo(20.0 * c.layers() * c.kvHeads() * perToken);
      assertThat(covering.bytesRead()).as("nothing to fetch: every token is hot").isZero();
      assertThat(small.indexBytes()).isPositive();
    }
    assertThat(differs).as("20 of ~180 candidates change the logits").isTrue();
  }
}
