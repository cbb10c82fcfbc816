package io.kvslim.kv.store;

import io.kvslim.kv.format.KiviKeyFormat;
import io.kvslim.kv.format.KiviValueFormat;
import io.kvslim.kv.format.KvFormat;
import io.kvslim.kv.format.KvFormats;
import java.util.Locale;

/**
 * How a paged cache stores tokens: the formats of keys and values, the block size in tokens, and an
 * optional full-precision residual window (KIVI, Liu et al. 2024, arXiv:2402.02750 §3.3; METHODS.md
 * Q3).
 *
 * <p>With a residual of R tokens, new tokens are written in {@code residualKeys/residualValues}.
 * Keys: the residual fills up to R tokens and is then quantized all at once, R/G groups of G tokens
 * (G = the block size; R = 0 flushes each block as it fills), so after n tokens the keys of the
 * first n − (n mod R) are quantized. Values: exactly the latest R tokens stay in the residual
 * format; when a new token pushes the window past R, the oldest is quantized, so the values of the
 * first n − R are quantized. R must be a multiple of the block size. A residual is needed when a
 * format encodes whole blocks (KIVI keys).
 */
public record KvCacheFormat(
    KvFormat keys,
    KvFormat values,
    int blockTokens,
    int residualTokens,
    KvFormat residualKeys,
    KvFormat residualValues) {

  public static final int DEFAULT_BLOCK_TOKENS = 32;

  public KvCacheFormat {
    if (blockTokens < 1 || blockTokens > 4096) {
      throw new IllegalArgumentException("block size must be 1..4096 tokens, got " + blockTokens);
    }
    if (residualTokens < 0) {
      throw new IllegalArgumentException("residual must be >= 0 tokens, got " + residualTokens);
    }
    if (residualTokens % blockTokens != 0) {
      throw new IllegalArgumentException(
          "the residual ("
              + residualTokens
              + " tokens) must be a multiple of the block size ("
              + blockTokens
              + ")");
    }
    if (!residualKeys.perToken() || !residualValues.perToken()) {
      throw new IllegalArgumentException(
          "the residual window needs per-token formats, got "
              + residualKeys.name()
              + "/"
              + residualValues.name());
    }
  }

  /** Keys and values in one format, blocks of 32, no residual. */
  public static KvCacheFormat of(KvFormat both) {
    return of(both, both);
  }

  public static KvCacheFormat of(KvFormat keys, KvFormat values) {
    return new KvCacheFormat(keys, values, DEFAULT_BLOCK_TOKENS, 0, KvFormats.F32, KvFormats.F32);
  }

  /**
   * KIVI: keys per channel over groups of {@code group} tokens, values per token over groups of
   * {@code group} channels, an F32 residual of the newest {@code residual} tokens. Blocks hold
   * {@link #kiviBlockTokens} tokens (several key groups each where the residual allows).
   */
  public static KvCacheFormat kivi(int keyBits, int valueBits, int group, int residual) {
    int block = kiviBlockTokens(group, residual);
    return new KvCacheFormat(
        block == group ? new KiviKeyFormat(keyBits) : new KiviKeyFormat(keyBits, group),
        new KiviValueFormat(valueBits, group),
        block,
        residual,
        KvFormats.F32,
        KvFormats.F32);
  }

  /** Largest storage block KIVI takes: more tokens per block add little once the walk is cheap. */
  public static final int KIVI_MAX_BLOCK_TOKENS = 128;

  /**
   * Tokens per block of a KIVI cache with key groups of {@code group} tokens and a residual of
   * {@code residual}: the largest multiple of the group up to {@link #KIVI_MAX_BLOCK_TOKENS} that
   * divides the residual (keys are quantized a residual at a time, so each block is encoded whole),
   * else the group. Key groups are where they would be with blocks of one group, so the codes are
   * the same; a decode step walks up to four times fewer blocks (each block costs a fixed amount of
   * work besides its tokens).
   */
  public static int kiviBlockTokens(int group, int residual) {
    int best = group;
    for (int k = 2; (long) k * group <= KIVI_MAX_BLOCK_TOKENS; k++) {
      if (residual > 0 && residual % (k * group) == 0) {
        best = k * group;
      }
    }
    return best;
  }

  public KvCacheFormat withBlockTokens(int tokens) {
    return new KvCacheFormat(keys, values, tokens, residualTokens, residualKeys, residualValues);
  }

  public KvCacheFormat withResidual(int tokens, KvFormat format) {
    return new KvCacheFormat(keys, values, blockTokens, tokens, format, format);
  }

  /**
   * This format as KV head {@code kvHead} stores it: with its key and value formats' per-head forms
   * ({@link KvFormat#forHead}; KVQuant's calibrated key channels), else this.
   */
  public KvCacheFormat forHead(int kvHead) {
    KvFormat k = keys.forHead(kvHead);
    KvFormat v = values.forHead(kvHead);
    return k == keys && v == values
        ? this
        : new KvCacheFormat(k, v, blockTokens, residualTokens, residualKeys, residualValues);
  }

  /** True when new tokens go to a residual window in other formats first. */
  public boolean hasResidual() {
    boolean sameFormats = residualKeys.equals(keys) && residualValues.equals(values);
    return !sameFormats && (residualTokens > 0 || !keys.perToken() || !values.perToken());
  }

  /** Tokens the key residual holds before it is quantized at once (R, or G when R is 0). */
  public int keyFlushTokens() {
    return residualTokens > 0 ? residualTokens : blockTokens;
  }

  /**
   * Format new tokens' values are written in before they leave the window of the latest R tokens,
   * or null when values are written in {@link #values()} directly.
   */
  public KvFormat valueResidual() {
    return hasResidual() && !residualValues.equals(values) && values.perToken()
        ? residualValues
        : null;
  }

  /**
   * True when values are in a token-group format (GEAR): they are then written in the residual
   * format and re-encoded a whole block at a time, together with the block's keys.
   */
  public boolean blockValues() {
    return hasResidual() && !values.perToken();
  }

  /** Format new tokens' keys are written in. */
  public KvFormat appendKeys() {
    return hasResidual() ? residualKeys : keys;
  }

  public KvFormat appendValues() {
    return valueResidual() != null || blockValues() ? residualValues : values;
  }

  /**
   * Checks every format against {@code headDim}, and that flushing the residual never needs more
   * bytes than it frees (so a flush cannot fail on the pool's limit).
   */
  /**
   * Bytes of the tables of this layer's formats ({@link KvFormat#tableBytes}), each format object
   * counted once (keys and values in one format share it).
   */
  public long tableBytes() {
    java.util.Set<KvFormat> seen =
        java.util.Collections.newSetFromMap(new java.util.IdentityHashMap<>());
    long b = 0;
    for (KvFormat f : new KvFormat[] {keys, values, residualKeys, residualValues}) {
      if (seen.add(f)) {
        b += f.tableBytes();
      }
    }
    return b;
  }

  public void checkHeadDim(int headDim) {
    keys.checkHeadDim(headDim);
    values.checkHeadDim(headDim);
    residualKeys.checkHeadDim(headDim);
    residualValues.checkHeadDim(headDim);
    if (!hasResidual()) {
      return;
    }
    int valueRows = blockValues() ? blockTokens : 1;
    if (keys.blockBytes(blockTokens, headDim) > residualKeys.blockBytes(blockTokens, headDim)
        || values.blockBytes(valueRows, headDim) > residualValues.blockBytes(valueRows, headDim)) {
      throw new IllegalArgumentException(
          "the residual format " + residualKeys.name() + " must not be smaller than " + this);
    }
    if (blockValues() && keys.perToken()) {
      throw new IllegalArgumentException(
          "values in a token-group format (" + values.name() + ") need token-group keys");
    }
  }

  /**
   * Parses {@code f16}, {@code k=q8_0,v=q4_0[,block=32][,residual=128,residual_format=f32]} or
   * {@code kivi:kbits=2,vbits=2,group=32,residual=128}.
   *
   * @throws IllegalArgumentException naming the bad part and the accepted keys
   */
  public static KvCacheFormat parse(String spec) {
    String s = spec.trim().toLowerCase(Locale.ROOT);
    if (s.startsWith("kivi")) {
      int kbits = 2;
      int vbits = 2;
      int group = 32;
      int residual = 128;
      String args = s.startsWith("kivi:") ? s.substring(5) : s.substring(4);
      for (String part : args.split(",")) {
        if (part.isBlank()) {
          continue;
        }
        String[] kv = keyValue(spec, part, "kbits, vbits, group, residual");
        int n = number(spec, kv);
        switch (kv[0]) {
          case "kbits" -> kbits = n;
          case "vbits" -> vbits = n;
          case "group" -> group = n;
          case "residual" -> residual = n;
          default -> throw badKey(spec, kv[0], "kbits, vbits, group, residual");
        }
      }
      return kivi(kbits, vbits, group, residual);
    }
    if (!s.contains("=")) {
      return of(KvFormats.byName(s));
    }
    KvFormat k = KvFormats.F16;
    KvFormat v = KvFormats.F16;
    KvFormat residualFormat = KvFormats.F32;
    int block = DEFAULT_BLOCK_TOKENS;
    int residual = 0;
    String accepted = "k, v, block, residual, residual_format";
    for (String part : s.split(",")) {
      String[] kv = keyValue(spec, part, accepted);
      switch (kv[0]) {
        case "k" -> k = KvFormats.byName(kv[1]);
        case "v" -> v = KvFormats.byName(kv[1]);
        case "block" -> block = number(spec, kv);
        case "residual" -> residual = number(spec, kv);
        case "residual_format" -> residualFormat = KvFormats.byName(kv[1]);
        default -> throw badKey(spec, kv[0], accepted);
      }
    }
    return new KvCacheFormat(k, v, block, residual, residualFormat, residualFormat);
  }

  private static String[] keyValue(String spec, String part, String accepted) {
    String[] kv = part.trim().split("=", 2);
    if (kv.length != 2) {
      throw new IllegalArgumentException(
          "KV format spec '"
              + spec
              + "': expected key=value, got '"
              + part
              + "' (keys: "
              + accepted
              + ")");
    }
    return kv;
  }

  private static int number(String spec, String[] kv) {
    try {
      return Integer.parseInt(kv[1].trim());
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException(
          "KV format spec '" + spec + "': " + kv[0] + " must be an integer, got '" + kv[1] + "'");
    }
  }

  private static IllegalArgumentException badKey(String spec, String key, String accepted) {
    return new IllegalArgumentException(
        "KV format spec '" + spec + "': unknown key '" + key + "' (accepted: " + accepted + ")");
  }

  @Override
  public String toString() {
    String base = "k=" + keys.name() + ",v=" + values.name() + ",block=" + blockTokens;
    return hasResidual()
        ? base + ",residual=" + residualTokens + ",residual_format=" + residualKeys.name()
        : base;
  }
}
