package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.format.QaqFormat;
import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvBlock;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.model.Model;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * QAQ's policy decides as it did before its conversion was made cheaper (the outliers selected
 * without sorting the row, the window's arrays reused): a copy of the earlier policy ({@link
 * OldPolicy}, {@link OldWindow}: the row sorted for each inlier range, a new array per attention
 * row) runs beside {@link QaqMethod.Policy} on the bundled model, and every block's key and value
 * bit widths, the bytes and every step's logits must be identical.
 */
class QaqPolicyReferenceTest {
  static Model model;
  static Engine engine;

  @BeforeAll
  static void load() {
    model = Model.load(Path.of("models/pycoder-6m-f16.gguf"));
    engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()));
  }

  @AfterAll
  static void close() {
    engine.close();
    model.close();
  }

  static ManagedKvCache cache(MethodCall c, KvPolicy p) {
    var cfg = model.config();
    KvCacheFormat[] formats = new KvCacheFormat[cfg.layers()];
    Arrays.fill(formats, c.method().format(c));
    return new ManagedKvCache(new BlockPool(), cfg.kvHeads(), cfg.headDim(), formats, List.of(p));
  }

  @Test
  void decisionsBytesAndLogitsAreThoseOfTheEarlierPolicy() {
    for (String spec :
        new String[] {"qaq", "qaq:n=3,outliers=0.1,bmin=1,block=8", "qaq:tk=10,tv=0.05,n=8"}) {
      MethodCall c = KvSpec.parse(spec).rules().get(0).calls().get(0);
      var cfg = model.config();
      boolean[] all = new boolean[cfg.layers()];
      Arrays.fill(all, true);
      PolicyContext ctx = new PolicyContext(all, cfg.kvHeads(), cfg.headDim(), 4.0 * cfg.headDim());
      QaqMethod.Policy now = (QaqMethod.Policy) c.method().policy(c, ctx);
      OldPolicy before = new OldPolicy(c, ctx);
      int n = 150;
      int[] toks = new int[n + 40];
      for (int i = 0; i < toks.length; i++) {
        toks[i] = 3 + (i * 37) % (cfg.vocabSize() - 3);
      }
      float[] la = new float[cfg.vocabSize()];
      float[] lb = new float[la.length];
      try (ManagedKvCache a = cache(c, now);
          ManagedKvCache b = cache(c, before)) {
        engine.prefill(a, toks, 0, n, 0, false, la);
        engine.prefill(b, toks, 0, n, 0, false, lb);
        assertThat(la).as(spec).isEqualTo(lb);
        for (int i = 0; i < 40; i++) {
          engine.decode(a, toks[n + i], n + i, la);
          engine.decode(b, toks[n + i], n + i, lb);
          assertThat(la).as("%s step %d", spec, i).isEqualTo(lb);
        }
        int qaqBlocks = 0;
        for (int l = 0; l < a.layerCount(); l++) {
          for (int g = 0; g < a.paged(l).kvHeads(); g++) {
            List<KvBlock> x = a.paged(l).head(g).blocks();
            List<KvBlock> y = b.paged(l).head(g).blocks();
            assertThat(x).hasSameSizeAs(y);
            for (int i = 0; i < x.size(); i++) {
              assertThat(x.get(i).keyFormat())
                  .as("%s layer %d block %d", spec, l, i)
                  .isEqualTo(y.get(i).keyFormat());
              assertThat(x.get(i).valueFormat()).isEqualTo(y.get(i).valueFormat());
              assertThat(x.get(i).bytes()).isEqualTo(y.get(i).bytes());
              qaqBlocks += x.get(i).keyFormat() instanceof QaqFormat ? 1 : 0;
            }
          }
        }
        assertThat(qaqBlocks).as(spec).isGreaterThan(0);
        assertThat(now.meanKeyBits()).isEqualTo(before.meanKeyBits());
        assertThat(now.meanValueBits()).isEqualTo(before.meanValueBits());
        assertThat(now.quantizedRows()).isEqualTo(before.quantizedRows()).isPositive();
      }
    }
  }

  /** {@link QaqWindow} as it was: a new array per row, the positions from the layer's copy. */
  static final class OldWindow {
    private final int n;
    private final int[] rowPosition;
    private final float[][] probs;
    private final int[][] tokens;
    private final int[] counts;
    private final float[] qmax;
    private final float[] top1; // per row: the largest probability, its token, the second largest
    private final int[] top1Token;
    private final float[] top2;
    private final boolean[] topsValid;
    private int size;

    OldWindow(int n) {
      this.n = n;
      this.rowPosition = new int[n];
      this.probs = new float[n][];
      this.tokens = new int[n][];
      this.counts = new int[n];
      this.qmax = new float[n];
      this.top1 = new float[n];
      this.top1Token = new int[n];
      this.top2 = new float[n];
      this.topsValid = new boolean[n];
    }

    /** Rows held (at most n). */
    int size() {
      return size;
    }

    /**
     * Adds query row {@code position}'s probabilities of one head (max-merged into the row of the
     * same position if another head of the group gave it already); the oldest row leaves when n are
     * held.
     */
    void add(int position, float[] p, int count, float q, PagedLayerKv layer, int kvHead) {
      for (int r = 0; r < size; r++) {
        if (rowPosition[r] == position && counts[r] == count) {
          float[] row = probs[r];
          for (int i = 0; i < count; i++) {
            row[i] = Math.max(row[i], p[i]);
          }
          qmax[r] = Math.max(qmax[r], q);
          topsValid[r] = false;
          return;
        }
      }
      int r = size;
      if (size == n) {
        r = 0;
        for (int i = 1; i < n; i++) {
          r = rowPosition[i] < rowPosition[r] ? i : r;
        }
        if (rowPosition[r] > position) {
          return; // older than every row held
        }
      } else {
        size++;
      }
      rowPosition[r] = position;
      probs[r] = Arrays.copyOf(p, count);
      int[] at = layer.positions(kvHead);
      tokens[r] = at.length == count ? at : Arrays.copyOf(at, Math.min(at.length, count));
      counts[r] = tokens[r].length;
      qmax[r] = q;
      topsValid[r] = false;
    }

    /** Position of the newest query row. */
    int newestPosition() {
      int m = Integer.MIN_VALUE;
      for (int r = 0; r < size; r++) {
        m = Math.max(m, rowPosition[r]);
      }
      return m;
    }

    /** Tokens the newest row attended (QAQ's sequence length). */
    int attended() {
      int newest = 0;
      for (int r = 1; r < size; r++) {
        newest = rowPosition[r] > rowPosition[newest] ? r : newest;
      }
      return Math.max(1, counts[newest]);
    }

    /** The largest {@code |q_c|·scale} of the rows. */
    float qmax() {
      float m = 0f;
      for (int r = 0; r < size; r++) {
        m = Math.max(m, qmax[r]);
      }
      return m;
    }

    private static int indexOf(int[] positions, int count, int position) {
      int i = Arrays.binarySearch(positions, 0, count, position);
      if (i >= 0 && positions[i] == position) {
        return i;
      }
      for (int j = 0; j < count; j++) { // positions out of order (cache-relative layers)
        if (positions[j] == position) {
          return j;
        }
      }
      return -1;
    }

    /** {@code a_i}: the largest probability a row gave the token at {@code position}. */
    float attention(int position) {
      float a = 0f;
      for (int r = 0; r < size; r++) {
        int i = indexOf(tokens[r], counts[r], position);
        if (i >= 0) {
          a = Math.max(a, probs[r][i]);
        }
      }
      return a;
    }

    /** {@code max_{j≠i} a_j}: the largest probability a row gave a token other than {@code i}. */
    float largestOtherThan(int position) {
      float m = 0f;
      for (int r = 0; r < size; r++) {
        if (!topsValid[r]) {
          tops(r);
        }
        m = Math.max(m, top1Token[r] != position ? top1[r] : top2[r]);
      }
      return m;
    }

    private void tops(int r) {
      float first = 0f;
      float second = 0f;
      int token = Integer.MIN_VALUE;
      float[] row = probs[r];
      for (int i = 0; i < counts[r]; i++) {
        float p = row[i];
        if (p > first) {
          second = first;
          first = p;
          token = tokens[r][i];
        } else if (p > second) {
          second = p;
        }
      }
      top1[r] = first;
      top1Token[r] = token;
      top2[r] = second;
      topsValid[r] = true;
    }
  }

  /** {@link QaqMethod.Policy} as it was: each inlier range from a sorted copy of the row. */
  static final class OldPolicy implements KvPolicy {
    private final boolean[] layers;
    private final int dim;
    private final double tk;
    private final double tv;
    private final int n;
    private final int bmin;
    private final int bmax;
    private final int low;
    private final int high;
    private final OldWindow[][] windows;
    private final int[] stepRows;
    private final int[][] stepPositions;
    private final float[][] stepQmax;
    private long keyBits;
    private long valueBits;
    private long rows;

    OldPolicy(MethodCall c, PolicyContext ctx) {
      this.layers = ctx.layers();
      this.dim = ctx.headDim();
      this.tk = c.number("tk");
      this.tv = c.number("tv");
      this.n = c.integer("n");
      this.bmin = c.integer("bmin");
      this.bmax = c.integer("bmax");
      this.low = QaqFormat.lowOutliers(c.number("outliers"), dim);
      this.high = QaqFormat.highOutliers(c.number("outliers"), dim);
      this.windows = new OldWindow[layers.length][ctx.kvHeads()];
      for (int l = 0; l < layers.length; l++) {
        for (int g = 0; g < ctx.kvHeads(); g++) {
          windows[l][g] = new OldWindow(n);
        }
      }
      this.stepRows = new int[layers.length];
      this.stepPositions = new int[layers.length][];
      this.stepQmax = new float[layers.length][];
    }

    @Override
    public boolean observes(int layer) {
      return layer < layers.length && layers[layer];
    }

    @Override
    public boolean wantsQueries(int layer) {
      return observes(layer);
    }

    @Override
    public void onQueries(
        ManagedKvCache cache,
        int layer,
        int rowsNow,
        int[] positions,
        int heads,
        float[] q,
        float scale) {
      int kvHeads = windows[layer].length;
      int group = heads / kvHeads;
      int first = Math.max(0, rowsNow - n);
      stepRows[layer] = rowsNow;
      stepPositions[layer] = Arrays.copyOf(positions, rowsNow);
      float[] qmax = new float[(rowsNow - first) * kvHeads];
      for (int r = first; r < rowsNow; r++) {
        for (int h = 0; h < heads; h++) {
          int base = (r * heads + h) * dim;
          float m = 0f;
          for (int c = 0; c < dim; c++) {
            m = Math.max(m, Math.abs(q[base + c]));
          }
          int at = (r - first) * kvHeads + h / group;
          qmax[at] = Math.max(qmax[at], m * Math.abs(scale));
        }
      }
      stepQmax[layer] = qmax;
    }

    @Override
    public void observe(
        ManagedKvCache cache,
        int layer,
        int queryIndex,
        int head,
        int kvHead,
        float[] probs,
        int count) {
      int first = Math.max(0, stepRows[layer] - n);
      if (queryIndex < first || stepPositions[layer] == null) {
        return;
      }
      int kvHeads = windows[layer].length;
      windows[layer][kvHead].add(
          stepPositions[layer][queryIndex],
          probs,
          count,
          stepQmax[layer][(queryIndex - first) * kvHeads + kvHead],
          cache.paged(layer),
          kvHead);
    }

    @Override
    public void afterStep(ManagedKvCache cache, KvCache.StepKind kind) {
      for (int l = 0; l < layers.length; l++) {
        if (!layers[l]) {
          continue;
        }
        PagedLayerKv layer = cache.paged(l);
        for (int g = 0; g < layer.kvHeads(); g++) {
          quantizeJudged(layer.head(g), windows[l][g]);
        }
        stepPositions[l] = null;
      }
    }

    private void quantizeJudged(HeadStore head, OldWindow window) {
      if (window.size() < n) {
        return;
      }
      int newest = window.newestPosition();
      List<KvBlock> blocks = head.blocks();
      float[] scratch = null;
      for (int i = 0; i < blocks.size(); i++) {
        KvBlock b = blocks.get(i);
        boolean closed = i < blocks.size() - 1 || b.filled() == b.capacity();
        if (b.keyFormat() instanceof QaqFormat
            || !closed
            || b.liveCount() == 0
            || b.maxPosition() > newest - (n - 1)) {
          continue;
        }
        if (scratch == null) {
          scratch = new float[2 * head.format().blockTokens() * dim + 2 * b.capacity() * dim];
        }
        convert(head, i, b, window, scratch);
      }
    }

    private static float inlierRange(float[] x, int off, int d, int low, int high) {
      float[] sorted = Arrays.copyOfRange(x, off, off + d);
      Arrays.sort(sorted);
      return sorted[d - 1 - high] - sorted[low];
    }

    private void convert(HeadStore head, int index, KvBlock b, OldWindow window, float[] scratch) {
      int cap = b.capacity();
      byte[] kb = new byte[cap];
      byte[] vb = new byte[cap];
      int[] pos = new int[cap];
      b.positions(pos, 0);
      float[] row = new float[dim];
      float qmax = window.qmax();
      int tokens = window.attended();
      int t = 0;
      for (int s = 0; s < b.filled(); s++) {
        if (!b.isLive(s)) {
          continue;
        }
        float a = window.attention(pos[s]);
        float other = window.largestOtherThan(pos[s]);
        b.decodeKey(s, row, 0);
        float kr = inlierRange(row, 0, dim, low, high);
        b.decodeValue(s, row, 0);
        float vr = inlierRange(row, 0, dim, low, high);
        double sensitivity = Math.max(a * (1.0 - a), (double) a * other);
        double ke = Math.sqrt(tk / dim) / tokens / (qmax * sensitivity);
        double ve = Math.sqrt(tv) / tokens / a;
        kb[t] = (byte) bits(kr, ke);
        vb[t] = (byte) bits(vr, ve);
        keyBits += kb[t];
        valueBits += vb[t];
        rows++;
        t++;
      }
      head.convertBlock(
          index, new QaqFormat(kb, low, high, dim), new QaqFormat(vb, low, high, dim), scratch);
    }

    private int bits(float range, double error) {
      double need = Math.ceil(Math.log(range / (2 * error) + 1) / Math.log(2));
      if (!(need > bmin)) {
        return bmin;
      }
      return (int) Math.min(bmax, need);
    }

    double meanKeyBits() {
      return rows == 0 ? 0 : (double) keyBits / rows;
    }

    double meanValueBits() {
      return rows == 0 ? 0 : (double) valueBits / rows;
    }

    long quantizedRows() {
      return rows;
    }
  }
}
