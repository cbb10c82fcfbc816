package io.kvslim.model.synth;

import io.kvslim.gguf.GgufFile;
import io.kvslim.gguf.GgufFormatException;
import io.kvslim.gguf.GgufValue;
import io.kvslim.gguf.GgufValueType;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A SentencePiece vocabulary ({@code tokenizer.ggml.model = llama}) as GGUF {@code
 * tokenizer.ggml.*} metadata, either cut from a real vocabulary file or generated.
 *
 * @param metadata the {@code tokenizer.ggml.*} entries to write, in order
 * @param description where the vocabulary came from, for the user
 */
public record SyntheticVocabulary(Map<String, GgufValue> metadata, String description) {

  // llama.cpp token types
  private static final long NORMAL = 1;
  private static final long UNKNOWN = 2;
  private static final long CONTROL = 3;
  private static final long BYTE = 6;

  public int size() {
    return ((String[]) metadata.get("tokenizer.ggml.tokens").value()).length;
  }

  /**
   * The first {@code size} tokens of a SentencePiece GGUF vocabulary. In llama's vocabulary those
   * are the specials, the 256 byte tokens and the pieces of highest score, so a prefix is itself a
   * usable vocabulary.
   */
  public static SyntheticVocabulary fromFile(Path file, int size) {
    try (GgufFile f = GgufFile.open(file)) {
      String model = f.getString("tokenizer.ggml.model", "");
      if (!model.equals("llama")) {
        throw new GgufFormatException(
            file
                + ": expected a SentencePiece vocabulary (tokenizer.ggml.model=llama), found '"
                + model
                + "'");
      }
      String[] tokens = f.getStringArray("tokenizer.ggml.tokens");
      if (tokens.length < size) {
        throw new GgufFormatException(
            file + ": holds " + tokens.length + " tokens, the shape needs " + size);
      }
      Map<String, GgufValue> meta = new LinkedHashMap<>();
      for (Map.Entry<String, GgufValue> e : f.metadata().entrySet()) {
        String key = e.getKey();
        GgufValue v = e.getValue();
        if (!key.startsWith("tokenizer.ggml.")) {
          continue;
        }
        if (v.isArray()) {
          if (v.length() == tokens.length) {
            meta.put(key, prefix(v, size));
          }
        } else if (!key.endsWith("_token_id") || (Long) v.value() < size) {
          meta.put(key, v);
        }
      }
      String what =
          size == tokens.length
              ? "all " + size + " tokens"
              : "first " + size + " of " + tokens.length + " tokens";
      return new SyntheticVocabulary(
          meta, "SentencePiece vocabulary from " + file + " (" + what + ")");
    }
  }

  private static GgufValue prefix(GgufValue v, int n) {
    Object values =
        switch (v.value()) {
          case long[] a -> Arrays.copyOf(a, n);
          case double[] a -> Arrays.copyOf(a, n);
          case boolean[] a -> Arrays.copyOf(a, n);
          case String[] a -> Arrays.copyOf(a, n);
          case GgufValue[] a -> Arrays.copyOf(a, n);
          default -> throw new IllegalStateException("not an array");
        };
    return GgufValue.array(v.elementType(), values);
  }

  /**
   * A generated SentencePiece-style vocabulary: {@code <unk>}, {@code <s>}, {@code </s>}, the 256
   * byte tokens {@code <0xNN>}, then pieces made of lowercase letters (with and without the word
   * prefix {@code ▁}), shorter pieces scoring higher.
   */
  public static SyntheticVocabulary generated(int size) {
    if (size < 3 + 256 + 26) {
      throw new IllegalArgumentException("a generated vocabulary needs at least 285 tokens");
    }
    String[] tokens = new String[size];
    double[] scores = new double[size];
    long[] types = new long[size];
    tokens[0] = "<unk>";
    tokens[1] = "<s>";
    tokens[2] = "</s>";
    types[0] = UNKNOWN;
    types[1] = CONTROL;
    types[2] = CONTROL;
    for (int b = 0; b < 256; b++) {
      tokens[3 + b] = String.format("<0x%02X>", b);
      types[3 + b] = BYTE;
    }
    int id = 3 + 256;
    // Enumerate letter strings by length (a..z, aa..zz, ...), each bare and with the ▁ prefix.
    outer:
    for (int length = 1; ; length++) {
      int[] digits = new int[length];
      while (true) {
        StringBuilder sb = new StringBuilder(length);
        for (int d : digits) {
          sb.append((char) ('a' + d));
        }
        for (String piece : new String[] {"\u2581" + sb, sb.toString()}) {
          if (id == size) {
            break outer;
          }
          tokens[id] = piece;
          scores[id] = -(id - 259);
          types[id] = NORMAL;
          id++;
        }
        int k = length - 1;
        while (k >= 0 && digits[k] == 25) {
          digits[k--] = 0;
        }
        if (k < 0) {
          break;
        }
        digits[k]++;
      }
    }
    Map<String, GgufValue> meta = new LinkedHashMap<>();
    meta.put("tokenizer.ggml.model", GgufValue.scalar(GgufValueType.STRING, "llama"));
    meta.put("tokenizer.ggml.tokens", GgufValue.array(GgufValueType.STRING, tokens));
    meta.put("tokenizer.ggml.scores", GgufValue.array(GgufValueType.FLOAT32, scores));
    meta.put("tokenizer.ggml.token_type", GgufValue.array(GgufValueType.INT32, types));
    meta.put("tokenizer.ggml.bos_token_id", GgufValue.scalar(GgufValueType.UINT32, 1L));
    meta.put("tokenizer.ggml.eos_token_id", GgufValue.scalar(GgufValueType.UINT32, 2L));
    meta.put("tokenizer.ggml.unknown_token_id", GgufValue.scalar(GgufValueType.UINT32, 0L));
    meta.put("tokenizer.ggml.add_bos_token", GgufValue.scalar(GgufValueType.BOOL, true));
    meta.put("tokenizer.ggml.add_eos_token", GgufValue.scalar(GgufValueType.BOOL, false));
    return new SyntheticVocabulary(
        meta, "generated vocabulary (" + size + " tokens: 3 specials, 256 bytes, letter pieces)");
  }
}
