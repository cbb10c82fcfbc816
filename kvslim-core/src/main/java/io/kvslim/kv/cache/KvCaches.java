package io.kvslim.kv.cache;

import io.kvslim.calibrate.ModelIdentity;
import io.kvslim.kv.Rotary;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.method.DistantKeys;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.method.KvSpecException;
import io.kvslim.kv.method.MethodCall;
import io.kvslim.kv.method.PolicyContext;
import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.policy.LayerAllocator;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.KvBlock;
import io.kvslim.kv.store.KvCacheFormat;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/**
 * Builds sequences' caches from a {@link KvSpec}: per layer the storage format its rule names (F32
 * when none), and the eviction policies of each rule over the layers it covers. The spec is checked
 * against the model's shape once, up front, so a bad spec fails before any work.
 */
public final class KvCaches {
  private final KvSpec spec;
  private final BlockPool pool;
  private final int layers;
  private final int kvHeads;
  private final int headDim;
  private final KvCacheFormat[] formats;
  private final int[] shareOf; // KVSharer's layer map, null when no layer is shared
  private final DistantKeys distant; // POD's groups, null when no layer shares distant keys
  private final double bytesPerTokenAll;
  private final ModelIdentity model;
  private final Rotary rope;

  public KvCaches(KvSpec spec, BlockPool pool, int layers, int kvHeads, int headDim) {
    this(spec, pool, layers, kvHeads, headDim, null, null);
  }

  public KvCaches(
      KvSpec spec, BlockPool pool, int layers, int kvHeads, int headDim, ModelIdentity model) {
    this(spec, pool, layers, kvHeads, headDim, model, null);
  }

  /**
   * Caches of {@code spec} for a model of this shape; {@code model} (null when unknown) is the
   * model's identity, against which methods check their calibration profiles, and {@code rope}
   * (null when unknown) the model's rotary embedding, for methods that need it.
   */
  public KvCaches(
      KvSpec spec,
      BlockPool pool,
      int layers,
      int kvHeads,
      int headDim,
      ModelIdentity model,
      Rotary rope) {
    this.model = model;
    this.rope = rope;
    this.spec = spec;
    this.pool = pool;
    this.layers = layers;
    this.kvHeads = kvHeads;
    this.headDim = headDim;
    spec.checkLayers(layers);
    this.formats = new KvCacheFormat[layers];
    this.shareOf = shareMap(spec, new PolicyContext(all(layers), kvHeads, headDim, 0, model));
    this.distant = distantKeys(spec, new PolicyContext(all(layers), kvHeads, headDim, 0, model));
    double perToken = 0;
    for (int l = 0; l < layers; l++) {
      formats[l] = formatOf(spec.callsFor(l), l, layers);
      if (distant != null && formats[l].hasResidual()) {
        throw new KvSpecException(
            "pod shares distant keys between whole blocks and cannot use a residual window"
                + " format (KV spec '"
                + spec
                + "')");
      }
      try {
        formats[l].checkHeadDim(headDim);
      } catch (IllegalArgumentException e) {
        throw new KvSpecException("KV spec '" + spec + "' cannot be used here: " + e.getMessage());
      }
      KvCacheFormat f = formats[l];
      if (isShared(l)) {
        continue; // reads another layer's keys and values: no bytes of its own
      }
      perToken +=
          kvHeads
              * (double) KvBlock.bytesFor(f.blockTokens(), headDim, f.keys(), f.values())
              / f.blockTokens();
    }
    this.bytesPerTokenAll = perToken;
    create().close(); // builds the policies once so their settings are checked
  }

  public KvSpec spec() {
    return spec;
  }

  public BlockPool pool() {
    return pool;
  }

  /** Bytes one token costs across all layers and heads in the spec's formats (no eviction). */
  public double bytesPerToken() {
    return bytesPerTokenAll;
  }

  /** A fresh cache for a new sequence, drawing from the shared pool. */
  public ManagedKvCache create() {
    List<KvPolicy> policies = policies();
    io.kvslim.kv.store.ColdStorage cold = pool.coldStorage();
    for (KvPolicy p : policies) {
      if (cold != null && p.coldSpill() != null) {
        p.coldSpill().use(cold); // --kv-tier: spilled blocks go to the tier
      }
    }
    return new ManagedKvCache(pool, kvHeads, headDim, formats, policies, shareOf, distant);
  }

  /** Whether layer {@code l} reads an earlier layer's keys and values (KVSharer). */
  public boolean isShared(int l) {
    return shareOf != null && shareOf[l] != l;
  }

  /**
   * The layer map of the spec's KVSharer call, checked: it must cover every layer (one rule, no
   * {@code @layers} scope) and share nothing with an eviction policy, which would evict from a
   * storage two layers read.
   */
  private static boolean[] all(int layers) {
    boolean[] out = new boolean[layers];
    java.util.Arrays.fill(out, true);
    return out;
  }

  private static int[] shareMap(KvSpec spec, PolicyContext ctx) {
    int[] map = null;
    String from = null;
    boolean policies = false;
    for (KvSpec.Rule rule : spec.rules()) {
      for (MethodCall c : rule.calls()) {
        int[] m = c.method().layerMap(c, ctx);
        if (m != null) {
          if (rule.firstLayer() >= 0) {
            throw new KvSpecException(
                c.name() + " maps the whole model's layers; do not scope it with @layers");
          }
          map = m;
          from = c.name();
        }
        policies |= c.method().family() == io.kvslim.kv.method.KvMethod.Family.EVICTION;
        policies |= c.method().family() == io.kvslim.kv.method.KvMethod.Family.ALLOCATOR;
      }
    }
    if (map != null && policies) {
      throw new KvSpecException(
          from + " composes with storage formats only, not with eviction (KV spec '" + spec + "')");
    }
    return map;
  }

  /**
   * POD's groups of the spec's call that shares distant keys, checked like {@link #shareMap}'s: one
   * rule over every layer, no eviction, no KVSharer beside it.
   */
  private static DistantKeys distantKeys(KvSpec spec, PolicyContext ctx) {
    DistantKeys out = null;
    String from = null;
    boolean other = false;
    for (KvSpec.Rule rule : spec.rules()) {
      for (MethodCall c : rule.calls()) {
        DistantKeys d = c.method().distantKeys(c, ctx);
        if (d != null) {
          if (rule.firstLayer() >= 0) {
            throw new KvSpecException(
                c.name() + " groups the whole model's layers; do not scope it with @layers");
          }
          out = d;
          from = c.name();
        } else {
          var f = c.method().family();
          other |= f == io.kvslim.kv.method.KvMethod.Family.EVICTION;
          other |= f == io.kvslim.kv.method.KvMethod.Family.ALLOCATOR;
          other |= c.method().layerMap(c, ctx) != null;
        }
      }
    }
    if (out != null && other) {
      throw new KvSpecException(
          from
              + " composes with storage formats only, not with eviction or layer sharing (KV spec '"
              + spec
              + "')");
    }
    return out;
  }

  private List<KvPolicy> policies() {
    // one policy instance per (rule, method), covering the layers where that rule applies
    Map<List<MethodCall>, boolean[]> masks = new IdentityHashMap<>();
    List<List<MethodCall>> order = new ArrayList<>();
    for (int l = 0; l < layers; l++) {
      List<MethodCall> calls = spec.callsFor(l);
      boolean[] mask = masks.get(calls);
      if (mask == null) {
        mask = new boolean[layers];
        masks.put(calls, mask);
        order.add(calls);
      }
      mask[l] = true;
    }
    List<KvPolicy> out = new ArrayList<>();
    for (List<MethodCall> calls : order) {
      boolean[] mask = masks.get(calls);
      PolicyContext ctx = new PolicyContext(mask, kvHeads, headDim, bytesPerTokenAll, model, rope);
      LayerAllocator allocator = null;
      boolean taken = false;
      for (MethodCall c : calls) {
        LayerAllocator a = c.method().allocator(c, ctx);
        allocator = a != null ? a : allocator;
        taken |= c.method().takesAllocator();
      }
      for (MethodCall c : calls) {
        KvPolicy p = c.method().policy(c, ctx.withAllocator(allocator));
        if (p != null) {
          out.add(p);
        }
      }
      if (allocator != null && !taken) {
        // an allocator alone drives SnapKV's selection with SnapKV's defaults
        MethodCall snap = KvSpec.parse("snapkv").rules().get(0).calls().get(0);
        out.add(snap.method().policy(snap, ctx.withAllocator(allocator)));
      }
    }
    return out;
  }

  /** The storage format a rule's calls name for one layer; at most one format per rule. */
  static KvCacheFormat formatOf(List<MethodCall> calls, int layer, int layers) {
    KvCacheFormat format = null;
    String from = null;
    for (MethodCall c : calls) {
      KvCacheFormat f = c.method().format(c, layer, layers);
      if (f != null) {
        if (format != null) {
          throw new KvSpecException(
              "two storage formats in one rule ('"
                  + from
                  + "' and '"
                  + c.name()
                  + "'); use one, or 'format:k=...,v=...'");
        }
        format = f;
        from = c.name();
      }
    }
    return format != null ? format : KvCacheFormat.of(KvFormats.F32);
  }
}
