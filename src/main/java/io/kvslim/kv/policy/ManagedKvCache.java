package io.kvslim.kv.policy;

import io.kvslim.kv.AttentionObserver;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.LayerKv;
import io.kvslim.kv.PagedLayerKv;
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
  private final LayerKv[] views;
  private final List<KvPolicy> policies;
  private final BlockPool pool;
  private int tokens; // tokens appended so far (the next position when positions are 0..n-1)
  private int promptTokens = -1;
  private int steps;
  private long peakBytes;
  private long policyNanos;
  private boolean closed;

  public ManagedKvCache(
      BlockPool pool, int kvHeads, int headDim, KvCacheFormat[] formats, List<KvPolicy> policies) {
    this.pool = pool;
    this.policies = List.copyOf(policies);
    this.layers = new PagedLayerKv[formats.length];
    this.views = new LayerKv[formats.length];
    PagedLayerKv.Scratch scratch = new PagedLayerKv.Scratch(); // layers attend one at a time
    try {
      for (int l = 0; l < formats.length; l++) {
        layers[l] = new PagedLayerKv(new LayerStore(pool, kvHeads, headDim, formats[l]), scratch);
        views[l] = new View(l);
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

  /** The paged storage of a layer, for policies. */
  public PagedLayerKv paged(int layer) {
    return layers[layer];
  }

  public BlockPool pool() {
    return pool;
  }

  /** Tokens appended so far to layer 0. */
  public int tokensSeen() {
    return tokens;
  }

  /** Length of the prompt (the first prefill), or -1 before it ended. */
  public int promptTokens() {
    return promptTokens;
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

  /** The most bytes this cache held at the end of any step. */
  public long peakBytes() {
    return Math.max(peakBytes, bytes());
  }

  @Override
  public void afterStep(StepKind kind) {
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
    policyNanos += System.nanoTime() - t0;
  }

  /** Time spent in the policies' {@code afterStep} (scoring and eviction), summed over steps. */
  public long policyNanos() {
    return policyNanos;
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
  }

  /** The layer as the model sees it. */
  private final class View implements LayerKv {
    private final int layer;
    private final PagedLayerKv paged;
    private final AttentionObserver observer;
    private final boolean wantsQueries;

    View(int layer) {
      this.layer = layer;
      this.paged = layers[layer];
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
                for (KvPolicy p : policies) {
                  if (p.observes(layer)) {
                    p.observe(ManagedKvCache.this, layer, qi, h, g, probs, count);
                  }
                }
              }
              : null;
    }

    @Override
    public int kvHeads() {
      return paged.kvHeads();
    }

    @Override
    public int headDim() {
      return paged.headDim();
    }

    @Override
    public void append(int n, int[] positions, float[] keys, float[] values) {
      paged.append(n, positions, keys, values);
      if (layer == 0) {
        tokens += n;
      }
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
      attend(n, positions, heads, queries, scale, out, engineObserver, pool, false);
    }

    @Override
    public void attendLlamaCpp(
        int n,
        int[] positions,
        int heads,
        float[] queries,
        float scale,
        float[] out,
        AttentionObserver engineObserver,
        Parallel pool) {
      attend(n, positions, heads, queries, scale, out, engineObserver, pool, true);
    }

    private void attend(
        int n,
        int[] positions,
        int heads,
        float[] queries,
        float scale,
        float[] out,
        AttentionObserver engineObserver,
        Parallel pool,
        boolean llamaCpp) {
      if (wantsQueries) {
        for (KvPolicy p : policies) {
          if (p.wantsQueries(layer)) {
            p.onQueries(ManagedKvCache.this, layer, n, positions, heads, queries, scale);
          }
        }
      }
      AttentionObserver o = observer;
      if (engineObserver != null) {
        o =
            o == null
                ? engineObserver
                : (qi, h, g, probs, count) -> {
                  observer.observe(qi, h, g, probs, count);
                  engineObserver.observe(qi, h, g, probs, count);
                };
      }
      if (llamaCpp) {
        paged.attendLlamaCpp(n, positions, heads, queries, scale, out, o, pool);
      } else {
        paged.attend(n, positions, heads, queries, scale, out, o, pool);
      }
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
  }
}
