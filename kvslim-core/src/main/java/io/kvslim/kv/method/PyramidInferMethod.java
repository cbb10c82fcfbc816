package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.integer;
import static io.kvslim.kv.method.Knob.number;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.policy.Selection;
import java.util.Arrays;
import java.util.BitSet;
import java.util.List;
import java.util.Set;

/**
 * PyramidInfer (Yang et al. 2024, "PyramidInfer: Pyramid KV Cache Compression for High-throughput
 * LLM Inference", arXiv:2405.12532; METHODS.md E8): the pivotal-context (PvC) tokens are chosen
 * layer by layer <em>during</em> the prefill, and the deeper layers run on the chosen rows only
 * ({@link io.kvslim.kv.LayerKv#keptRows}), so they compute and store fewer tokens. As in the
 * authors' code (mutonix/pyramidinfer @61ac641, {@code models/modeling_llama_pyramidinfer.py}):
 *
 * <ul>
 *   <li>lines 972–973: R = ⌊n·recent⌋ recent rows (plus the last) are never dropped; the minimum
 *       context is min(min_ctx, n − 1 − R); layer 0's context is c_0 = n − R − 1 rows;
 *   <li>lines 1022–1023: the cosine decay ρ_l = (1 − δ)(cos(πl/L) + 1)/2 + δ;
 *   <li>lines 1027–1033: the PvC score of a context row is the attention of the last R + 1 rows,
 *       averaged over all query heads, weighted by linspace(1, distance, R + 1) from the oldest of
 *       those rows to the last, averaged over them; the first {@code sink} context rows score the
 *       largest float;
 *   <li>lines 1035–1047: every {@code interval} layers, if c_l > min context and ρ_l < 1, the top
 *       k_l = ⌊c_l·ρ_l⌋ context rows go on (k_l = c_l when that is not above the minimum context),
 *       in position order, followed by the recent rows; c_{l+1} = k_l.
 * </ul>
 *
 * <p>Decode (lines 1056–1107; METHODS.md E8 step 5): the prompt's keys and values stay; once {@code
 * exceed} decoded tokens have left the recent part (the last R + 1 entries) uncompressed, those
 * tokens are scored as above from the attention of the last R + 1 queries (the prompt's recent rows
 * count as zero on them, as the reference pads its stored weights with zeros) and the top max(1,
 * ⌊exceed·gen_compress·ρ^gen_l⌋) stay, ρ^gen the cosine schedule with {@code gen_decay}. Two
 * departures from that code, where it is inconsistent: it compares the layer-0 count of tokens ever
 * seen ({@code seen_tokens}) with each layer's compressed length, so a layer thinned in the prefill
 * compresses at every step, and it re-derives R from the grown cache at every step; here a layer
 * compresses each time {@code exceed} new tokens accumulate, with the prompt's R.
 *
 * <p>The selection needs every prompt row at once, so the engine feeds the prompt in one run
 * ({@link KvCache#thinsPrefill}); a prompt fed in several runs (the server's chunks) is not
 * thinned, only compressed during decode. The rows dropped from the deeper layers have no final
 * hidden state: a caller asking for every prompt row's logits gets, for those, the logits of the
 * layer they left.
 */
public final class PyramidInferMethod implements KvMethod {
  @Override
  public String name() {
    return "pyramidinfer";
  }

  @Override
  public Family family() {
    return Family.EVICTION;
  }

  @Override
  public String paper() {
    return "Yang et al. 2024, PyramidInfer: Pyramid KV Cache Compression for High-throughput LLM"
        + " Inference, arXiv:2405.12532 §3";
  }

  @Override
  public String summary() {
    return "PyramidInfer: pivotal tokens chosen layer by layer in the prefill; deeper layers run"
        + " fewer rows.";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        number("recent", "0.2", "share of the prompt kept as recent rows (they score)")
            .between(0, 0.9),
        number("decay", "0.9", "prefill decay ratio δ of the cosine schedule (1: no thinning)")
            .between(0, 1),
        integer("min_ctx", "64", "context rows below which a layer keeps all").atLeast(0),
        integer("interval", "1", "layers between two selections").atLeast(1),
        integer("sink", "4", "first context rows always kept").atLeast(0),
        number("distance", "1.2", "weight of the last recent row (the oldest has 1)").atLeast(0),
        number("gen_decay", "0.1", "decode decay ratio of the cosine schedule").between(0, 1),
        number("gen_compress", "0.9", "share of a decode block before the decay").between(0, 1),
        integer("exceed", "16", "decoded tokens compressed together").atLeast(1));
  }

  @Override
  public Set<Need> needs() {
    return Set.of(Need.ATTENTION_PROBS);
  }

  @Override
  public KvPolicy policy(MethodCall c, PolicyContext ctx) {
    return new Policy(
        ctx.layers(),
        c.number("recent"),
        c.number("decay"),
        c.integer("min_ctx"),
        c.integer("interval"),
        c.integer("sink"),
        c.number("distance"),
        c.number("gen_decay"),
        c.number("gen_compress"),
        c.integer("exceed"));
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of("pyramidinfer");
  }

  /** No thinning, and a decode block keeps all of its tokens. */
  @Override
  public String specKeeping(int tokens) {
    return "pyramidinfer:decay=1,gen_decay=1,gen_compress=1";
  }

  @Override
  public String specCompressing(int tokens) {
    return "pyramidinfer:decay=0.5,min_ctx=4,recent=0.05,exceed=4";
  }

  /** The cosine schedule ρ_l = (1 − δ)(cos(πl/L) + 1)/2 + δ (reference lines 1022–1023). */
  public static double cosine(double delta, int layer, int layers) {
    return (1.0 - delta) * (Math.cos(Math.PI * layer / layers) + 1) / 2 + delta;
  }

  /**
   * The context rows that go on after a selecting layer with {@code context} context rows
   * (reference lines 1036–1037): ⌊c·ρ⌋ when c is above the minimum context, ρ < 1 and ⌊c·ρ⌋ is
   * above the minimum context too; else c.
   */
  public static int keptContext(int context, double rho, int minContext) {
    if (context <= minContext || rho >= 1.0) {
      return context;
    }
    int k = (int) (context * rho);
    return k > minContext ? k : context;
  }

  /** The recent rows R of a prompt of {@code n} tokens (reference line 972). */
  public static int recentRows(int n, double ratio) {
    return (int) (n * ratio);
  }

  /** The policy of one sequence. */
  public static final class Policy implements KvPolicy {
    private final boolean[] layers;
    private final double recentRatio;
    private final double decay;
    private final int minContextKnob;
    private final int interval;
    private final int sink;
    private final double distance;
    private final double genDecay;
    private final double genCompress;
    private final int exceed;

    // prefill
    private boolean thinning; // this prefill run holds the whole prompt
    private int recent = -1; // R
    private int minContext;
    private final int[] rowsAt; // rows each layer ran in the prefill run
    private float[] scores = new float[0]; // the current layer's PvC sums over context rows
    private int heads; // query heads, learnt from the observer

    // decode, per layer
    private final int[] boundary; // entries before it are never compressed again
    // per layer: the last R + 1 query rows over the entries from the boundary, at most
    // (R + 1)·(R + 1 + exceed) floats, as the reference's recent_attn_weights (line 1106)
    private float[][][] ring;
    private int[][] ringLength; // per layer and slot: entries a row covers
    private final int[] ringNewest; // slot of the newest row

    public Policy(
        boolean[] layers,
        double recentRatio,
        double decay,
        int minContext,
        int interval,
        int sink,
        double distance,
        double genDecay,
        double genCompress,
        int exceed) {
      this.layers = layers;
      this.recentRatio = recentRatio;
      this.decay = decay;
      this.minContextKnob = minContext;
      this.interval = interval;
      this.sink = sink;
      this.distance = distance;
      this.genDecay = genDecay;
      this.genCompress = genCompress;
      this.exceed = exceed;
      this.rowsAt = new int[layers.length];
      this.boundary = new int[layers.length];
      this.ringNewest = new int[layers.length];
    }

    @Override
    public boolean thinsPrefill() {
      return true;
    }

    @Override
    public boolean observes(int layer) {
      return layers[layer];
    }

    /** Only the selecting layers of a thinned prefill need probabilities (faster prefill). */
    @Override
    public boolean observesPrefill(int layer) {
      return thinning && selects(layer);
    }

    /** The recent rows R of this sequence's prompt (-1 before it). */
    public int recent() {
      return recent;
    }

    /** Whether the layer selects after running (ρ < 1 and on the interval). */
    private boolean selects(int layer) {
      return layers[layer]
          && layer % interval == 0
          && layer + 1 < layers.length
          && cosine(decay, layer, layers.length) < 1.0;
    }

    @Override
    public void beforeAppend(ManagedKvCache cache, int layer, int n) {
      if (cache.promptTokens() >= 0) {
        if (ring != null && layers[layer]) {
          newRow(layer); // a decode query: its row of the ring
        }
        return;
      }
      if (layer == 0) {
        thinning = cache.tokens() == 0 && cache.plannedPromptTokens() <= n;
        if (thinning) {
          recent = recentRows(n, recentRatio);
          minContext = Math.min(minContextKnob, n - 1 - recent);
        }
      }
      if (thinning) {
        rowsAt[layer] = n;
        int context = n - recent - 1;
        if (selects(layer)) {
          if (scores.length < context) {
            scores = new float[context];
          }
          Arrays.fill(scores, 0, context, 0f);
        }
      }
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
      heads = Math.max(heads, head + 1);
      if (cache.promptTokens() >= 0) {
        if (ring != null) {
          int slot = ringNewest[layer];
          int from = boundary[layer];
          if (ring[layer][slot].length < count - from) {
            ring[layer][slot] = Arrays.copyOf(ring[layer][slot], 2 * (count - from));
          }
          float[] row = ring[layer][slot];
          ringLength[layer][slot] = count - from;
          for (int j = from; j < count; j++) {
            row[j - from] += probs[j];
          }
        }
        return;
      }
      int n = rowsAt[layer];
      int first = n - recent - 1; // the first recent row, also the context length
      if (!thinning || !selects(layer) || queryIndex < first || count != n) {
        return;
      }
      float w = recentWeight(queryIndex - first);
      for (int j = 0; j < first; j++) {
        scores[j] += w * probs[j];
      }
    }

    /** linspace(1, distance, R + 1)[i]: the weight of the i-th recent row, the oldest first. */
    private float recentWeight(int i) {
      return recent == 0 ? 1f : (float) (1.0 + (distance - 1.0) * i / recent);
    }

    @Override
    public int[] keptRows(ManagedKvCache cache, int layer, int rows) {
      if (!thinning || cache.promptTokens() >= 0 || rows != rowsAt[layer] || !selects(layer)) {
        return null;
      }
      int context = rows - recent - 1;
      int k = keptContext(context, cosine(decay, layer, layers.length), minContext);
      if (k >= context) {
        return null;
      }
      float[] s = pvcScores(context);
      BitSet kept = new BitSet();
      Selection.highest(s, 0, context, k, kept);
      int[] out = new int[k + recent + 1];
      int i = 0;
      for (int j = kept.nextSetBit(0); j >= 0; j = kept.nextSetBit(j + 1)) {
        out[i++] = j;
      }
      for (int r = context; r < rows; r++) {
        out[i++] = r;
      }
      return out;
    }

    /** The layer's PvC scores over its {@code context} rows (mean over heads and recent rows). */
    float[] pvcScores(int context) {
      float[] s = new float[context];
      float norm = 1f / ((float) Math.max(1, heads) * (recent + 1));
      for (int j = 0; j < context; j++) {
        s[j] = j < sink ? Float.MAX_VALUE : scores[j] * norm;
      }
      return s;
    }

    @Override
    public void afterStep(ManagedKvCache cache, KvCache.StepKind kind) {
      if (kind == KvCache.StepKind.PREFILL) {
        if (ring != null) {
          return;
        }
        thinning = false;
        if (recent < 0) {
          recent = recentRows(cache.promptTokens(), recentRatio);
        }
        ring = new float[layers.length][][];
        ringLength = new int[layers.length][];
        for (int l = 0; l < layers.length; l++) {
          if (layers[l]) {
            boundary[l] = cache.paged(l).size(0);
            ring[l] = new float[recent + 1][0]; // rows grow to the entries they cover
            ringLength[l] = new int[recent + 1]; // the prompt's rows: zero on what is to come
          }
        }
        return;
      }
      for (int l = 0; l < layers.length; l++) {
        if (layers[l]) {
          compressDecoded(cache.paged(l), l);
        }
      }
    }

    /** Starts the newest ring row of a layer, dropping the oldest. */
    private void newRow(int layer) {
      int slot = (ringNewest[layer] + 1) % (recent + 1);
      ringNewest[layer] = slot;
      float[] row = ring[layer][slot];
      Arrays.fill(row, 0f);
      ringLength[layer][slot] = 0;
    }

    /** The decode block of a layer, once {@code exceed} tokens left the recent part. */
    private void compressDecoded(PagedLayerKv layer, int l) {
      int size = layer.size(0);
      int from = boundary[l];
      if (size - (recent + 1) - from < exceed) {
        return;
      }
      float[] s = decodeScores(l);
      double rho = cosine(genDecay, l, layers.length);
      int k = Math.max(1, (int) (exceed * genCompress * rho));
      BitSet kept = new BitSet();
      Selection.highest(s, 0, exceed, k, kept);
      BitSet evict = new BitSet();
      for (int t = 0; t < exceed; t++) {
        if (!kept.get(t)) {
          evict.set(from + t);
        }
      }
      if (!evict.isEmpty()) {
        for (int g = 0; g < layer.kvHeads(); g++) {
          layer.evict(g, evict);
        }
      }
      boundary[l] = from + kept.cardinality();
      // the block leaves the tracked entries: every row's values shift down by the block
      for (int slot = 0; slot <= recent; slot++) {
        float[] row = ring[l][slot];
        int len = ringLength[l][slot];
        int rest = Math.max(0, len - exceed);
        System.arraycopy(row, Math.min(len, exceed), row, 0, rest);
        Arrays.fill(row, rest, row.length, 0f);
        ringLength[l][slot] = rest;
      }
    }

    /** PvC scores of a layer's decode block: the ring's rows, oldest first, weighted. */
    float[] decodeScores(int l) {
      float[] s = new float[exceed];
      int rows = recent + 1;
      float norm = 1f / ((float) Math.max(1, heads) * rows);
      for (int i = 0; i < rows; i++) {
        int slot = (ringNewest[l] + 1 + i) % rows; // i = 0: the oldest
        float w = recentWeight(i);
        float[] row = ring[l][slot];
        int len = Math.min(exceed, ringLength[l][slot]);
        for (int t = 0; t < len; t++) {
          s[t] += w * row[t];
        }
      }
      for (int t = 0; t < exceed; t++) {
        s[t] *= norm;
      }
      return s;
    }
  }
}
