package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.bool;
import static io.kvslim.kv.method.Knob.budget;
import static io.kvslim.kv.method.Knob.integer;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.policy.HeadScores;
import io.kvslim.kv.policy.KvPolicy;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.Set;

/**
 * KV-Compress (Rehg 2024, "KV-Compress: Paged KV-Cache Compression with Variable Compression Rates
 * per Attention Head", arXiv:2410.00161 §3; METHODS.md E9): one ranking over every (layer, KV head)
 * of the sequence decides how many whole blocks each head loses, so heads keep different numbers of
 * tokens and freed memory comes back block by block. {@link Policy} follows the authors' vLLM fork
 * (IsaacRe/vllm-kvcompress, {@code vllm/kvcompress/metrics.py}):
 *
 * <ul>
 *   <li>metric of a cached token: the sum over the queries that saw it and over its KV head's query
 *       heads of the squared attention it received ({@code aggregate_prefill}, {@code
 *       aggregate_decode}: {@code use_l2}, the default; {@code average=true} divides by the number
 *       of queries that could see it, {@code use_average});
 *   <li>the last {@code protected} tokens cannot be evicted ({@code schedule_evictions} step 0,
 *       README: {@code protected_window_size=32});
 *   <li>each head's evictable tokens are sorted by metric and cut into groups of {@code block}
 *       tokens; a group's metric is its largest; all groups of all heads are ranked together and
 *       the lowest are evicted, a head always losing its lowest groups first ({@code
 *       schedule_evictions} steps 1–3);
 *   <li>the budget is {@code max_cache_tokens}: the sequence keeps about {@code layers × kvHeads ×
 *       budget} tokens (README), evicting whole groups after the prefill and, unless {@code
 *       once=true} ({@code compress_once}), again during decode whenever a group's worth is over.
 * </ul>
 */
public final class KvCompressMethod implements KvMethod {
  @Override
  public String name() {
    return "kvcompress";
  }

  @Override
  public Family family() {
    return Family.EVICTION;
  }

  @Override
  public String paper() {
    return "Rehg 2024, KV-Compress: Paged KV-Cache Compression with Variable Compression Rates per"
        + " Attention Head, arXiv:2410.00161 §3";
  }

  @Override
  public String summary() {
    return "KV-Compress: squared-attention metrics ranked over all heads; heads lose whole blocks.";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        budget("budget", "25%", "average tokens kept per (layer, KV head)"),
        integer("block", "16", "tokens a head loses at a time").atLeast(1),
        integer("protected", "32", "latest tokens never evicted").atLeast(0),
        bool("average", "false", "divide each metric by the queries that could see the token"),
        bool("once", "false", "compress only after the prefill, not during decode"));
  }

  @Override
  public Set<Need> needs() {
    return Set.of(Need.ATTENTION_PROBS);
  }

  @Override
  public KvPolicy policy(MethodCall c, PolicyContext ctx) {
    return new Policy(
        ctx.layers(),
        c.budget("budget"),
        c.integer("block"),
        c.integer("protected"),
        c.bool("average"),
        c.bool("once"),
        ctx.bytesPerToken());
  }

  /** Heads differ: one may keep every token it saw while others keep less. */
  @Override
  public long heldTokens(MethodCall c, int prompt, int maxNew, double bytesPerToken) {
    return (long) prompt + maxNew;
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of("kvcompress:budget=12.5%", "kvcompress:budget=25%", "kvcompress:budget=50%");
  }

  @Override
  public String specKeeping(int tokens) {
    return "kvcompress:budget=" + tokens;
  }

  @Override
  public String specCompressing(int tokens) {
    return "kvcompress:budget=" + Math.max(2, tokens / 4) + ",block=4,protected=4";
  }

  /** The policy of one sequence. */
  static final class Policy implements KvPolicy {
    private final boolean[] layers;
    private final Budget budget;
    private final int block;
    private final int protectedTokens;
    private final boolean average;
    private final boolean once;
    private final double bytesPerToken;
    private HeadScores scores;
    private float[] squared = new float[0];
    private int capacity = -1;
    private boolean prefilled;

    Policy(
        boolean[] layers,
        Budget budget,
        int block,
        int protectedTokens,
        boolean average,
        boolean once,
        double bytesPerToken) {
      this.layers = layers;
      this.budget = budget;
      this.block = block;
      this.protectedTokens = protectedTokens;
      this.average = average;
      this.once = once;
      this.bytesPerToken = bytesPerToken;
    }

    @Override
    public boolean observes(int layer) {
      return layers[layer];
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
      if (scores == null) {
        scores = new HeadScores(layers.length, cache.paged(0).kvHeads());
      }
      if (squared.length < count) {
        squared = new float[Math.max(count, squared.length * 2)];
      }
      for (int i = 0; i < count; i++) {
        squared[i] = probs[i] * probs[i];
      }
      scores.add(layer, kvHead, squared, count, 1f);
    }

    @Override
    public void afterStep(ManagedKvCache cache, KvCache.StepKind kind) {
      if (kind == KvCache.StepKind.PREFILL) {
        prefilled = true;
      } else if (once || !prefilled) {
        return;
      }
      if (capacity < 0) {
        capacity = Math.max(1, budget.tokens(cache.promptTokens(), bytesPerToken));
      }
      compress(cache);
    }

    /** Evicts the lowest-ranked groups of all heads until the sequence is within its budget. */
    private void compress(ManagedKvCache cache) {
      long held = 0;
      long heads = 0;
      for (int l = 0; l < layers.length; l++) {
        if (layers[l]) {
          PagedLayerKv layer = cache.paged(l);
          for (int g = 0; g < layer.kvHeads(); g++) {
            held += layer.size(g);
            heads++;
          }
        }
      }
      long groupsToEvict = (held - heads * capacity) / block;
      if (groupsToEvict <= 0) {
        return;
      }
      List<int[]> orders = new ArrayList<>(); // per (layer, head): evictable indices by metric
      List<float[]> sorted = new ArrayList<>();
      List<int[]> where = new ArrayList<>();
      for (int l = 0; l < layers.length; l++) {
        if (!layers[l]) {
          continue;
        }
        PagedLayerKv layer = cache.paged(l);
        for (int g = 0; g < layer.kvHeads(); g++) {
          float[] m = metrics(layer, l, g);
          int[] order = evictableByMetric(m, layer.size(g));
          float[] ms = new float[order.length];
          for (int i = 0; i < order.length; i++) {
            ms[i] = m[order[i]];
          }
          orders.add(order);
          sorted.add(ms);
          where.add(new int[] {l, g});
        }
      }
      int[] lose = groupsLost(sorted.toArray(new float[0][]), block, groupsToEvict);
      BitSet evict = new BitSet();
      for (int id = 0; id < orders.size(); id++) {
        if (lose[id] == 0) {
          continue;
        }
        int l = where.get(id)[0];
        int g = where.get(id)[1];
        PagedLayerKv layer = cache.paged(l);
        int size = layer.size(g);
        evict.clear();
        int[] order = orders.get(id);
        for (int i = 0; i < lose[id] * block; i++) {
          evict.set(order[i]);
        }
        layer.evict(g, evict);
        if (scores != null) {
          scores.evict(l, g, evict, size);
        }
      }
    }

    /** The accumulated metrics of one (layer, KV head), for tests. */
    float[] accumulated(int layer, int kvHead) {
      return scores == null ? new float[0] : scores.of(layer, kvHead);
    }

    /** The head's metrics, one per retained token (divided by the queries seen if asked). */
    private float[] metrics(PagedLayerKv layer, int l, int g) {
      int size = layer.size(g);
      float[] m = new float[size];
      if (scores != null) {
        System.arraycopy(scores.of(l, g), 0, m, 0, Math.min(size, scores.of(l, g).length));
      }
      if (average) {
        int[] pos = layer.positions(g);
        int last = pos[size - 1];
        for (int i = 0; i < size; i++) {
          m[i] /= last - pos[i] + 1;
        }
      }
      return m;
    }

    /**
     * How many groups each head loses: every head's evictable metrics (ascending) are cut into
     * groups of {@code block}, a group ranked by its largest metric; the {@code groupsToEvict}
     * lowest-ranked groups of all heads go (ties: lower head, then lower group), so a head always
     * loses its lowest groups first.
     */
    static int[] groupsLost(float[][] ascending, int block, long groupsToEvict) {
      List<Group> groups = new ArrayList<>();
      for (int h = 0; h < ascending.length; h++) {
        for (int k = 0; (k + 1) * block <= ascending[h].length; k++) {
          groups.add(new Group(ascending[h][(k + 1) * block - 1], h, k));
        }
      }
      groups.sort(Group.RANK);
      int[] lose = new int[ascending.length];
      for (int i = 0; i < Math.min(groupsToEvict, groups.size()); i++) {
        lose[groups.get(i).head]++;
      }
      return lose;
    }

    /** The head's evictable indices (all but the protected latest), lowest metric first. */
    private int[] evictableByMetric(float[] m, int size) {
      int n = Math.max(0, size - protectedTokens);
      Integer[] idx = new Integer[n];
      for (int i = 0; i < n; i++) {
        idx[i] = i;
      }
      java.util.Arrays.sort(
          idx, (a, b) -> m[a] != m[b] ? Float.compare(m[a], m[b]) : Integer.compare(a, b));
      int[] out = new int[n];
      for (int i = 0; i < n; i++) {
        out[i] = idx[i];
      }
      return out;
    }

    /** One head's k-th group of {@code block} tokens and its metric (the group's largest). */
    record Group(float metric, int head, int k) {
      static final java.util.Comparator<Group> RANK =
          java.util.Comparator.comparingDouble(Group::metric)
              .thenComparingInt(Group::head)
              .thenComparingInt(Group::k);
    }
  }
}
