package io.kvslim.kv.method;

import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.policy.LayerAllocator;
import io.kvslim.kv.store.KvCacheFormat;
import java.util.List;
import java.util.Set;

/**
 * One KV cache method: its name in the spec language, the paper it implements, its typed knobs, and
 * how it turns a parsed call into an eviction policy and/or a storage format. Everything else — the
 * spec parser, {@code kvslim kv-methods}, the server's admission estimate and the generic method
 * tests — reads these, so adding a method is one class plus one line in {@link KvMethods}.
 *
 * <p>A method with no policy and no format (the baseline) keeps every token in F32.
 */
public interface KvMethod {
  /** What a method does to the cache; the listing groups by it. */
  enum Family {
    BASELINE,
    EVICTION,
    /** splits a token budget over layers for the eviction policy it is composed with */
    ALLOCATOR,
    QUANTIZATION,
    FORMAT;

    /** The lower-case name the listings print. */
    public String label() {
      return name().toLowerCase(java.util.Locale.ROOT);
    }
  }

  /** What a method needs from the engine beyond the keys and values it stores. */
  enum Need {
    /** attention probabilities of the decode queries (H2O, TOVA) */
    ATTENTION_PROBS,
    /** the queries of a prefill step, before attention (SnapKV's observation window) */
    QUERIES,
    /** a calibration profile measured on sample text before use */
    CALIBRATION,
    /** a cold tier to spill evicted tokens to */
    COLD_TIER;

    public String label() {
      return name().toLowerCase(java.util.Locale.ROOT);
    }
  }

  /** The name used in specs, e.g. {@code snapkv}. */
  String name();

  Family family();

  /** Authors, year, title and the section implemented, e.g. "Li et al. 2024, SnapKV, §4.2". */
  String paper();

  /** One line: what the method keeps. */
  String summary();

  /** The keys the spec accepts, in listing order, with defaults, ranges and descriptions. */
  List<Knob> knobs();

  default Set<Need> needs() {
    return Set.of();
  }

  /**
   * Checks knob values against each other (single values are already checked against their {@link
   * Knob}'s range), throwing a {@link KvSpecException} whose message names the method and key.
   */
  default void validate(MethodCall call) {}

  /**
   * The eviction policy of one call over the layers {@code context} covers, or {@code null} when
   * the method evicts nothing. Called once per sequence; a policy may keep per-sequence state.
   */
  default KvPolicy policy(MethodCall call, PolicyContext context) {
    return null;
  }

  /**
   * The per-layer budget allocator of one call ({@link Family#ALLOCATOR} methods), or {@code null}.
   * The rule's eviction policy that {@link #takesAllocator takes one} receives it through {@link
   * PolicyContext#allocator}; alone in a rule, an allocator drives SnapKV's selection with SnapKV's
   * default knobs.
   */
  default LayerAllocator allocator(MethodCall call, PolicyContext context) {
    return null;
  }

  /** Whether this method's policy spends a per-layer allocator's budgets (SnapKV, Ada-KV). */
  default boolean takesAllocator() {
    return false;
  }

  /**
   * KVSharer's layer map over the model's layers ({@code map[l]}: the layer whose keys and values
   * layer {@code l} reads; {@code l} itself when it stores its own), or {@code null} when the
   * method shares nothing. {@code context} covers every layer.
   */
  default int[] layerMap(MethodCall call, PolicyContext context) {
    return null;
  }

  /**
   * POD's layer groups sharing distant tokens' keys ({@link DistantKeys}), or {@code null} when the
   * method shares none. {@code context} covers every layer.
   */
  default DistantKeys distantKeys(MethodCall call, PolicyContext context) {
    return null;
  }

  /** The storage format of keys and values, or {@code null} when the method stores nothing. */
  default KvCacheFormat format(MethodCall call) {
    return null;
  }

  /**
   * The storage format of layer {@code layer} of a model with {@code layers} layers, or {@code
   * null}: {@link #format(MethodCall)} for every layer by default; a method that stores some layers
   * differently (TurboQuant leaves its first and last layers unquantized) overrides this.
   */
  default KvCacheFormat format(MethodCall call, int layer, int layers) {
    return format(call);
  }

  /**
   * Bytes of the tables this method's formats read beside the blocks, held once per layer
   * (codebooks, dictionaries, per-channel tables: {@code KvFormat#tableBytes}) and counted in the
   * cache's bytes, for a model with {@code kvHeads} KV heads of {@code headDim} channels; 0 by
   * default. The registry's generic tests hold a cache's bytes to its blocks plus exactly this.
   */
  default long tableBytes(MethodCall call, int kvHeads, int headDim) {
    return 0;
  }

  /**
   * The most tokens one (layer, KV head) holds at any point of a sequence with {@code prompt}
   * prompt tokens and up to {@code maxNew} generated ones, the prompt appended at once. The
   * server's admission reserves bytes from this; an estimate below what the cache really holds lets
   * the pool run out mid-sequence, so round up.
   *
   * @param bytesPerToken bytes one token costs over all layers and heads (for byte budgets)
   */
  default long heldTokens(MethodCall call, int prompt, int maxNew, double bytesPerToken) {
    return (long) prompt + maxNew;
  }

  /**
   * A spec of this method (this method alone, with the other keys at their defaults) that keeps at
   * least {@code tokens} tokens per (layer, KV head) and so changes no logit of a sequence that
   * short, or {@code null} when the method changes logits at any budget (quantization). The generic
   * method tests check the claim bit for bit.
   */
  default String specKeeping(int tokens) {
    return family() == Family.BASELINE ? name() : null;
  }

  /**
   * A spec that really compresses a sequence of {@code tokens} tokens (evicts or quantizes), for
   * the generic byte-accounting, determinism and admission tests.
   */
  default String specCompressing(int tokens) {
    return name();
  }

  /**
   * The specs of this method the full benchmark suite ({@code bench quality --suite full}) runs,
   * next to the full cache: typically the 12.5%, 25% and 50% budgets of an eviction method, the bit
   * widths of a quantizer. The suite is drawn from the registry, so a registered method is in the
   * full report.
   */
  default List<String> benchmarkSpecs() {
    return List.of(name());
  }
}
