package io.kvslim.kv.store;

import io.kvslim.kv.quant.KiviKeyFormat;
import io.kvslim.kv.quant.KiviValueFormat;
import io.kvslim.kv.quant.KvFormat;
import io.kvslim.kv.quant.KvFormats;
import java.util.Locale;

/**
 * How a paged cache stores tokens: the formats of keys and values, the block size in tokens, and an
 * optional full-precision residual window (KIVI, Liu et al. 2024, arXiv:2402.02750 §3.3).
 *
 * <p>With a residual, new tokens are written in {@code residualKeys/residualValues}; once a
 * residual block is closed (full, or not the last) and at least {@code residualTokens} live tokens
 * follow it, it is converted to {@code keys/values}. So the newest {@code R..R+G−1} tokens stay in
 * full precision and quantization happens a whole block (a group of G tokens) at a time. A residual
 * is needed when a format encodes whole blocks (KIVI keys); {@code residualTokens = 0} then flushes
 * a block as soon as it is full.
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
   * {@code group} channels, an F32 residual of the newest {@code residual} tokens.
   */
  public static KvCacheFormat kivi(int keyBits, int valueBits, int group, int residual) {
    return new KvCacheFormat(
        new KiviKeyFormat(keyBits),
        new KiviValueFormat(valueBits, group),
        group,
        residual,
        KvFormats.F32,
        KvFormats.F32);
  }

  public KvCacheFormat withBlockTokens(int tokens) {
    return new KvCacheFormat(keys, values, tokens, residualTokens, residualKeys, residualValues);
  }

  public KvCacheFormat withResidual(int tokens, KvFormat format) {
    return new KvCacheFormat(keys, values, blockTokens, tokens, format, format);
  }

  /** True when new tokens go to a residual window in other formats first. */
  public boolean hasResidual() {
    boolean sameFormats = residualKeys.equals(keys) && residualValues.equals(values);
    return !sameFormats && (residualTokens > 0 || !keys.perToken() || !values.perToken());
  }

  /** Format new tokens' keys are written in. */
  public KvFormat appendKeys() {
    return hasResidual() ? residualKeys : keys;
  }

  public KvFormat appendValues() {
    return hasResidual() ? residualValues : values;
  }

  /**
   * Checks every format against {@code headDim}, and that flushing the residual never needs more
   * bytes than it frees (so a flush cannot fail on the pool's limit).
   */
  public void checkHeadDim(int headDim) {
    keys.checkHeadDim(headDim);
    values.checkHeadDim(headDim);
    residualKeys.checkHeadDim(headDim);
    residualValues.checkHeadDim(headDim);
    if (hasResidual()
        && KvBlock.bytesFor(blockTokens, headDim, keys, values)
            > KvBlock.bytesFor(blockTokens, headDim, residualKeys, residualValues)) {
      throw new IllegalArgumentException(
          "the residual format " + residualKeys.name() + " must not be smaller than " + this);
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
