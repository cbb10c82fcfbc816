package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.budget;
import static io.kvslim.kv.method.Knob.integer;
import static io.kvslim.kv.method.Knob.number;

import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.policy.PqIndex;
import io.kvslim.kv.policy.QuestPages;
import io.kvslim.kv.policy.RecallPolicy;
import io.kvslim.kv.policy.Selection;
import io.kvslim.kv.store.HeadStore;
import java.util.Arrays;
import java.util.BitSet;
import java.util.List;
import java.util.Set;

/**
 * PQCache (Zhang et al. 2024, arXiv:2407.12820; METHODS.md H5): nothing is evicted; at the first
 * decode step each (layer, KV head) trains product-quantization codebooks on its prompt keys after
 * the sinks ({@link PqIndex}), and every decode step attends exactly over the {@code sink} first
 * tokens, the {@code recent} last ones and the {@code topk} others whose PQ-approximate attention
 * is highest. Followed in HugoZHL/PQCache {@code vq_method/retrieval_based/pq_search.py}:
 *
 * <ul>
 *   <li>Sizes from the prompt length {@code n} at the prefill (lines 235-237): {@code recent =
 *       int((n − sink)·ratio·recent_ratio)}, {@code topk = int((n − sink)·ratio·(1 −
 *       recent_ratio))}; with a token budget instead of a ratio, {@code (n − sink)·ratio} is that
 *       budget.
 *   <li>Candidates: the tokens between the sinks and the recent window, {@code [sink, past −
 *       recent)} with {@code past} the tokens before the current one (lines 282-283, 314).
 *   <li>Score (GQA, euclidean codebooks; lines 307-322): per query head {@code ŝ_i = Σ_s
 *       q_s·centroid_{s, code_i}}, a softmax of {@code ŝ/√d} over the candidates, summed over the
 *       group's query heads; the top {@code topk} are fetched (line 322).
 *   <li>Attention: exact over sinks ∪ top-k ∪ recent window ∪ the current token (line 332).
 *   <li>A token leaving the recent window is coded with the existing centroids when it becomes a
 *       candidate (lines 346-354).
 *   <li>No index when the candidates are no more than the centroids (then every token is read, as
 *       the reference's {@code code_book is None} path, line 271).
 * </ul>
 *
 * <p>The KV stays in RAM; the policy counts what a cold tier would send: the bytes of the top-k
 * tokens each step that miss an LFU cache of {@code cache_blocks} blocks of {@code cache_block}
 * tokens per (layer, KV head) ({@link Policy#bytesRead}; the reference's GPU block cache, {@code
 * cache_manager.py} lines 241-260 and 299-411: per step the blocks holding the most selected tokens
 * are offered to an LFU cache). 0 blocks (the default) sends every top-k token. The sinks and the
 * recent window are the hot part, always in RAM; {@link Policy#indexBytes} is the PQ codes and
 * centroids held beside them.
 */
public final class PqCacheMethod implements KvMethod {
  @Override
  public String name() {
    return "pqcache";
  }

  @Override
  public Family family() {
    return Family.EVICTION;
  }

  @Override
  public String paper() {
    return "Zhang et al. 2024, PQCache: Product Quantization-based KVCache for Long Context LLM"
        + " Inference, arXiv:2407.12820";
  }

  @Override
  public String summary() {
    return "PQCache: decode attends to sinks, a recent window and the top-k tokens found by"
        + " product-quantized keys.";
  }

  @Override
  public List<Knob> knobs() {
    return SpillKnobs.with(
        List.of(
            budget(
                "budget",
                "20%",
                "tokens attended beyond the sinks (ratio of the prompt or tokens)"),
            number("recent_ratio", "0.5", "share of the budget given to the recent window")
                .between(0, 1),
            integer("sink", "32", "first tokens always attended").atLeast(0),
            integer("subvectors", "2", "PQ sub-vectors per key (n_subvec_per_head)").between(1, 64),
            integer("bits", "6", "bits per PQ code: 2^bits centroids a sub-space").between(1, 12),
            integer("iterations", "20", "most Lloyd iterations of the k-means").between(1, 1000),
            integer("cache_blocks", "0", "LFU block cache per (layer, KV head) for top-k fetches")
                .atLeast(0),
            integer("cache_block", "16", "tokens a cached block").between(1, 4096)));
  }

  @Override
  public Set<Need> needs() {
    return Set.of(Need.QUERIES);
  }

  @Override
  public void validate(MethodCall c) {
    if (c.budget("budget").kind() == Budget.Kind.BYTES) {
      throw new KvSpecException(
          "pqcache's budget is tokens or a ratio of the prompt, not bytes: it evicts nothing");
    }
  }

  @Override
  public KvPolicy policy(MethodCall c, PolicyContext ctx) {
    PqIndex.check(ctx.headDim(), c.integer("subvectors"), c.integer("bits"));
    return new Policy(c, ctx);
  }

  /** Nothing is evicted: the cache holds every token. */
  @Override
  public long heldTokens(MethodCall c, int prompt, int maxNew, double bytesPerToken) {
    return (long) prompt + maxNew;
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of("pqcache:budget=10%", "pqcache:budget=20%");
  }

  @Override
  public String specKeeping(int tokens) {
    return "pqcache:budget=" + tokens;
  }

  @Override
  public String specCompressing(int tokens) {
    return "pqcache:budget=" + Math.max(2, tokens / 4) + ",sink=4,bits=3,subvectors=2";
  }

  /** Per (layer, KV head): the index, the sizes fixed at the prefill, and the LFU block cache. */
  private static final class HeadState {
    PqIndex index;
    int recent;
    int topk;
    int seen = -1; // tokens (with the current one) at the last step; -1 before the first
    final LfuBlocks lfu;

    HeadState(int blocks, int blockTokens) {
      lfu = new LfuBlocks(blocks, blockTokens);
    }
  }

  /** Per sequence: every (layer, KV head)'s index and each decode step's selection. */
  public static final class Policy extends RecallPolicy<HeadState> {
    private final Budget budget;
    private final double recentRatio;
    private final int sink;
    private final int subspaces;
    private final int bits;
    private final int iterations;
    private final BitSet chosen = new BitSet();
    private BitSet[] selections = new BitSet[0]; // per KV head: attention reads it after the loop
    private final BitSet missed = new BitSet();
    private final BitSet resident = new BitSet();
    private float[] approx = new float[0];
    private float[] sum = new float[0];
    private float[] lookup = new float[0];
    private float[] keys = new float[0];
    private long fetched;
    private long hits;

    Policy(MethodCall c, PolicyContext ctx) {
      super(
          ctx.layers(),
          ctx.headDim(),
          () -> new HeadState(c.integer("cache_blocks"), c.integer("cache_block")),
          SpillKnobs.of(c));
      this.budget = c.budget("budget");
      this.recentRatio = c.number("recent_ratio");
      this.sink = c.integer("sink");
      this.subspaces = c.integer("subvectors");
      this.bits = c.integer("bits");
      this.iterations = c.integer("iterations");
    }

    @Override
    protected void recall(
        PagedLayerKv paged, int g, HeadState st, float[] q, int head0, int group, float scale) {
      if (selections.length <= g) {
        selections = java.util.Arrays.copyOf(selections, g + 1);
      }
      if (selections[g] == null) {
        selections[g] = new BitSet();
      }
      BitSet tokens = selections[g];
      HeadStore head = paged.head(g);
      int total = paged.size(g); // with the current token
      int past = total - 1;
      if (st.seen < 0 || total != st.seen + 1) {
        start(head, st, past); // the first decode step, or the retained tokens changed
      }
      st.seen = total;
      int candidates = past - st.recent - sink;
      if (st.index == null || candidates <= st.topk) {
        count(0, QuestPages.bytes(head, null));
        return; // every token is attended
      }
      while (st.index.coded() < candidates) {
        head.readKey(sink + st.index.coded(), keyRow());
        st.index.add(keys, 0);
      }
      if (approx.length < candidates) {
        approx = new float[Math.max(candidates, 2 * approx.length)];
        sum = new float[approx.length];
      }
      if (lookup.length < st.index.lookupLength()) {
        lookup = new float[st.index.lookupLength()];
      }
      Arrays.fill(sum, 0, candidates, 0f);
      for (int h = head0; h < head0 + group; h++) {
        st.index.scores(q, h * dim, candidates, lookup, approx);
        for (int i = 0; i < candidates; i++) {
          approx[i] *= scale;
        }
        poolSoftmax(approx, candidates, sum, false);
      }
      chosen.clear();
      Selection.highest(sum, 0, candidates, st.topk, chosen);
      tokens.clear();
      tokens.set(0, Math.min(sink, total));
      for (int i = chosen.nextSetBit(0); i >= 0; i = chosen.nextSetBit(i + 1)) {
        tokens.set(sink + i);
      }
      tokens.set(past - st.recent, total);
      paged.restrictNextAttention(g, tokens);
      missed.clear();
      for (int i = chosen.nextSetBit(0); i >= 0; i = chosen.nextSetBit(i + 1)) {
        missed.set(sink + i);
      }
      hits += st.lfu.serve(missed);
      fetched += missed.cardinality();
      count(QuestPages.bytes(head, missed), QuestPages.bytes(head, tokens));
    }

    /** The exact part: the sinks and the recent window with the current token. */
    @Override
    protected BitSet resident(HeadState st, int total) {
      resident.clear();
      resident.set(0, Math.min(sink, total));
      resident.set(Math.max(0, total - 1 - st.recent), total);
      return resident;
    }

    @Override
    protected boolean readsAll(HeadState st, int total) {
      return st.seen < 0 || total != st.seen + 1;
    }

    /** Sizes from the prompt (the tokens before the first decoded one) and the trained index. */
    private void start(HeadStore head, HeadState st, int past) {
      double attended =
          budget.kind() == Budget.Kind.RATIO
              ? Math.max(0, past - sink) * budget.value()
              : budget.value();
      st.recent = (int) (attended * recentRatio);
      st.topk = (int) (attended * (1 - recentRatio));
      int candidates = past - st.recent - sink;
      st.index = null;
      if (candidates > st.topk && past - sink > 0) {
        int n = head.size();
        if (keys.length < n * dim) {
          keys = new float[n * dim];
        }
        head.readKeys(keys);
        // every prompt key after the sinks is coded, the recent ones too (the reference's xb)
        st.index = PqIndex.train(keys, sink, past - sink, dim, subspaces, bits, iterations, 7);
      }
    }

    private float[] keyRow() {
      if (keys.length < dim) {
        keys = new float[dim];
      }
      return keys;
    }

    /** Top-k tokens fetched (LFU misses) and served by the LFU block cache, so far. */
    public long fetchedTokens() {
      return fetched;
    }

    public long cacheHits() {
      return hits;
    }

    /** Bytes of the PQ codes and centroids held now, over every (layer, KV head). */
    @Override
    public long indexBytes() {
      long b = 0;
      for (HeadState st : states()) {
        b += st.index == null ? 0 : st.index.bytes();
      }
      return b;
    }
  }

  /**
   * An LFU cache of token blocks ({@code blockTokens} tokens each, by retained index): a step's
   * selected tokens in cached blocks are hits; then the blocks it touched, most selected tokens
   * first, add their counts to their frequencies and enter the cache, replacing the least
   * frequently used block (ties: the lower block index stays) when they are used more often.
   */
  static final class LfuBlocks {
    private final int capacity;
    private final int blockTokens;
    private final java.util.HashMap<Integer, Long> frequency = new java.util.HashMap<>();
    private final java.util.TreeSet<Integer> cached = new java.util.TreeSet<>();

    LfuBlocks(int capacity, int blockTokens) {
      this.capacity = capacity;
      this.blockTokens = blockTokens;
    }

    /** Clears the hits from {@code selected} (what is left must be fetched); returns the hits. */
    int serve(BitSet selected) {
      if (capacity == 0) {
        return 0;
      }
      java.util.TreeMap<Integer, Integer> touched = new java.util.TreeMap<>();
      int hit = 0;
      for (int t = selected.nextSetBit(0); t >= 0; t = selected.nextSetBit(t + 1)) {
        int b = t / blockTokens;
        touched.merge(b, 1, Integer::sum);
        if (cached.contains(b)) {
          selected.clear(t);
          hit++;
        }
      }
      List<Integer> order = new java.util.ArrayList<>(touched.keySet());
      order.sort(
          (a, b) -> {
            int byCount = Integer.compare(touched.get(b), touched.get(a));
            return byCount != 0 ? byCount : Integer.compare(a, b);
          });
      for (int b : order) {
        frequency.merge(b, (long) touched.get(b), Long::sum);
      }
      for (int b : order.subList(0, Math.min(order.size(), capacity))) {
        if (cached.contains(b)) {
          continue;
        }
        if (cached.size() < capacity) {
          cached.add(b);
          continue;
        }
        int victim = -1;
        long least = Long.MAX_VALUE;
        for (int c : cached.descendingSet()) {
          long f = frequency.get(c);
          if (f < least) {
            least = f;
            victim = c;
          }
        }
        if (frequency.get(b) > least) {
          cached.remove(victim);
          cached.add(b);
        }
      }
      return hit;
    }
  }
}
