package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.choice;
import static io.kvslim.kv.method.Knob.integer;
import static io.kvslim.kv.method.Knob.number;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.format.QaqFormat;
import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvBlock;
import io.kvslim.kv.store.KvCacheFormat;
import java.util.List;
import java.util.Set;

/**
 * QAQ (Dong et al. 2024, "QAQ: Quality Adaptive Quantization for LLM KV Cache", arXiv:2403.04643;
 * METHODS.md Q6): every token's key and value rows of each (layer, KV head) get their own bit
 * width, chosen from the attention the token received from the last {@code n} queries, separately
 * for keys and values; each row's outliers stay exact ({@link QaqFormat}).
 *
 * <p>Per token {@code i} and KV head, with {@code a_i} the largest probability any of the last
 * {@code n} query rows of the head's query group gave it (the authors' {@code amax} over the last
 * {@code last_n_attentions} rows, {@code src/quantizer.py} lines 163–169 of
 * ClubieDong/QAQ-KVCacheQuantization), {@code L} the tokens attended, {@code d} the head size and
 * {@code q_max} the largest {@code |q_c|·scale} of those rows (the softmax's argument is {@code
 * scale·q·k}), the allowed error is (METHODS.md Q6 step 2, the paper's bounds):
 *
 * <ul>
 *   <li>values: {@code ε_i = √T_v / L / a_i};
 *   <li>keys: {@code ε_i = √(T_k/d) / L / (q_max · max_j |δ_ij a_i − a_i a_j|)}, the max over
 *       {@code j} being {@code max(a_i(1 − a_i), a_i · max_{j≠i} a_j)}.
 * </ul>
 *
 * and the bit width {@code b_i = clamp(⌈log2(r_i/(2ε_i) + 1)⌉, b_min, b_max)} with {@code r_i} the
 * range of the row's inliers (lines 187–191). The authors' code uses the paper's value bound in the
 * form {@code √(12/L)·T/a_i} (line 171) and, for keys, a closed form without attention (line 160);
 * this follows the paper's attention-dependent key bound instead, as METHODS.md states it.
 *
 * <p>Timing (kvslim's, METHODS.md Q6 step 6): new tokens are stored in f16 (the authors' cache
 * type; {@code rformat}) and judged once they have left the window of the last {@code n − 1}
 * tokens, which the authors keep at {@code b_max} (lines 193–195): after each step, every block of
 * {@code block} tokens that is closed and whose newest token is at least {@code n − 1} positions
 * behind the newest query is re-encoded as {@link QaqFormat} with the bit widths its tokens earned
 * ({@link HeadStore#convertBlock}); until then a token waits in f16, so up to {@code block + n − 2}
 * recent tokens per head are unquantized. Re-quantizing tokens whose attention grows later (the
 * paper's retained fp copy) is not done (METHODS.md marks it unverified). Composes with eviction:
 * {@code snapkv:budget=25% + qaq} evicts, then QAQ quantizes what is kept (blocks with evicted
 * slots are re-encoded without them).
 */
public final class QaqMethod implements KvMethod {
  @Override
  public String name() {
    return "qaq";
  }

  @Override
  public Family family() {
    return Family.QUANTIZATION;
  }

  @Override
  public String paper() {
    return "Dong et al. 2024, QAQ: Quality Adaptive Quantization for LLM KV Cache,"
        + " arXiv:2403.04643 §3";
  }

  @Override
  public String summary() {
    return "QAQ: per-token key and value bit widths from the attention the token gets, exact"
        + " outliers.";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        number("tk", "1000", "target key error T_k (the authors' grid: 1e3..1e6)").atLeast(1e-12),
        number("tv", "1", "target value error T_v (the authors' grid: 1..1e3)").atLeast(1e-12),
        integer("n", "5", "query rows whose attention judges a token (last_n_attentions)")
            .between(1, 64),
        number("outliers", "0.01", "fraction of each row kept exact, both tails").between(0, 0.5),
        integer("bmin", "2", "fewest bits a row gets").between(1, 8),
        integer("bmax", "8", "most bits a row gets").between(1, 8),
        integer("block", "32", "tokens a block (quantized a block at a time)").between(2, 4096),
        choice(
            "rformat",
            "f16",
            "format of the tokens not judged yet: the authors' fp16; f32 keeps them exact",
            "f16",
            "f32"));
  }

  @Override
  public Set<Need> needs() {
    return Set.of(Need.ATTENTION_PROBS, Need.QUERIES);
  }

  @Override
  public void validate(MethodCall c) {
    if (c.integer("bmin") > c.integer("bmax")) {
      throw new KvSpecException(
          "qaq:bmin=" + c.integer("bmin") + " must not exceed bmax=" + c.integer("bmax"));
    }
  }

  @Override
  public KvCacheFormat format(MethodCall c) {
    return KvCacheFormat.of(KvFormats.byName(c.string("rformat")))
        .withBlockTokens(c.integer("block"));
  }

  @Override
  public KvPolicy policy(MethodCall c, PolicyContext ctx) {
    double ratio = c.number("outliers");
    int d = ctx.headDim();
    return new Policy(
        ctx.layers(),
        ctx.kvHeads(),
        d,
        c.number("tk"),
        c.number("tv"),
        c.integer("n"),
        c.integer("bmin"),
        c.integer("bmax"),
        QaqFormat.lowOutliers(ratio, d),
        QaqFormat.highOutliers(ratio, d));
  }

  /** Two settings on the bundled model, loose and tight error targets. */
  @Override
  public List<String> benchmarkSpecs() {
    return List.of("qaq", "qaq:tk=100,tv=0.1");
  }

  @Override
  public String specCompressing(int tokens) {
    return "qaq:block=4,bmin=1";
  }

  /** Per sequence: each (layer, KV head)'s last {@code n} attention rows, and the conversion. */
  public static final class Policy implements KvPolicy {
    private final boolean[] layers;
    private final int dim;
    private final double tk;
    private final double tv;
    private final int n;
    private final int bmin;
    private final int bmax;
    private final int low;
    private final int high;
    private final QaqWindow[][] windows;
    private final int[] stepRows;
    private final int[][] stepPositions;
    private final float[][] stepQmax; // per layer: (row − first window row) × kvHeads
    private final int[][] settled; // per (layer, KV head): leading blocks that need no more look
    private final long[][] settledRemovals; // the head's removals() when settled was last valid
    private final int[][] settledLive; // per (layer, KV head): live tokens of the settled blocks
    private long keyBits;
    private long valueBits;
    private long rows;

    Policy(
        boolean[] layers,
        int kvHeads,
        int dim,
        double tk,
        double tv,
        int n,
        int bmin,
        int bmax,
        int low,
        int high) {
      this.layers = layers;
      this.dim = dim;
      this.tk = tk;
      this.tv = tv;
      this.n = n;
      this.bmin = bmin;
      this.bmax = bmax;
      this.low = low;
      this.high = high;
      this.windows = new QaqWindow[layers.length][kvHeads];
      for (int l = 0; l < layers.length; l++) {
        for (int g = 0; g < kvHeads; g++) {
          windows[l][g] = new QaqWindow(n);
        }
      }
      this.stepRows = new int[layers.length];
      this.stepPositions = new int[layers.length][];
      this.stepQmax = new float[layers.length][];
      this.settled = new int[layers.length][kvHeads];
      this.settledRemovals = new long[layers.length][kvHeads];
      this.settledLive = new int[layers.length][kvHeads];
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
      stepPositions[layer] = java.util.Arrays.copyOf(positions, rowsNow);
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
      PagedLayerKv paged = cache.paged(layer);
      windows[layer][kvHead].add(
          stepPositions[layer][queryIndex],
          probs,
          count,
          stepQmax[layer][(queryIndex - first) * kvHeads + kvHead],
          paged,
          kvHead,
          judgedFrom(paged.head(kvHead), layer, kvHead));
    }

    /**
     * The first token (in the head's order) that a later step may still judge: the tokens of the
     * head's settled leading blocks ({@link #quantizeJudged}) are quantized or removed, and never
     * judged again; 0 when the head removed tokens since (the count no longer applies).
     */
    private int judgedFrom(HeadStore head, int layer, int kvHead) {
      return head.removals() == settledRemovals[layer][kvHead] ? settledLive[layer][kvHead] : 0;
    }

    @Override
    public void afterStep(ManagedKvCache cache, KvCache.StepKind kind) {
      for (int l = 0; l < layers.length; l++) {
        if (!layers[l]) {
          continue;
        }
        PagedLayerKv layer = cache.paged(l);
        for (int g = 0; g < layer.kvHeads(); g++) {
          quantizeJudged(layer.head(g), windows[l][g], l, g);
        }
        stepPositions[l] = null;
      }
    }

    /**
     * Converts every closed f16 block whose tokens have left the window of the last n − 1. The walk
     * starts after the head's leading blocks that need no more look (converted, or closed with no
     * live token), remembered per head: walking all of a deep cache's blocks each step (their
     * objects out of cache after the attention) took a few milliseconds a step. The memory is
     * dropped when the head has removed tokens since (an eviction can remove blocks, shifting the
     * indices); blocks are otherwise only appended, or converted in place. With it goes the number
     * of live tokens in those blocks: the window keeps no probabilities of them ({@link
     * #judgedFrom}).
     */
    private void quantizeJudged(HeadStore head, QaqWindow window, int layer, int kvHead) {
      if (window.size() < n) {
        return; // not n rows seen yet: nothing judged
      }
      int newest = window.newestPosition();
      List<KvBlock> blocks = head.blocks();
      int[] from = settled[layer];
      long[] seen = settledRemovals[layer];
      int[] live = settledLive[layer];
      if (head.removals() != seen[kvHead] || from[kvHead] > blocks.size()) {
        from[kvHead] = 0;
        live[kvHead] = 0;
        seen[kvHead] = head.removals();
      }
      boolean prefix = true; // every block before i needs no more look
      float[] scratch = null;
      for (int i = from[kvHead]; i < blocks.size(); i++) {
        KvBlock b = blocks.get(i);
        boolean closed = i < blocks.size() - 1 || b.filled() == b.capacity();
        if (b.keyFormat() instanceof QaqFormat || (closed && b.liveCount() == 0)) {
          if (prefix) {
            from[kvHead] = i + 1;
            live[kvHead] += b.liveCount();
          }
          continue;
        }
        if (!closed || b.liveCount() == 0 || b.maxPosition() > newest - (n - 1)) {
          prefix = false;
          continue;
        }
        if (scratch == null) {
          scratch = new float[2 * head.format().blockTokens() * dim + 2 * b.capacity() * dim];
        }
        convert(head, i, b, window, scratch);
        if (prefix) {
          from[kvHead] = i + 1;
          live[kvHead] += blocks.get(i).liveCount();
        }
      }
    }

    private void convert(HeadStore head, int index, KvBlock b, QaqWindow window, float[] scratch) {
      int cap = b.capacity();
      byte[] kb = new byte[cap];
      byte[] vb = new byte[cap];
      int[] pos = new int[cap];
      b.positions(pos, 0);
      float[] row = new float[dim];
      long[] select = new long[Math.max(low, high) + 1];
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
        float kr = QaqFormat.inlierRange(row, 0, dim, low, high, select);
        b.decodeValue(s, row, 0);
        float vr = QaqFormat.inlierRange(row, 0, dim, low, high, select);
        kb[t] = (byte) bits(kr, keyError(a, other, qmax, tokens));
        vb[t] = (byte) bits(vr, valueError(a, tokens));
        keyBits += kb[t];
        valueBits += vb[t];
        rows++;
        t++;
      }
      head.convertBlock(
          index, new QaqFormat(kb, low, high, dim), new QaqFormat(vb, low, high, dim), scratch);
    }

    /** The value bound {@code ε = √T_v / L / a} (infinite for a token nobody attends to). */
    double valueError(float a, int tokens) {
      return Math.sqrt(tv) / tokens / a;
    }

    /** The key bound {@code ε = √(T_k/d) / L / (q_max · max(a(1 − a), a·a_other))}. */
    double keyError(float a, float other, float qmax, int tokens) {
      double sensitivity = Math.max(a * (1.0 - a), (double) a * other);
      return Math.sqrt(tk / dim) / tokens / (qmax * sensitivity);
    }

    /** {@code clamp(⌈log2(r/(2ε) + 1)⌉, b_min, b_max)}; a non-finite or zero ratio gives b_min. */
    int bits(float range, double error) {
      double need = Math.ceil(Math.log(range / (2 * error) + 1) / Math.log(2));
      if (!(need > bmin)) {
        return bmin;
      }
      return (int) Math.min(bmax, need);
    }

    /** Mean key bits of the rows quantized so far (0 before any). */
    public double meanKeyBits() {
      return rows == 0 ? 0 : (double) keyBits / rows;
    }

    /** Mean value bits of the rows quantized so far (0 before any). */
    public double meanValueBits() {
      return rows == 0 ? 0 : (double) valueBits / rows;
    }

    /** Rows (per KV head) quantized so far. */
    public long quantizedRows() {
      return rows;
    }
  }
}
