package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.budget;
import static io.kvslim.kv.method.Knob.choice;
import static io.kvslim.kv.method.Knob.integer;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.policy.ColdSpill;
import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.policy.QuestPages;
import java.util.BitSet;
import java.util.List;
import java.util.Set;

/**
 * Quest (Tang et al. 2024, "Quest: Query-Aware Sparsity for Efficient Long-Context LLM Inference",
 * arXiv:2406.10774; METHODS.md N7): nothing is evicted; each decode step, in the layers from {@code
 * skip_layers} on, every KV head attends exactly over its current page plus the {@code K−1} other
 * pages of {@code page_size} tokens whose key bounds promise the largest {@code q·k}, {@code K =
 * token_budget / page_size} ({@link QuestPages}). The prefill and the first {@code skip_layers}
 * layers attend over everything: the reference's {@code if q_len > 1 or self.layer_id < 2: return
 * self.flash_forward(...)} ({@code evaluation/quest_attention.py} line 84 of mit-han-lab/Quest),
 * and its page budget counts the last page ({@code quest/utils/controller.py} line 14, "Real page
 * budget including the last page"; lines 111-118 read the top {@code budget − 1} others).
 *
 * <p>The KV stays in RAM unless {@code spill=true} moves the blocks outside the last page to a
 * spill file ({@link io.kvslim.kv.policy.ColdSpill}), fetched back per step as selected. The
 * selection is a set of pages, i.e. retained-token ranges ({@link QuestPages#ranges}), handed to
 * the layer as the only tokens its next attention call reads ({@link
 * PagedLayerKv#restrictNextAttention}; blocks without a selected token are not touched). The policy
 * counts the bytes those reads cover ({@link Policy#bytesRead}), separately from the bytes held,
 * which are the full cache's.
 */
public final class QuestMethod implements KvMethod {
  @Override
  public String name() {
    return "quest";
  }

  @Override
  public Family family() {
    return Family.EVICTION;
  }

  @Override
  public String paper() {
    return "Tang et al. 2024, Quest: Query-Aware Sparsity for Efficient Long-Context LLM Inference,"
        + " arXiv:2406.10774, §3";
  }

  @Override
  public String summary() {
    return "Quest: each decode step attends only to the pages whose min/max keys bound q·k highest.";
  }

  @Override
  public List<Knob> knobs() {
    return SpillKnobs.with(
        List.of(
            integer("page_size", "16", "tokens a page").between(1, 4096),
            budget(
                "token_budget", "1024", "tokens read per head and decode step (pages × page_size)"),
            integer("skip_layers", "2", "first layers attending over every token").atLeast(0),
            choice(
                "gqa",
                "max",
                "per KV head: max of the group's page bounds, or union of each query head's pages",
                "max",
                "union")));
  }

  @Override
  public Set<Need> needs() {
    return Set.of(Need.QUERIES);
  }

  @Override
  public KvPolicy policy(MethodCall c, PolicyContext ctx) {
    return new Policy(
        ctx.layers(),
        ctx.headDim(),
        c.integer("page_size"),
        c.budget("token_budget"),
        c.integer("skip_layers"),
        c.string("gqa").equals("union"),
        ctx.bytesPerToken(),
        SpillKnobs.of(c));
  }

  /** Nothing is evicted: the cache holds every token. */
  @Override
  public long heldTokens(MethodCall c, int prompt, int maxNew, double bytesPerToken) {
    return (long) prompt + maxNew;
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of("quest:token_budget=12.5%", "quest:token_budget=25%");
  }

  @Override
  public String specKeeping(int tokens) {
    return "quest:token_budget=" + tokens;
  }

  @Override
  public String specCompressing(int tokens) {
    return "quest:token_budget=" + Math.max(1, tokens / 4) + ",page_size=4,skip_layers=0";
  }

  /** Per sequence: the page bounds of every (layer, KV head) and each decode step's selection. */
  public static final class Policy implements KvPolicy {
    private final boolean[] layers;
    private final int dim;
    private final int pageSize;
    private final Budget budget;
    private final int skipLayers;
    private final boolean union;
    private final double bytesPerToken;
    private final QuestPages[][] pages;
    private final ColdSpill spill; // null: everything stays in RAM
    private final BitSet lastPage = new BitSet();
    private final BitSet chosen = new BitSet();
    private boolean prefilling; // the layer whose queries came last is in a prefill step
    private BitSet[] tokens = new BitSet[0];
    private double stepBytes;
    private double readBytes;
    private long steps;
    private long selectedPages;

    Policy(
        boolean[] layers,
        int dim,
        int pageSize,
        Budget budget,
        int skipLayers,
        boolean union,
        double bytesPerToken,
        ColdSpill spill) {
      this.layers = layers;
      this.dim = dim;
      this.pageSize = pageSize;
      this.budget = budget;
      this.skipLayers = skipLayers;
      this.union = union;
      this.bytesPerToken = bytesPerToken;
      this.spill = spill;
      this.pages = new QuestPages[layers.length][];
    }

    /** Every layer's queries: decode steps of the deeper layers select, the others are counted. */
    @Override
    public boolean wantsQueries(int layer) {
      return layer < layers.length && layers[layer];
    }

    @Override
    public void onQueries(
        ManagedKvCache cache,
        int layer,
        int n,
        int[] positions,
        int heads,
        float[] q,
        float scale) {
      prefilling = n != 1 || cache.promptTokens() < 0;
      if (prefilling) {
        if (spill != null && layer >= skipLayers) {
          PagedLayerKv paged = cache.paged(layer);
          for (int g = 0; g < paged.kvHeads(); g++) {
            spill.fetchAll(paged.head(g)); // a later prefill attends over everything
          }
        }
        return; // the prefill attends over everything
      }
      PagedLayerKv paged = cache.paged(layer);
      int kvHeads = paged.kvHeads();
      int group = heads / kvHeads;
      if (layer < skipLayers) {
        for (int g = 0; g < kvHeads; g++) {
          stepBytes += QuestPages.bytes(paged.head(g), null);
        }
        return;
      }
      int k = Math.max(1, budget.tokens(cache.promptTokens(), bytesPerToken) / pageSize);
      if (pages[layer] == null) {
        pages[layer] = new QuestPages[kvHeads];
        for (int g = 0; g < kvHeads; g++) {
          pages[layer][g] = new QuestPages(pageSize, dim);
        }
      }
      if (tokens.length < kvHeads) {
        tokens = new BitSet[kvHeads];
        for (int g = 0; g < kvHeads; g++) {
          tokens[g] = new BitSet();
        }
      }
      if (spill != null) {
        spill.name(paged, layer);
      }
      for (int g = 0; g < kvHeads; g++) {
        QuestPages bounds = pages[layer][g];
        if (spill != null && paged.size(g) - bounds.covered() > 1) {
          spill.fetchAll(paged.head(g)); // the bounds fold in many tokens: they may read all keys
        }
        bounds.update(paged.head(g));
        if (bounds.select(q, 0, g * group, group, k, union, chosen)) {
          bounds.tokens(chosen, paged.size(g), tokens[g]);
          paged.restrictNextAttention(g, tokens[g]);
          stepBytes += QuestPages.bytes(paged.head(g), tokens[g]);
          selectedPages += chosen.cardinality();
          if (spill != null) {
            int size = paged.size(g);
            lastPage.clear();
            lastPage.set((size - 1) / pageSize * pageSize, size);
            spill.sync(paged.head(g), tokens[g], lastPage);
          }
        } else {
          stepBytes += QuestPages.bytes(paged.head(g), null);
          selectedPages += bounds.pages();
          if (spill != null) {
            spill.fetchAll(paged.head(g));
          }
        }
      }
    }

    /**
     * After a layer's attention, the blocks fetched for it go cold again ({@link
     * ColdSpill#release}); in a prefill step its settled blocks spill too ({@link
     * ColdSpill#spillSettled}).
     */
    @Override
    public void afterAttention(ManagedKvCache cache, int layer) {
      if (spill != null) {
        spill.release();
      }
      if (spill != null
          && prefilling
          && layer >= skipLayers
          && layer < layers.length
          && layers[layer]) {
        PagedLayerKv paged = cache.paged(layer);
        spill.name(paged, layer);
        for (int g = 0; g < paged.kvHeads(); g++) {
          spill.spillSettled(paged.head(g));
        }
      }
    }

    @Override
    public void afterStep(ManagedKvCache cache, KvCache.StepKind kind) {
      if (kind == KvCache.StepKind.DECODE) {
        readBytes += stepBytes;
        steps++;
      }
      stepBytes = 0;
      if (spill != null) {
        spill.afterStep(kind);
      }
    }

    /** Bytes of the page bounds of every (layer, KV head). */
    @Override
    public long indexBytes() {
      long b = 0;
      for (QuestPages[] l : pages) {
        for (int g = 0; l != null && g < l.length; g++) {
          b += l[g].bytes();
        }
      }
      return b;
    }

    /** The cold tier, or null without {@code spill=true}. */
    public ColdSpill spill() {
      return spill;
    }

    @Override
    public ColdSpill coldSpill() {
      return spill;
    }

    @Override
    public double bytesFetched() {
      return spill == null ? -1 : spill.bytesFetched();
    }

    @Override
    public void close() {
      if (spill != null) {
        spill.close();
      }
    }

    /** Bytes of keys and values the decode steps so far read, over every layer and KV head. */
    public double bytesRead() {
      return readBytes;
    }

    @Override
    public double decodeBytesAttended() {
      return readBytes;
    }

    /** Decode steps so far. */
    public long decodeSteps() {
      return steps;
    }

    /** Mean bytes read per decode step (0 before the first). */
    public double bytesReadPerStep() {
      return steps == 0 ? 0 : readBytes / steps;
    }

    /** Pages read, over the selecting layers and their KV heads, since the sequence began. */
    public long pagesSelected() {
      return selectedPages;
    }
  }
}
