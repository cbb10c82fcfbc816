package io.kvslim.server;

import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.cache.KvCaches;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.method.KvMethod;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.method.MethodCall;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvBlock;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.model.ModelConfig;
import java.util.List;

/**
 * A KV spec made ready for the server: the caches it builds from the shared pool, and an upper
 * estimate of the bytes one sequence may hold, which admission reserves (DESIGN.md §4).
 *
 * <p>The estimate follows the cache's layout: per (layer, KV head) whole blocks of the layer's
 * format, the full-precision residual window where the format has one (KIVI), and the tokens the
 * spec's eviction policies let a head keep. Policies that compress once after prefill (SnapKV and
 * its variants) hold the whole prompt first, then their budget plus the generated tokens; those
 * that evict every step (H2O, TOVA, StreamingLLM) hold the prompt, then about their budget.
 */
public final class KvPlan {
  private final KvSpec spec;
  private final KvCaches caches;
  private final ModelConfig config;
  private final KvCacheFormat[] formats;

  private final double estimateScale;
  private final int prefillChunk;

  private KvPlan(
      KvSpec spec,
      KvCaches caches,
      ModelConfig config,
      KvCacheFormat[] formats,
      double estimateScale,
      int prefillChunk) {
    this.spec = spec;
    this.caches = caches;
    this.config = config;
    this.formats = formats;
    this.estimateScale = estimateScale;
    this.prefillChunk = prefillChunk;
  }

  /**
   * This plan with its estimates scaled by {@code factor}; below 1 admission over-commits the pool
   * (tests use it to reach the scheduler's out-of-memory path).
   */
  KvPlan withEstimateScale(double factor) {
    return new KvPlan(spec, caches, config, formats, factor, prefillChunk);
  }

  /**
   * Parses and checks {@code text} against the model's shape.
   *
   * @throws ApiException a 400 naming the bad part of the spec (param {@code kv})
   */
  /**
   * An {@code @} followed by {@code profile} after any characters {@link String#trim} drops (those
   * up to U+0020: the spec parser trims an option before it reads it), in any case: a superset of
   * the specs whose parsing reads a profile file.
   */
  private static final java.util.regex.Pattern PROFILE =
      java.util.regex.Pattern.compile(
          "@[\\x00-\\x20]*profile", java.util.regex.Pattern.CASE_INSENSITIVE);

  /** Whether parsing {@code text} may read a file it names ({@code @profile=FILE}). */
  public static boolean namesProfile(String text) {
    return PROFILE.matcher(text).find();
  }

  /**
   * Refuses a request's kv spec that names a profile file: parsing it would make the server read
   * (and report on) any file it can open, before anything else is checked.
   *
   * @throws ApiException 400 if {@link #namesProfile} holds
   */
  public static void refuseProfile(String text) {
    if (namesProfile(text)) {
      throw new ApiException(
          400,
          "a request's kv spec may not name a profile file (@profile=); start the server with"
              + " --kv 'SPEC@profile=FILE' and send that spec, or leave kv out",
          ApiException.INVALID_REQUEST,
          "kv",
          "bad_kv_spec");
    }
  }

  public static KvPlan resolve(String text, BlockPool pool, ModelConfig config) {
    return resolve(text, pool, config, Integer.MAX_VALUE);
  }

  /**
   * As {@link #resolve(String, BlockPool, ModelConfig)} for a server that appends prompts in chunks
   * of at most {@code prefillChunk} tokens (a smaller transient while a chunk is appended).
   */
  public static KvPlan resolve(String text, BlockPool pool, ModelConfig config, int prefillChunk) {
    try {
      return of(KvSpec.parse(text), pool, config, prefillChunk);
    } catch (IllegalArgumentException e) { // KvSpecException, or a format that does not fit
      throw new ApiException(
          400, e.getMessage(), ApiException.INVALID_REQUEST, "kv", "bad_kv_spec");
    }
  }

  /**
   * The plan of a parsed {@code spec} for sequences whose prompts are appended in chunks of at most
   * {@code prefillChunk} tokens, outside the server ({@code kvslim bench throughput} admits by it).
   *
   * @throws IllegalArgumentException if the spec does not fit the model's shape
   */
  public static KvPlan of(KvSpec spec, BlockPool pool, ModelConfig config, int prefillChunk) {
    KvCaches caches = KvSpecs.caches(spec, pool, config);
    KvCacheFormat[] formats = new KvCacheFormat[config.layers()];
    try (ManagedKvCache probe = caches.create()) {
      for (int l = 0; l < formats.length; l++) {
        formats[l] = probe.paged(l).store().format();
      }
    }
    return new KvPlan(spec, caches, config, formats, 1.0, prefillChunk);
  }

  public String text() {
    return spec.text();
  }

  /** A fresh cache for a new sequence. */
  public ManagedKvCache create() {
    return caches.create();
  }

  /** Bytes a full cache of {@code tokens} would take in F16, the baseline of compression ratios. */
  public long f16Bytes(long tokens) {
    return tokens * config.layers() * config.kvHeads() * config.headDim() * 2L * 2L;
  }

  /**
   * Upper estimate of the bytes a sequence with this prompt and generation limit holds at most.
   *
   * <p>Layers with a residual window and no eviction (KIVI) are bounded by their layout: whole
   * blocks of the compressed formats for every token, and on top the difference to the residual
   * formats for the keys and value slots the window can hold ({@link #residualBytes}; see {@link
   * HeadStore#flushResidual}). A layer is appended and flushed as a whole, so while a prompt chunk
   * of {@code n} tokens goes in, one layer's heads hold the larger residual of an {@code n}-token
   * append; the estimate is the larger of the final size and the prompt's size with that transient.
   * Other layers keep one block of slack for a partly filled tail.
   */
  public long estimateBytes(int promptTokens, int maxTokens) {
    int hd = config.headDim();
    int heads = config.kvHeads();
    int chunk = Math.min(prefillChunk, promptTokens);
    long total = 0;
    long atPrompt = 0;
    long transientBytes = 0;
    for (int l = 0; l < formats.length; l++) {
      if (caches.isShared(l)) {
        continue; // KVSharer: the layer reads another's keys and values and holds no block
      }
      KvCacheFormat f = formats[l];
      List<MethodCall> calls = spec.callsFor(l);
      long tokens = heldTokens(calls, promptTokens, maxTokens);
      int bt = f.blockTokens();
      long blockBytes = KvBlock.bytesFor(bt, hd, f.keys(), f.values());
      if (f.hasResidual() && !evicts(calls)) {
        long keyExtra =
            Math.max(0, f.appendKeys().blockBytes(bt, hd) - f.keys().blockBytes(bt, hd));
        long valueExtra =
            Math.max(0, f.appendValues().blockBytes(bt, hd) - f.values().blockBytes(bt, hd));
        long blocks = ceilDiv(tokens, bt);
        long promptBlocks = ceilDiv(promptTokens, bt);
        total += heads * (blocks * blockBytes + residualBytes(f, blocks, 1, keyExtra, valueExtra));
        long prompted = residualBytes(f, promptBlocks, 1, keyExtra, valueExtra);
        atPrompt += heads * (promptBlocks * blockBytes + prompted);
        long chunked = residualBytes(f, promptBlocks, chunk, keyExtra, valueExtra);
        transientBytes = Math.max(transientBytes, heads * (chunked - prompted));
        continue;
      }
      long blocks = (tokens + bt - 1) / bt + 1; // one block of slack for a partly filled tail
      long perHead = blocks * blockBytes;
      if (evicts(calls)) {
        // gaps in the positions: at most 4 bytes per slot, and a live mask
        perHead += blocks * KvBlock.maxBookkeepingBytes(bt);
      }
      if (f.hasResidual()) {
        long residualBlock = KvBlock.bytesFor(bt, hd, f.residualKeys(), f.residualValues());
        long residualBlocks = Math.min(blocks, (f.residualTokens() + bt - 1) / bt + 2);
        perHead += residualBlocks * Math.max(0, residualBlock - blockBytes);
      }
      total += perHead * heads;
      atPrompt += perHead * heads;
    }
    long most = Math.max(total, atPrompt + transientBytes);
    return (long) Math.ceil(most * estimateScale);
  }

  /**
   * The most bytes beyond its compressed size one head of {@code blocks} blocks holds in residual
   * formats right after appending {@code n} tokens, before the flush: keys in the residual format
   * for fewer than the key window {@code W} tokens before the append, counted from a block
   * boundary, so at most {@code ⌈(W − 1 + n)/G⌉} blocks; values for the latest {@code R} tokens
   * plus the {@code n} new ones, in slots up to the end of the tail block, so at most {@code R + n
   * + G − 1} slots (per-token formats: bytes proportional to slots).
   */
  private static long residualBytes(
      KvCacheFormat f, long blocks, int n, long keyExtra, long valueExtra) {
    int bt = f.blockTokens();
    long keyBlocks = Math.min(blocks, ceilDiv(f.keyFlushTokens() - 1L + n, bt));
    long valueSlots = Math.min(blocks * bt, (long) f.residualTokens() + n + bt - 1);
    return keyBlocks * keyExtra + ceilDiv(valueSlots * valueExtra, bt);
  }

  private static long ceilDiv(long a, long b) {
    return (a + b - 1) / b;
  }

  private static boolean evicts(List<MethodCall> calls) {
    for (MethodCall c : calls) {
      if (c.method().family() == KvMethod.Family.EVICTION) {
        return true;
      }
    }
    return false;
  }

  /** Most tokens one (layer, head) holds under {@code calls}: the least any method allows. */
  private long heldTokens(List<MethodCall> calls, int prompt, int max) {
    long held = (long) prompt + max;
    for (MethodCall c : calls) {
      held = Math.min(held, c.method().heldTokens(c, prompt, max, caches.bytesPerToken()));
    }
    return held;
  }
}
