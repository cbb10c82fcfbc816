package io.kvslim.kv.cache;

import io.kvslim.kv.AttentionObserver;
import io.kvslim.kv.AttentionOrder;
import io.kvslim.kv.ContextReplay;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.LayerKv;
import io.kvslim.kv.PromptSegments;
import io.kvslim.kv.Rotary;
import io.kvslim.kv.method.DistantKeys;
import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.kv.store.LayerStore;
import io.kvslim.tensor.Parallel;
import java.util.List;

/**
 * A sequence's compressible cache: per layer a {@link PagedLayerKv} in that layer's storage format,
 * plus the {@link KvPolicy}s that evict from it. Each layer is handed to the model through a thin
 * decorator that feeds the policies the queries and attention probabilities they asked for, so the
 * model knows nothing of policies.
 */
public final class ManagedKvCache implements KvCache {
  private final PagedLayerKv[] layers;
  private final Front[] views;
  private final int[] shareOf; // per layer: the layer whose keys and values it reads (itself)
  private final DistantKeys distant; // POD's groups sharing distant keys, or null
  private final KvCacheFormat[] formats;
  private final boolean[] cacheRelative; // per layer: keys stored before RoPE (rolling positions)
  private final List<KvPolicy> policies;
  private final BlockPool pool;
  private int tokens; // tokens appended so far (the next position when positions are 0..n-1)
  private int promptTokens = -1;
  private int announcedPrompt = -1; // beginPrompt's length, until the prompt ends
  private PromptSegments segments; // labelPrompt's labels, or null
  private final int prefillChunk; // the smallest of the policies' (N10), MAX_VALUE for none
  private int steps;
  private long peakBytes;
  private long policyNanos;
  // the policies' time in the step in progress (their hooks during it, then its afterStep), and its
  // sum over the decode steps
  private long stepPolicyNanos;
  private long decodePolicyNanos;
  private boolean closed;

  public ManagedKvCache(
      BlockPool pool, int kvHeads, int headDim, KvCacheFormat[] formats, List<KvPolicy> policies) {
    this(pool, kvHeads, headDim, formats, policies, null);
  }

  /**
   * A cache whose layer {@code l} reads the keys and values of layer {@code shareOf[l]} (an earlier
   * layer that stores its own, KVSharer) instead of storing any: such a layer holds no block and
   * the model computes no keys or values for it. {@code shareOf} null: every layer stores its own.
   */
  public ManagedKvCache(
      BlockPool pool,
      int kvHeads,
      int headDim,
      KvCacheFormat[] formats,
      List<KvPolicy> policies,
      int[] shareOf) {
    this(pool, kvHeads, headDim, formats, policies, shareOf, null);
  }

  /**
   * As {@link #ManagedKvCache(BlockPool, int, int, KvCacheFormat[], List, int[])}, with POD's
   * groups ({@code distant}, null for none): a layer that is not first in its group attends through
   * a {@link DistantKeyLayer} that reads its group's first layer's keys for distant tokens and
   * drops its own.
   */
  public ManagedKvCache(
      BlockPool pool,
      int kvHeads,
      int headDim,
      KvCacheFormat[] formats,
      List<KvPolicy> policies,
      int[] shareOf,
      DistantKeys distant) {
    if (distant != null && distant.firstOf().length != formats.length) {
      throw new IllegalArgumentException(
          "POD's groups do not cover the " + formats.length + " layers");
    }
    this.distant = distant;
    this.shareOf = identityOr(shareOf, formats.length);
    this.pool = pool;
    this.policies = List.copyOf(policies);
    this.formats = formats.clone();
    this.layers = new PagedLayerKv[formats.length];
    this.views = new Front[formats.length];
    this.cacheRelative = new boolean[formats.length];
    for (int l = 0; l < formats.length; l++) {
      for (KvPolicy p : this.policies) {
        cacheRelative[l] |= p.cacheRelativePositions(l);
      }
    }
    int chunk = Integer.MAX_VALUE;
    for (KvPolicy p : this.policies) {
      chunk = Math.min(chunk, p.prefillChunk());
    }
    this.prefillChunk = chunk;
    PagedLayerKv.Scratch scratch = new PagedLayerKv.Scratch(); // layers attend one at a time
    try {
      for (int l = 0; l < formats.length; l++) {
        layers[l] =
            new PagedLayerKv(
                new LayerStore(pool, kvHeads, headDim, formats[l]), scratch, cacheRelative[l]);
        if (this.shareOf[l] != l) {
          views[l] = new Borrowed(layers[this.shareOf[l]]);
        } else if (distant != null && distant.follows(l)) {
          views[l] =
              new DistantKeyLayer(layers[l], layers[distant.firstOf()[l]], distant, this::notePeak);
        } else {
          views[l] = new View(l);
        }
      }
    } catch (RuntimeException e) {
      close();
      throw e;
    }
  }

  @Override
  public int layerCount() {
    return layers.length;
  }

  @Override
  public LayerKv layer(int layer) {
    return views[layer];
  }

  /**
   * One cache through which several fresh caches with the same storage formats take the same prompt
   * at once. Each member stores the same keys and values, and its policies see the same queries and
   * attention probabilities, as when it is prefilled alone; attention runs once, over the first
   * member's storage. This is exact because policies act only after a step: until the prefill ends,
   * caches with equal formats hold equal tokens, whatever their policies. {@code afterStep} reaches
   * every member in order; closing the shared cache closes nothing (the members stay the caller's).
   * Use it for one prefill step only, then go on with the members.
   *
   * @throws IllegalArgumentException when the list is empty, a member has taken tokens, or the
   *     members' formats differ
   */
  public static KvCache sharedPrefill(List<ManagedKvCache> members) {
    if (members.isEmpty()) {
      throw new IllegalArgumentException("a shared prefill needs at least one cache");
    }
    ManagedKvCache first = members.get(0);
    for (ManagedKvCache m : members) {
      if (m.tokens != 0 || m.closed) {
        throw new IllegalArgumentException("a shared prefill needs fresh, open caches");
      }
      if (m.prefillChunk != Integer.MAX_VALUE || m.thinsPrefill()) {
        throw new IllegalArgumentException(
            "a cache that compresses inside its prefill (chunk=, pyramidinfer) cannot share one");
      }
      if (m.distant != null && members.size() > 1) {
        throw new IllegalArgumentException(
            "a cache whose layers share distant keys (pod) takes its prompt alone");
      }
      if (!m.sameFormats(first)) {
        throw new IllegalArgumentException(
            "caches in a shared prefill must store every layer in the same format");
      }
    }
    return new Shared(List.copyOf(members));
  }

  /**
   * Whether this cache stores every layer as {@code other} does: in the same format, with keys
   * before or after RoPE alike (cache-relative positions store them before), the same layers
   * reading others' keys and values; never for a cache whose layers share distant keys (pod), which
   * attends differently from what its storage alone says.
   */
  public boolean sameFormats(ManagedKvCache other) {
    return distant == null
        && other.distant == null
        && java.util.Arrays.equals(formats, other.formats)
        && java.util.Arrays.equals(cacheRelative, other.cacheRelative)
        && java.util.Arrays.equals(shareOf, other.shareOf);
  }

  /** The layer whose keys and values {@code layer} reads: itself unless KVSharer shares it. */
  public int shareOf(int layer) {
    return shareOf[layer];
  }

  private static int[] identityOr(int[] shareOf, int layers) {
    int[] out = new int[layers];
    for (int l = 0; l < layers; l++) {
      out[l] = shareOf == null ? l : shareOf[l];
      if (out[l] < 0 || out[l] > l || (out[l] != l && shareOf[out[l]] != out[l])) {
        throw new IllegalArgumentException(
            "layer " + l + " cannot read layer " + out[l] + "'s keys and values");
      }
    }
    return out;
  }

  /**
   * A layer that reads an earlier layer's keys and values (KVSharer): appends nothing, holds no
   * bytes, and attends over the other layer's storage with its own queries.
   */
  private static final class Borrowed extends Front {
    Borrowed(PagedLayerKv source) {
      super(source);
    }

    @Override
    public boolean storesKv() {
      return false;
    }

    @Override
    public void append(int n, int[] positions, float[] keys, float[] values) {}

    @Override
    AttentionObserver observerFor(
        int n,
        int[] positions,
        int heads,
        float[] queries,
        float scale,
        AttentionObserver engineObserver) {
      return engineObserver;
    }

    @Override
    public long bytes() {
      return 0;
    }

    @Override
    public long bytes(int kvHead) {
      return 0;
    }
  }

  /** The caches of {@link #sharedPrefill}, seen by the model as one. */
  private static final class Shared implements KvCache {
    private final List<ManagedKvCache> members;
    private final LayerKv[] views;

    Shared(List<ManagedKvCache> members) {
      this.members = members;
      this.views = new LayerKv[members.get(0).layers.length];
      for (int l = 0; l < views.length; l++) {
        views[l] = new SharedLayer(l);
      }
    }

    @Override
    public int layerCount() {
      return views.length;
    }

    @Override
    public LayerKv layer(int layer) {
      return views[layer];
    }

    @Override
    public long bytes() {
      return members.get(0).bytes();
    }

    @Override
    public boolean wantsReplay() {
      for (ManagedKvCache m : members) {
        if (m.wantsReplay()) {
          return true;
        }
      }
      return false;
    }

    @Override
    public void replay(ContextReplay replay) {
      for (ManagedKvCache m : members) { // each over its own storage, which the passes leave as is
        m.replay(replay);
      }
    }

    @Override
    public void afterStep(StepKind kind) {
      for (ManagedKvCache m : members) {
        m.afterStep(kind);
      }
    }

    @Override
    public void close() {}

    private final class SharedLayer extends Front {
      private final int layer;

      SharedLayer(int layer) {
        super(members.get(0).views[layer].paged);
        this.layer = layer;
      }

      @Override
      public boolean storesKv() {
        return members.get(0).views[layer].storesKv(); // the same in every member (sameFormats)
      }

      @Override
      public void append(int n, int[] positions, float[] keys, float[] values) {
        for (ManagedKvCache m : members) {
          m.views[layer].append(n, positions, keys, values);
        }
      }

      @Override
      public boolean wantsAttentionOutput() {
        for (ManagedKvCache m : members) {
          if (m.views[layer].wantsAttentionOutput()) {
            return true;
          }
        }
        return false;
      }

      @Override
      public void attentionOutput(int rows, int dim, float[] x, float[] out, int off) {
        for (ManagedKvCache m : members) {
          if (m.views[layer].wantsAttentionOutput()) {
            m.views[layer].attentionOutput(rows, dim, x, out, off);
          }
        }
      }

      /** Attention ran over the first member (which flushed); the others quantize now too. */
      @Override
      void attended() {
        for (ManagedKvCache m : members) {
          m.layers[layer].flushResidual();
        }
      }

      @Override
      public boolean appliesRope(Rotary rope) {
        boolean own = false;
        for (ManagedKvCache m : members) {
          own = m.views[layer].appliesRope(rope); // the same in every member (sameFormats)
        }
        return own;
      }

      @Override
      AttentionObserver observerFor(
          int n,
          int[] positions,
          int heads,
          float[] queries,
          float scale,
          AttentionObserver engineObserver) {
        AttentionObserver o = null;
        for (ManagedKvCache m : members) {
          if (m.views[layer] instanceof View v) {
            v.offerQueries(n, positions, heads, queries, scale);
            o = chain(o, v.observer);
          }
        }
        return chain(o, engineObserver);
      }
    }
  }

  /**
   * A layer as the model sees it, over one {@link PagedLayerKv}: attention runs there with the
   * observer {@link #observerFor} returns (after handing the policies their queries).
   */
  abstract static class Front implements LayerKv {
    final PagedLayerKv paged;

    Front(PagedLayerKv paged) {
      this.paged = paged;
    }

    /** Offers the call's queries to the policies that want them; the observer for the call. */
    abstract AttentionObserver observerFor(
        int n,
        int[] positions,
        int heads,
        float[] queries,
        float scale,
        AttentionObserver engineObserver);

    @Override
    public int kvHeads() {
      return paged.kvHeads();
    }

    @Override
    public int headDim() {
      return paged.headDim();
    }

    @Override
    public void attend(
        int n,
        int[] positions,
        int heads,
        float[] queries,
        float scale,
        float[] out,
        AttentionObserver engineObserver) {
      attend(n, positions, heads, queries, scale, out, engineObserver, null);
    }

    @Override
    public void attend(
        int n,
        int[] positions,
        int heads,
        float[] queries,
        float scale,
        float[] out,
        AttentionObserver engineObserver,
        Parallel pool) {
      attend(n, positions, heads, queries, scale, out, engineObserver, pool, AttentionOrder.OWN);
    }

    @Override
    public void attend(
        int n,
        int[] positions,
        int heads,
        float[] queries,
        float scale,
        float[] out,
        AttentionObserver engineObserver,
        Parallel pool,
        AttentionOrder order) {
      AttentionObserver o = observerFor(n, positions, heads, queries, scale, engineObserver);
      paged.attend(n, positions, heads, queries, scale, out, o, pool, order);
      attended();
    }

    /** After an attention call over {@link #paged}, which has flushed its residual window. */
    void attended() {}

    @Override
    public boolean appliesRope(Rotary rope) {
      return paged.appliesRope(rope);
    }

    @Override
    public int size(int kvHead) {
      return paged.size(kvHead);
    }

    @Override
    public long bytes() {
      return paged.bytes();
    }

    @Override
    public long bytes(int kvHead) {
      return paged.bytes(kvHead);
    }

    /** Both observers, {@code a} first; either may be null. */
    static AttentionObserver chain(AttentionObserver a, AttentionObserver b) {
      if (a == null) {
        return b;
      }
      if (b == null) {
        return a;
      }
      return (qi, h, g, probs, count) -> {
        a.observe(qi, h, g, probs, count);
        b.observe(qi, h, g, probs, count);
      };
    }
  }

  /** The paged storage of a layer, for policies. */
  public PagedLayerKv paged(int layer) {
    return layers[layer];
  }

  public BlockPool pool() {
    return pool;
  }

  /**
   * Whether a policy of this cache spills blocks to a cold store ({@code spill=true}), whose loss
   * {@link io.kvslim.engine.KvRecompute} recovers from.
   */
  public boolean spills() {
    for (KvPolicy p : policies) {
      if (p.coldSpill() != null) {
        return true;
      }
    }
    return false;
  }

  /**
   * Sends the blocks this cache's policies spill to {@code storage} instead of the pool's: a cache
   * recomputed after a lost block spills to a local file ({@link
   * io.kvslim.kv.store.ColdStorage#forRecompute}). Only before the first spill.
   *
   * @throws IllegalStateException if a block was spilled already
   */
  public void spillTo(io.kvslim.kv.store.ColdStorage storage) {
    for (KvPolicy p : policies) {
      if (p.coldSpill() != null) {
        p.coldSpill().use(storage);
      }
    }
  }

  /** Length of the prompt (the first prefill), or -1 before it ended. */
  public int promptTokens() {
    return promptTokens;
  }

  /**
   * The prompt's length while it is being prefilled: as {@link #beginPrompt} announced it, or the
   * tokens so far when nobody did; {@link #promptTokens} once it ended.
   */
  public int plannedPromptTokens() {
    if (promptTokens >= 0) {
      return promptTokens;
    }
    return Math.max(announcedPrompt, tokens);
  }

  /**
   * Whether a prefix's settled blocks are a function of the prefix's tokens alone, so a KV tier may
   * store them and another sequence restore them ({@code io.kvslim.kv.tier.PrefixCache}): no policy
   * (nothing evicted, merged or scored), every layer stores its own keys at their positions.
   */
  public boolean prefixReusable() {
    if (!policies.isEmpty() || distant != null) {
      return false;
    }
    for (int l = 0; l < layers.length; l++) {
      if (shareOf[l] != l || cacheRelative[l]) {
        return false;
      }
    }
    return true;
  }

  /**
   * Counts {@code n} tokens whose blocks were restored into every layer ({@link
   * io.kvslim.kv.store.HeadStore#restoreBlock}) as appended, before any other append.
   */
  public void restoredPrefix(int n) {
    if (tokens != 0 || promptTokens >= 0) {
      throw new IllegalStateException("a prefix is restored only into an empty cache");
    }
    tokens = n;
  }

  /** Tokens appended so far (counted at layer 0). */
  public int tokens() {
    return tokens;
  }

  @Override
  public int prefillChunk() {
    return prefillChunk;
  }

  @Override
  public boolean thinsPrefill() {
    for (KvPolicy p : policies) {
      if (p.thinsPrefill()) {
        return true;
      }
    }
    return false;
  }

  @Override
  public void beginPrompt(int n) {
    if (promptTokens < 0 && tokens == 0) {
      announcedPrompt = n;
    }
  }

  @Override
  public void labelPrompt(PromptSegments labels) {
    this.segments = labels;
  }

  /** The prompt's segment labels ({@link #labelPrompt}), or null when none were given. */
  public PromptSegments promptSegments() {
    return segments;
  }

  /** Decode steps so far. */
  public int decodeSteps() {
    return steps;
  }

  @Override
  public long bytes() {
    long b = 0;
    for (PagedLayerKv l : layers) {
      if (l != null) {
        b += l.bytes();
      }
    }
    return b;
  }

  /** A layer took a step's tokens whole (a POD layer, before it drops distant keys): the peak. */
  private void notePeak() {
    peakBytes = Math.max(peakBytes, bytes());
  }

  /**
   * The most bytes this cache held: at the end of any step, or during one right after a layer with
   * a residual window took the step's tokens exact (before its attention quantized them).
   */
  public long peakBytes() {
    return Math.max(peakBytes, bytes());
  }

  @Override
  public boolean wantsReplay() {
    if (promptTokens >= 0) {
      return false; // only the prompt is replayed
    }
    for (KvPolicy p : policies) {
      if (p.wantsReplay()) {
        return true;
      }
    }
    return false;
  }

  /** Runs the policies' replays; their time counts in {@link #policyNanos}. */
  @Override
  public void replay(ContextReplay replay) {
    if (promptTokens >= 0) {
      return;
    }
    long t0 = System.nanoTime();
    for (PagedLayerKv l : layers) {
      l.flushResidual(); // as afterStep would: the replay reads what the prompt left
    }
    for (KvPolicy p : policies) {
      if (p.wantsReplay()) {
        p.replay(this, replay);
      }
    }
    policyNanos += System.nanoTime() - t0;
  }

  @Override
  public void afterStep(StepKind kind) {
    for (PagedLayerKv l : layers) {
      l.flushResidual(); // a layer appended to without attention (nothing to do after attention)
    }
    peakBytes = Math.max(peakBytes, bytes());
    if (kind == StepKind.PREFILL && promptTokens < 0) {
      promptTokens = tokens;
    }
    if (kind == StepKind.DECODE) {
      steps++;
    }
    if (policies.isEmpty()) {
      return;
    }
    long t0 = System.nanoTime();
    for (KvPolicy p : policies) {
      p.afterStep(this, kind);
    }
    long spent = System.nanoTime() - t0;
    policyNanos += spent;
    if (kind == StepKind.DECODE) {
      decodePolicyNanos += stepPolicyNanos + spent;
    }
    stepPolicyNanos = 0;
  }

  /**
   * Bytes of keys and values the decode steps so far attended over, as counted by the policy that
   * restricts attention ({@link KvPolicy#decodeBytesAttended}); negative when no policy does (each
   * step reads the whole cache, {@link #bytes}).
   */
  public double decodeBytesAttended() {
    for (KvPolicy p : policies) {
      double b = p.decodeBytesAttended();
      if (b >= 0) {
        return b;
      }
    }
    return -1;
  }

  /**
   * Bytes of keys and values held in a cold tier, not in RAM ({@link
   * io.kvslim.kv.store.HeadStore#coldBytes}): a spilling policy's ({@code spill=true}); {@link
   * #bytes} counts only RAM.
   */
  public long coldBytes() {
    long b = 0;
    for (PagedLayerKv l : layers) {
      for (int g = 0; l != null && g < l.kvHeads(); g++) {
        b += l.head(g).coldBytes();
      }
    }
    return b;
  }

  /**
   * Bytes the policies hold in RAM beside the blocks for their selection ({@link
   * KvPolicy#indexBytes}).
   */
  public long indexBytes() {
    long b = 0;
    for (KvPolicy p : policies) {
      b += p.indexBytes();
    }
    return b;
  }

  /**
   * Bytes the decode steps so far fetched from a cold tier ({@link KvPolicy#bytesFetched});
   * negative when no policy spills.
   */
  public double bytesFetched() {
    for (KvPolicy p : policies) {
      double b = p.bytesFetched();
      if (b >= 0) {
        return b;
      }
    }
    return -1;
  }

  /**
   * Time spent in the policies' {@code afterStep} (scoring and eviction), summed over steps, the
   * prefill's included (for a quantizing policy, the conversion of the prompt's blocks).
   */
  public long policyNanos() {
    return policyNanos;
  }

  /**
   * Time the policies took in the decode steps so far: their hooks during each step (queries,
   * attention rows, appends) and its {@code afterStep}; divided by {@link #decodeSteps}, a decode
   * step's policy cost.
   */
  public long decodePolicyNanos() {
    return decodePolicyNanos;
  }

  @Override
  public void close() {
    if (closed) {
      return;
    }
    closed = true;
    for (PagedLayerKv l : layers) {
      if (l != null) {
        l.store().release();
      }
    }
    for (KvPolicy p : policies) {
      p.close(); // a spill file is deleted
    }
  }

  /** The layer as the model sees it. */
  private final class View extends Front {
    private final int layer;
    private final AttentionObserver observer;
    private final boolean wantsQueries;
    private final boolean residual;
    private float[] xRows = new float[0];
    private float[] outRows = new float[0];

    View(int layer) {
      super(layers[layer]);
      this.layer = layer;
      this.residual = formats[layer].hasResidual();
      boolean observes = false;
      boolean queries = false;
      for (KvPolicy p : policies) {
        observes |= p.observes(layer);
        queries |= p.wantsQueries(layer);
      }
      this.wantsQueries = queries;
      this.observer =
          observes
              ? (qi, h, g, probs, count) -> {
                long t0 = System.nanoTime();
                for (KvPolicy p : policies) {
                  if (p.observes(layer)) {
                    p.observe(ManagedKvCache.this, layer, qi, h, g, probs, count);
                  }
                }
                stepPolicyNanos += System.nanoTime() - t0;
              }
              : null;
    }

    @Override
    public void append(int n, int[] positions, float[] keys, float[] values) {
      if (!policies.isEmpty()) {
        long t0 = System.nanoTime();
        for (int i = 0; i < policies.size(); i++) { // no iterator per layer and step
          policies.get(i).beforeAppend(ManagedKvCache.this, layer, n);
        }
        stepPolicyNanos += System.nanoTime() - t0;
      }
      paged.append(n, positions, keys, values);
      if (layer == 0) {
        tokens += n;
      }
      if (residual || prefillChunk != Integer.MAX_VALUE) {
        // the step's tokens are held exact until this layer's attention, or until a policy
        // compresses the layer inside the prefill: the peak of the step
        peakBytes = Math.max(peakBytes, ManagedKvCache.this.bytes());
      }
    }

    @Override
    void attended() {
      if (!policies.isEmpty()) {
        long t0 = System.nanoTime();
        for (int i = 0; i < policies.size(); i++) {
          policies.get(i).afterAttention(ManagedKvCache.this, layer);
        }
        stepPolicyNanos += System.nanoTime() - t0;
      }
    }

    /** The first thinning policy's rows (one policy per cache thins; the others see them). */
    @Override
    public int[] keptRows(int rows) {
      for (int i = 0; i < policies.size(); i++) {
        KvPolicy p = policies.get(i);
        if (p.thinsPrefill()) {
          int[] k = p.keptRows(ManagedKvCache.this, layer, rows);
          if (k != null) {
            return k;
          }
        }
      }
      return null;
    }

    @Override
    AttentionObserver observerFor(
        int n,
        int[] positions,
        int heads,
        float[] queries,
        float scale,
        AttentionObserver engineObserver) {
      offerQueries(n, positions, heads, queries, scale);
      return chain(promptTokens < 0 && !observesPrefill() ? null : observer, engineObserver);
    }

    /** Whether a policy wants this layer's probabilities in the prefill step now running. */
    private boolean observesPrefill() {
      for (int i = 0; i < policies.size(); i++) {
        if (policies.get(i).observesPrefill(layer)) {
          return true;
        }
      }
      return false;
    }

    @Override
    public boolean wantsAttentionOutput() {
      for (KvPolicy p : policies) {
        if (p.wantsAttentionOutput(layer)) {
          return true;
        }
      }
      return false;
    }

    @Override
    public void attentionOutput(int rows, int dim, float[] x, float[] out, int off) {
      float[] xs = x;
      float[] os = out;
      if (off != 0) {
        if (xRows.length < rows * dim) {
          xRows = new float[rows * dim];
          outRows = new float[rows * dim];
        }
        System.arraycopy(x, off, xRows, 0, rows * dim);
        System.arraycopy(out, off, outRows, 0, rows * dim);
        xs = xRows;
        os = outRows;
      }
      for (KvPolicy p : policies) {
        if (p.wantsAttentionOutput(layer)) {
          p.onAttentionOutput(ManagedKvCache.this, layer, rows, dim, xs, os);
        }
      }
    }

    private float[] rotated = new float[0];

    /**
     * The queries of a layer that stores keys before RoPE (KVQuant) rotated at their positions, as
     * the model would have rotated them, so policies score them against rotated keys.
     */
    private float[] rotatedQueries(
        io.kvslim.kv.Rotary rope, int n, int[] positions, int heads, float[] queries) {
      int headDim = paged.headDim();
      int row = heads * headDim;
      if (rotated.length < n * row) {
        rotated = new float[n * row];
      }
      System.arraycopy(queries, 0, rotated, 0, n * row);
      float[] cos = new float[rope.dims() / 2];
      float[] sin = new float[rope.dims() / 2];
      for (int i = 0; i < n; i++) {
        rope.angles(positions[i], cos, sin, 0);
        rope.rotate(rotated, i * row, heads, headDim, cos, sin, 0);
      }
      return rotated;
    }

    /** Hands the queries of an attention call to the policies that want them. */
    void offerQueries(int n, int[] positions, int heads, float[] queries, float scale) {
      if (wantsQueries && paged.keysBeforeRope() && paged.rope() != null) {
        queries = rotatedQueries(paged.rope(), n, positions, heads, queries);
      }
      if (wantsQueries) {
        long t0 = System.nanoTime();
        for (KvPolicy p : policies) {
          if (p.wantsQueries(layer)) {
            p.onQueries(ManagedKvCache.this, layer, n, positions, heads, queries, scale);
          }
        }
        stepPolicyNanos += System.nanoTime() - t0;
      }
    }
  }
}
