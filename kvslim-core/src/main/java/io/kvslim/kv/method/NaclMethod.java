package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.integer;
import static io.kvslim.kv.method.Knob.number;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.policy.ChunkedPrefill;
import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.policy.Selection;
import io.kvslim.kv.store.HeadStore;
import java.util.BitSet;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;

/**
 * NACL (Chen et al. 2024, "NACL: A General and Effective KV Cache Eviction Framework for LLMs at
 * Inference Time", ACL 2024, arXiv:2408.03675; METHODS.md E6): one eviction of the whole prompt at
 * the end of its encoding. The last {@code proxy·n} prompt queries (the proxy tokens, typically the
 * question) score every token with attention computed <b>without</b> the causal mask; each KV head
 * keeps its sink tokens, the top {@code keep·n} of the middle range by that score, a sample of
 * {@code random·n} more drawn without replacement with probabilities {@code softmax(score)} over
 * the rest of the middle range (which reduces the bias of the scores), and the recent tokens. No
 * eviction while decoding. Sizes, ranges, the non-causal proxy attention and the sampling follow
 * the authors' {@code kvcache_eviction} in {@code llama_nacl_patch.py} (PaddlePaddle/Research,
 * ACL2024-NACL, the patch of PaddleNLP PR #8839; the function after {@code forward}, its size
 * lines, the non-causal {@code flash_attn} call and the per-head loop): {@code proxy_tokens =
 * int(ratio·n)}, {@code recent = int(protect·n) − sinks}, {@code int(keep·n)} and {@code
 * int(random·n)}, {@code flash_attn(..., causal=False)} reduced over the proxy queries, {@code
 * np.random.choice(rest, size, replace=False, p=softmax(rest scores))}; eviction only when {@code n
 * > min_len}. Departures: the recent count is clamped at 0 (the authors' code assumes {@code
 * protect·n ≥ sinks}); where the sizes cover the prompt nothing is evicted (the authors assert); a
 * GQA head's score is the mean over its query heads (their models are MHA), so the softmax sees
 * scores on the scale of one head's. Defaults are the authors' ({@code args.py}: 0.01, 0.12, 0.07,
 * 0.01, 256 sinks, min 2048); on small contexts lower {@code sinks} and {@code min_len} (the
 * benchmark specs do).
 */
public final class NaclMethod implements KvMethod {
  @Override
  public String name() {
    return "nacl";
  }

  @Override
  public Family family() {
    return Family.EVICTION;
  }

  @Override
  public String paper() {
    return "Chen et al. 2024, NACL: A General and Effective KV Cache Eviction Framework for LLMs at"
        + " Inference Time, ACL 2024, arXiv:2408.03675 §3";
  }

  @Override
  public String summary() {
    return "NACL: once after prefill, non-causal proxy-query scores keep the top tokens plus a"
        + " score-weighted random sample, sinks and recent tokens.";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        number("proxy", "0.01", "share of the prompt's last tokens that score (proxy queries)")
            .between(0, 1),
        number("keep", "0.12", "share of the prompt kept by proxy score").between(0, 1),
        number("random", "0.07", "share of the prompt kept by score-weighted sampling")
            .between(0, 1),
        number("protect", "0.01", "share of the prompt protected: sinks + recent tokens")
            .between(0, 1),
        integer("sinks", "256", "first tokens always kept").atLeast(0),
        integer("min_len", "2048", "prompts of at most this many tokens are not compressed")
            .atLeast(0),
        integer("seed", "0", "seed of the sampling").atLeast(0),
        integer("chunk", "0", "compress inside the prefill every N prompt tokens (0: after it)")
            .atLeast(0));
  }

  @Override
  public Set<Need> needs() {
    return Set.of(Need.QUERIES);
  }

  @Override
  public void validate(MethodCall c) {
    if (c.number("keep") + c.number("random") > 1) {
      throw new KvSpecException(
          "nacl: keep + random must be at most 1 (shares of the prompt), got "
              + c.number("keep")
              + " + "
              + c.number("random"));
    }
  }

  @Override
  public KvPolicy policy(MethodCall c, PolicyContext ctx) {
    Policy p =
        new Policy(
            ctx.layers(),
            c.number("proxy"),
            c.number("keep"),
            c.number("random"),
            c.number("protect"),
            c.integer("sinks"),
            c.integer("min_len"),
            c.integer("seed"));
    return ChunkedPrefill.wrap(p, ctx.layers(), c.integer("chunk"));
  }

  @Override
  public long heldTokens(MethodCall c, int prompt, int maxNew, double bytesPerToken) {
    return (long) prompt + maxNew; // the whole prompt until it is encoded, no decode eviction
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of(
        "nacl:keep=0.08,random=0.045,sinks=4,min_len=64",
        "nacl:keep=0.16,random=0.09,sinks=4,min_len=64",
        "nacl:keep=0.32,random=0.18,sinks=4,min_len=64");
  }

  @Override
  public String specKeeping(int tokens) {
    return "nacl:keep=1,random=0,sinks=0,min_len=0";
  }

  @Override
  public String specCompressing(int tokens) {
    return "nacl:proxy=0.1,keep=0.2,random=0.1,protect=0.1,sinks=1,min_len=0";
  }

  /** The sizes of one eviction of a prompt of {@code n} tokens, as the authors compute them. */
  record Sizes(int proxy, int sinks, int recent, int keep, int random) {
    static Sizes of(int n, double proxy, double keep, double random, double protect, int sinks) {
      int s = Math.min(sinks, n);
      return new Sizes(
          (int) (proxy * n),
          s,
          Math.max(0, Math.min(n - s, (int) (protect * n) - s)),
          (int) (keep * n),
          (int) (random * n));
    }

    /** Tokens kept (at most {@code n}). */
    int kept(int n) {
      return Math.min(n, sinks + recent + keep + random);
    }
  }

  /** NACL's eviction: see {@link NaclMethod}. */
  static final class Policy implements ChunkedPrefill.Compressor {
    private final boolean[] layers;
    private final double proxy;
    private final double keep;
    private final double random;
    private final double protect;
    private final int sinks;
    private final int minLen;
    private final long seed;
    private final float[][] rows; // per layer: the last queries, heads × headDim each
    private final int[] count; // per layer: rows held
    private final int[] seen; // per layer: rows seen
    private int heads;
    private int headDim;
    private float scale;
    private boolean done;

    Policy(
        boolean[] layers,
        double proxy,
        double keep,
        double random,
        double protect,
        int sinks,
        int minLen,
        long seed) {
      this.layers = layers;
      this.proxy = proxy;
      this.keep = keep;
      this.random = random;
      this.protect = protect;
      this.sinks = sinks;
      this.minLen = minLen;
      this.seed = seed;
      this.rows = new float[layers.length][];
      this.count = new int[layers.length];
      this.seen = new int[layers.length];
    }

    @Override
    public boolean wantsQueries(int layer) {
      return layers[layer] && !done;
    }

    /**
     * Keeps the last {@code ⌈proxy·t⌉ + 1} of the {@code t} rows seen: the final proxy window (the
     * last {@code ⌊proxy·n⌋} of {@code n ≥ t} rows) never reaches further back.
     */
    @Override
    public void onQueries(
        ManagedKvCache cache, int layer, int n, int[] positions, int heads, float[] q, float sc) {
      this.heads = heads;
      this.headDim = cache.paged(layer).headDim();
      this.scale = sc;
      int rowLen = heads * headDim;
      seen[layer] += n;
      int want = Math.min(seen[layer], (int) Math.ceil(proxy * seen[layer]) + 1);
      float[] buf = rows[layer];
      if (buf == null || buf.length < want * rowLen) {
        float[] grown =
            new float[Math.max(want, 2 * (buf == null ? 0 : buf.length / rowLen)) * rowLen];
        if (buf != null) {
          System.arraycopy(buf, 0, grown, 0, count[layer] * rowLen);
        }
        rows[layer] = buf = grown;
      }
      int take = Math.min(n, want);
      int keepOld = Math.min(count[layer], want - take);
      if (keepOld > 0) {
        System.arraycopy(buf, (count[layer] - keepOld) * rowLen, buf, 0, keepOld * rowLen);
      }
      System.arraycopy(q, (n - take) * rowLen, buf, keepOld * rowLen, take * rowLen);
      count[layer] = keepOld + take;
    }

    @Override
    public void afterStep(ManagedKvCache cache, KvCache.StepKind kind) {
      if (done || kind != KvCache.StepKind.PREFILL) {
        return;
      }
      done = true;
      for (int l = 0; l < layers.length; l++) {
        compressLayer(cache, l, cache.promptTokens());
        rows[l] = null;
      }
    }

    /**
     * Sizes are shares of the prompt's {@code promptTokens}; the ranges (sinks, middle, recent) are
     * of what each head holds, which inside a chunked prefill is the kept tokens plus the chunk,
     * scored by the last proxy rows seen so far.
     */
    @Override
    public void compressLayer(ManagedKvCache cache, int l, int promptTokens) {
      Sizes z = Sizes.of(promptTokens, proxy, keep, random, protect, sinks);
      if (!layers[l] || rows[l] == null || promptTokens <= minLen || z.proxy <= 0) {
        return;
      }
      PagedLayerKv layer = cache.paged(l);
      for (int g = 0; g < layer.kvHeads(); g++) {
        int n = layer.size(g);
        if (z.kept(n) >= n) {
          continue;
        }
        float[] score = proxyScores(layer.store().head(g), l, g, layer.kvHeads(), z.proxy);
        layer.evict(
            g,
            evicted(score, n, z, new SplittableRandom(seed * 0x9E3779B97F4A7C15L + l * 1031L + g)));
      }
    }

    /**
     * The retained indices to evict: all but the sinks, the top {@code keep} of the middle range by
     * score, {@code random} more sampled from the rest of the middle range with probabilities
     * {@code softmax(score)}, without replacement, and the recent tokens.
     */
    static BitSet evicted(float[] score, int n, Sizes z, SplittableRandom rnd) {
      int from = z.sinks;
      int to = n - z.recent;
      BitSet kept = new BitSet(n);
      kept.set(0, from);
      kept.set(to, n);
      BitSet top = new BitSet(n);
      Selection.highest(score, from, to, z.keep, top);
      kept.or(top);
      int rest = to - from - top.cardinality();
      int draws = Math.min(z.random, rest);
      if (draws > 0) {
        int[] idx = new int[rest];
        double[] w = new double[rest];
        double max = Double.NEGATIVE_INFINITY;
        for (int i = from, k = 0; i < to; i++) {
          if (!top.get(i)) {
            idx[k] = i;
            max = Math.max(max, score[i]);
            k++;
          }
        }
        double total = 0;
        for (int k = 0; k < rest; k++) {
          w[k] = Math.exp(score[idx[k]] - max);
          total += w[k];
        }
        for (int d = 0; d < draws; d++) {
          double u = rnd.nextDouble() * total;
          int pick = -1;
          double acc = 0;
          for (int k = 0; k < rest; k++) {
            if (w[k] > 0) {
              acc += w[k];
              pick = k;
              if (u < acc) {
                break;
              }
            }
          }
          kept.set(idx[pick]);
          total -= w[pick];
          w[pick] = 0;
        }
      }
      BitSet evict = new BitSet(n);
      evict.set(0, n);
      evict.andNot(kept);
      return evict;
    }

    /**
     * Per retained token, the proxy queries' attention on it without the causal mask: for each of
     * the last {@code proxy} rows and each query head of KV head {@code g}, the softmax over all
     * the head's tokens, summed over the rows, averaged over the group's query heads.
     */
    private float[] proxyScores(HeadStore head, int l, int g, int kvHeads, int proxyRows) {
      int n = head.size();
      float[] keys = new float[n * headDim];
      head.readKeys(keys);
      int group = heads / kvHeads;
      int rowLen = heads * headDim;
      float[] q = rows[l];
      int last = count[l];
      int first = Math.max(0, last - proxyRows);
      double[] sum = new double[n];
      double[] logits = new double[n];
      for (int r = first; r < last; r++) {
        for (int h = g * group; h < (g + 1) * group; h++) {
          int qOff = r * rowLen + h * headDim;
          double max = Double.NEGATIVE_INFINITY;
          for (int t = 0; t < n; t++) {
            double dot = 0;
            for (int d = 0; d < headDim; d++) {
              dot += q[qOff + d] * keys[t * headDim + d];
            }
            logits[t] = dot * scale;
            max = Math.max(max, logits[t]);
          }
          double z = 0;
          for (int t = 0; t < n; t++) {
            logits[t] = Math.exp(logits[t] - max);
            z += logits[t];
          }
          for (int t = 0; t < n; t++) {
            sum[t] += logits[t] / z;
          }
        }
      }
      float[] score = new float[n];
      for (int t = 0; t < n; t++) {
        score[t] = (float) (sum[t] / group);
      }
      return score;
    }
  }
}
