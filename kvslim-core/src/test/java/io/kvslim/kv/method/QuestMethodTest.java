package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import io.kvslim.SharedData;
import io.kvslim.SpmEngineTest;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.policy.QuestPages;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.kv.store.LayerStore;
import java.util.Arrays;
import java.util.BitSet;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class QuestMethodTest extends SpmEngineTest {

  /** One KV head of {@code n} random tokens (positions 0..n−1) in {@code format}. */
  static PagedLayerKv layer(int kvHeads, int dim, int n, KvCacheFormat format, long seed) {
    PagedLayerKv layer = new PagedLayerKv(new LayerStore(new BlockPool(), kvHeads, dim, format));
    SplittableRandom r = new SplittableRandom(seed);
    float[] k = new float[n * kvHeads * dim];
    float[] v = new float[n * kvHeads * dim];
    for (int i = 0; i < k.length; i++) {
      k[i] = (float) (r.nextGaussian() * (1 + i % 7));
      v[i] = (float) r.nextGaussian();
    }
    int[] pos = new int[n];
    Arrays.setAll(pos, i -> i);
    layer.append(n, pos, k, v);
    layer.flushResidual();
    return layer;
  }

  static float dot(float[] q, int qOff, float[] k, int kOff, int dim) {
    float s = 0f;
    for (int j = 0; j < dim; j++) {
      s += q[qOff + j] * k[kOff + j];
    }
    return s;
  }

  @Test
  void boundsHoldForEveryKeyOfTenThousandPagesAndAreTheExactMinAndMax() {
    int dim = 32; // q8_0 blocks are 32 wide
    int page = 8;
    int n = 10_000 * page;
    for (KvCacheFormat format :
        List.of(KvCacheFormat.of(KvFormats.F32), KvCacheFormat.of(KvFormats.byName("q8_0")))) {
      PagedLayerKv layer = layer(1, dim, n, format, 7);
      HeadStore head = layer.head(0);
      QuestPages pages = new QuestPages(page, dim);
      assertThat(pages.update(head)).isEqualTo(n);
      assertThat(pages.pages()).isEqualTo(10_000);
      float[] keys = new float[n * dim]; // as attention reads them (dequantized for q8_0)
      head.readKeys(keys);
      SplittableRandom r = new SplittableRandom(3);
      float[] q = new float[dim];
      float[] u = new float[pages.pages()];
      for (int trial = 0; trial < 4; trial++) {
        for (int j = 0; j < dim; j++) {
          q[j] = (float) r.nextGaussian();
        }
        pages.upperBounds(q, 0, pages.pages(), u);
        for (int p = 0; p < pages.pages(); p++) {
          for (int t = p * page; t < (p + 1) * page; t++) {
            float s = dot(q, 0, keys, t * dim, dim);
            assertThat(u[p]).as("%s page %d token %d", format, p, t).isGreaterThanOrEqualTo(s);
          }
        }
      }
      for (int p = 0; p < 50; p++) {
        for (int j = 0; j < dim; j++) {
          float hi = Float.NEGATIVE_INFINITY;
          float lo = Float.POSITIVE_INFINITY;
          for (int t = p * page; t < (p + 1) * page; t++) {
            hi = Math.max(hi, keys[t * dim + j]);
            lo = Math.min(lo, keys[t * dim + j]);
          }
          assertThat(pages.max(p, j)).isEqualTo(hi);
          assertThat(pages.min(p, j)).isEqualTo(lo);
        }
      }
    }
  }

  @Test
  void boundsFollowAppendsOneAtATimeAndAreRebuiltAfterAnEviction() {
    int dim = 8;
    int page = 4;
    PagedLayerKv layer = layer(1, dim, 37, KvCacheFormat.of(KvFormats.F32), 11);
    QuestPages pages = new QuestPages(page, dim);
    pages.update(layer.head(0));
    SplittableRandom r = new SplittableRandom(5);
    for (int step = 0; step < 30; step++) {
      float[] k = new float[dim];
      float[] v = new float[dim];
      for (int j = 0; j < dim; j++) {
        k[j] = (float) r.nextGaussian() * 3;
        v[j] = (float) r.nextGaussian();
      }
      layer.append(1, new int[] {37 + step}, k, v);
      assertThat(pages.update(layer.head(0))).as("only the new token is read").isEqualTo(1);
      if (step == 12) {
        BitSet evict = new BitSet();
        evict.set(9);
        evict.set(30);
        layer.evict(0, evict);
        assertThat(pages.update(layer.head(0))).as("rebuilt from page 2 on").isEqualTo(50 - 2 - 8);
      }
      QuestPages fresh = new QuestPages(page, dim);
      fresh.update(layer.head(0));
      assertThat(pages.pages()).isEqualTo(fresh.pages());
      for (int p = 0; p < fresh.pages(); p++) {
        for (int j = 0; j < dim; j++) {
          assertThat(pages.max(p, j)).isEqualTo(fresh.max(p, j));
          assertThat(pages.min(p, j)).isEqualTo(fresh.min(p, j));
        }
      }
    }
  }

  @Test
  void selectionIsTheBruteForceTopKOfTheBoundPlusTheLastPage() {
    int dim = 16;
    int page = 16;
    int group = 3;
    SplittableRandom r = new SplittableRandom(9);
    for (int trial = 0; trial < 40; trial++) {
      int n = 40 + r.nextInt(600);
      int k = 1 + r.nextInt(12);
      boolean union = trial % 2 == 1;
      PagedLayerKv layer = layer(1, dim, n, KvCacheFormat.of(KvFormats.F32), trial);
      QuestPages pages = new QuestPages(page, dim);
      pages.update(layer.head(0));
      float[] keys = new float[n * dim];
      layer.head(0).readKeys(keys);
      int off = 5;
      float[] q = new float[off + group * dim];
      for (int i = 0; i < q.length; i++) {
        q[i] = (float) r.nextGaussian();
      }
      BitSet got = new BitSet();
      boolean selects = pages.select(q, off, 0, group, k, union, got);
      int count = (n + page - 1) / page;
      assertThat(selects).isEqualTo(count > k);
      if (!selects) {
        assertThat(got.isEmpty()).isTrue();
        continue;
      }
      // brute force: U by its definition, per head, sorted by (−U, page)
      BitSet want = new BitSet();
      float[][] u = new float[group][count - 1];
      for (int h = 0; h < group; h++) {
        for (int p = 0; p < count - 1; p++) {
          float s = 0f;
          for (int j = 0; j < dim; j++) {
            float hi = Float.NEGATIVE_INFINITY;
            float lo = Float.POSITIVE_INFINITY;
            for (int t = p * page; t < (p + 1) * page; t++) {
              hi = Math.max(hi, keys[t * dim + j]);
              lo = Math.min(lo, keys[t * dim + j]);
            }
            float qj = q[off + h * dim + j];
            s += Math.max(qj * hi, qj * lo);
          }
          u[h][p] = s;
        }
      }
      if (union) {
        for (int h = 0; h < group; h++) {
          topInto(u[h], k - 1, want);
        }
      } else {
        float[] m = new float[count - 1];
        Arrays.fill(m, Float.NEGATIVE_INFINITY);
        for (int h = 0; h < group; h++) {
          for (int p = 0; p < count - 1; p++) {
            m[p] = Math.max(m[p], u[h][p]);
          }
        }
        topInto(m, k - 1, want);
        assertThat(got.cardinality()).isEqualTo(k);
      }
      want.set(count - 1);
      assertThat(got).as("trial %d (n %d, K %d, union %s)", trial, n, k, union).isEqualTo(want);
      int[] ranges = new int[2 * count];
      int pairs = pages.ranges(got, n, ranges);
      BitSet tokens = new BitSet();
      pages.tokens(got, n, tokens);
      BitSet fromRanges = new BitSet();
      for (int i = 0; i < pairs; i++) {
        assertThat(ranges[2 * i]).isLessThan(ranges[2 * i + 1]);
        fromRanges.set(ranges[2 * i], ranges[2 * i + 1]);
      }
      assertThat(fromRanges).isEqualTo(tokens);
      assertThat(tokens.get(n - 1)).isTrue();
    }
  }

  /** Sets the indices of the {@code k} largest values, ties to the earlier index, by sorting. */
  static void topInto(float[] u, int k, BitSet out) {
    Integer[] idx = new Integer[u.length];
    Arrays.setAll(idx, i -> i);
    Arrays.sort(idx, (a, b) -> u[a] != u[b] ? Float.compare(u[b], u[a]) : Integer.compare(a, b));
    for (int i = 0; i < Math.min(k, u.length); i++) {
      out.set(idx[i]);
    }
  }

  @Test
  void aRestrictedCallAttendsOverTheSelectedTokensOnlyAndOnlyOnce() {
    int dim = 16;
    int kvHeads = 2;
    int heads = 4;
    int n = 300;
    KvCacheFormat format = KvCacheFormat.of(KvFormats.F32);
    PagedLayerKv full = layer(kvHeads, dim, n, format, 21);
    SplittableRandom r = new SplittableRandom(4);
    float[] q = new float[heads * dim];
    for (int i = 0; i < q.length; i++) {
      q[i] = (float) r.nextGaussian();
    }
    int[] pos = {n - 1};
    float[] plain = new float[heads * dim];
    full.attend(1, pos, heads, q, 0.25f, plain, null);
    // every token selected: bit for bit the plain call
    BitSet all = new BitSet();
    all.set(0, n);
    float[] got = new float[heads * dim];
    full.restrictNextAttention(0, all);
    full.restrictNextAttention(1, all);
    full.attend(1, pos, heads, q, 0.25f, got, null);
    assertThat(got).isEqualTo(plain);
    // pages 0, 5, 6 and the last of head 0: the same as a cache holding only those tokens
    BitSet some = new BitSet();
    some.set(0, 16);
    some.set(80, 112);
    some.set(288, 300);
    full.restrictNextAttention(0, some);
    full.attend(1, pos, heads, q, 0.25f, got, null);
    float[] keys = new float[n * dim];
    float[] values = new float[n * dim];
    full.head(0).readKeys(keys);
    full.head(0).readValues(values);
    int m = some.cardinality();
    float[] sk = new float[m * dim];
    float[] sv = new float[m * dim];
    int[] sp = new int[m];
    int i = 0;
    for (int t = some.nextSetBit(0); t >= 0; t = some.nextSetBit(t + 1), i++) {
      System.arraycopy(keys, t * dim, sk, i * dim, dim);
      System.arraycopy(values, t * dim, sv, i * dim, dim);
      sp[i] = t;
    }
    PagedLayerKv subset = new PagedLayerKv(new LayerStore(new BlockPool(), 1, dim, format));
    subset.append(m, sp, sk, sv);
    float[] want = new float[2 * dim];
    subset.attend(1, pos, 2, Arrays.copyOf(q, 2 * dim), 0.25f, want, null);
    for (int j = 0; j < 2 * dim; j++) {
      assertThat(got[j]).isCloseTo(want[j], within(1e-5f));
    }
    assertThat(Arrays.copyOfRange(got, 0, 2 * dim))
        .isNotEqualTo(Arrays.copyOfRange(plain, 0, 2 * dim));
    // head 1 was not restricted
    assertThat(Arrays.copyOfRange(got, 2 * dim, 4 * dim))
        .isEqualTo(Arrays.copyOfRange(plain, 2 * dim, 4 * dim));
    // the restriction lasted one call
    full.attend(1, pos, heads, q, 0.25f, got, null);
    assertThat(got).isEqualTo(plain);
  }

  ManagedKvCache cache(QuestMethod.Policy policy) {
    var c = model.config();
    KvCacheFormat[] formats = new KvCacheFormat[c.layers()];
    Arrays.fill(formats, KvCacheFormat.of(KvFormats.F32));
    return new ManagedKvCache(new BlockPool(), c.kvHeads(), c.headDim(), formats, List.of(policy));
  }

  QuestMethod.Policy policy(String spec) {
    MethodCall call = KvSpec.parse(spec).rules().get(0).calls().get(0);
    boolean[] layers = new boolean[model.config().layers()];
    Arrays.fill(layers, true);
    var c = model.config();
    return (QuestMethod.Policy)
        new QuestMethod()
            .policy(call, new PolicyContext(layers, c.kvHeads(), c.headDim(), 8.0 * c.headDim()));
  }

  @Test
  void decodeReadsKPagesPerSelectingHeadAndEqualsTheFullCacheWhenTheBudgetCoversIt() {
    SharedData.require();
    var c = model.config();
    int n = 201;
    int vocab = c.vocabSize();
    SplittableRandom r = new SplittableRandom(2);
    int[] toks = new int[n + 4];
    for (int i = 0; i < toks.length; i++) {
      toks[i] = 3 + r.nextInt(vocab - 3);
    }
    QuestMethod.Policy small = policy("quest:token_budget=64,page_size=16,skip_layers=1");
    QuestMethod.Policy covering = policy("quest:token_budget=" + (toks.length + 16));
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
      double perToken = 8.0 * c.headDim(); // F32 key and value
      for (int step = 0; step < 4; step++) {
        int held = n + step + 1;
        double before = small.bytesRead();
        long pagesBefore = small.pagesSelected();
        engine.decode(full, toks[n + step], n + step, lf);
        engine.decode(s, toks[n + step], n + step, ls);
        engine.decode(cov, toks[n + step], n + step, lc);
        assertThat(lc).as("a budget covering the sequence").isEqualTo(lf);
        differs |= !Arrays.equals(ls, lf);
        // layer 0 reads every token; the others 3 full pages and the last one
        int last = held - (held - 1) / 16 * 16;
        double want = c.kvHeads() * perToken * (held + (c.layers() - 1) * (3 * 16 + last));
        assertThat(small.bytesRead() - before).isCloseTo(want, within(1e-6));
        assertThat(small.pagesSelected() - pagesBefore)
            .isEqualTo((long) (c.layers() - 1) * c.kvHeads() * 4);
        assertThat(s.bytes()).as("nothing is evicted").isEqualTo(full.bytes());
      }
      assertThat(small.decodeSteps()).isEqualTo(4);
      assertThat(covering.bytesReadPerStep()).isGreaterThan(small.bytesReadPerStep());
    }
    assertThat(differs).as("a budget of 4 pages out of 13 changes the logits").isTrue();
  }
}
