package io.kvslim.tokenizer;

import io.kvslim.gguf.GgufFile;
import io.kvslim.gguf.GgufValueType;
import io.kvslim.gguf.SafeText;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/** Common metadata of both tokenizer kinds, with llama.cpp's defaults per model type. */
final class TokenizerConfig {
  final String[] pieces;
  final float[] scores;
  final TokenType[] types;
  final Map<String, Integer> ids;
  final boolean addSpacePrefix;
  final boolean addBos;
  final boolean addEos;
  final int bos;
  final int eos;
  final int eot;
  final int eom;
  final int unk;
  final boolean phi3;
  final PreTokenizer preTokenizer;
  final boolean ignoreMerges;

  static String model(GgufFile gguf) {
    if (!gguf.has("tokenizer.ggml.model")) {
      throw new IllegalArgumentException(
          gguf.path() + ": no tokenizer in this file (metadata 'tokenizer.ggml.model' is missing)");
    }
    String model = gguf.getString("tokenizer.ggml.model");
    if (!model.equals("llama") && !model.equals("gpt2")) {
      throw new IllegalArgumentException(
          gguf.path()
              + ": unsupported tokenizer model '"
              + SafeText.of(model)
              + "' in tokenizer.ggml.model (supported: llama, gpt2)");
    }
    return model;
  }

  TokenizerConfig(GgufFile gguf, boolean bpe) {
    String key = "tokenizer.ggml.tokens";
    if (!gguf.has(key)) {
      throw new IllegalArgumentException(
          gguf.path() + ": tokenizer metadata '" + key + "' (the vocabulary) is missing");
    }
    String[] raw = gguf.getStringArray(key);
    if (raw.length == 0) {
      throw new IllegalArgumentException(gguf.path() + ": tokenizer vocabulary is empty");
    }
    int n = raw.length;
    pieces = new String[n];
    ids = new HashMap<>(n * 2);
    for (int i = 0; i < n; i++) {
      pieces[i] = raw[i].isEmpty() ? "[EMPTY_" + i + "]" : raw[i];
      ids.put(pieces[i], i);
    }
    scores = new float[n];
    if (gguf.has("tokenizer.ggml.scores")) {
      double[] s = gguf.getDoubleArray("tokenizer.ggml.scores");
      requireLength(gguf, "tokenizer.ggml.scores", s.length, n);
      for (int i = 0; i < n; i++) {
        scores[i] = (float) s[i];
      }
    }
    types = new TokenType[n];
    if (gguf.has("tokenizer.ggml.token_type")) {
      long[] t = gguf.getLongArray("tokenizer.ggml.token_type");
      requireLength(gguf, "tokenizer.ggml.token_type", t.length, n);
      for (int i = 0; i < n; i++) {
        types[i] = TokenType.fromCode(t[i]);
      }
    } else {
      Arrays.fill(types, TokenType.NORMAL);
    }

    boolean defaultAddBos;
    if (bpe) {
      preTokenizer = PreTokenizer.forName(gguf.getString("tokenizer.ggml.pre", "default"));
      boolean llama3Family =
          List.of("llama3", "llama-v3", "llama-bpe", "falcon3").contains(preTokenizer.name());
      ignoreMerges = llama3Family;
      defaultAddBos = llama3Family;
    } else {
      preTokenizer = null;
      ignoreMerges = false;
      defaultAddBos = true;
    }
    addSpacePrefix = gguf.getBool("tokenizer.ggml.add_space_prefix", !bpe);
    addBos = gguf.getBool("tokenizer.ggml.add_bos_token", defaultAddBos);
    addEos = gguf.getBool("tokenizer.ggml.add_eos_token", false);
    bos = specialId(gguf, "bos_token_id", bpe ? 11 : 1, n);
    eos = specialId(gguf, "eos_token_id", bpe ? 11 : 2, n);
    unk = specialId(gguf, "unknown_token_id", bpe ? -1 : 0, n);
    int eotId = specialId(gguf, "eot_token_id", -1, n);
    if (eotId < 0) {
      for (String text :
          List.of(
              "<|eot_id|>",
              "<|im_end|>",
              "<|end|>",
              "<end_of_turn>",
              "<|endoftext|>",
              "<EOT>",
              "<\uFF5Cend\u2581of\u2581sentence\uFF5C>")) {
        Integer id = ids.get(text);
        if (id != null) {
          eotId = id;
          types[id] = TokenType.CONTROL;
          break;
        }
      }
    }
    eot = eotId;
    eom = specialId(gguf, "eom_token_id", ids.getOrDefault("<|eom_id|>", -1), n);
    String name = gguf.getString("general.name", "").toLowerCase(Locale.ROOT);
    phi3 = name.contains("phi-3") || name.contains("phi3");
  }

  /**
   * A special token's id: the metadata's when it names a token of the vocabulary, else {@code
   * defaultId} (or none, -1, when that is outside too). An id outside the vocabulary is reported as
   * a warning and the default used instead, as llama.cpp does ({@code llama_vocab::impl::load} in
   * src/llama-vocab.cpp: "bad special token: '%s' = %u, using default id %d").
   */
  private static int specialId(GgufFile gguf, String key, int defaultId, int n) {
    int fallback = defaultId < n ? defaultId : -1;
    String fullKey = "tokenizer.ggml." + key;
    if (!gguf.has(fullKey)) {
      return fallback;
    }
    long id = gguf.getLong(fullKey);
    if (id >= 0 && id < n) {
      return (int) id;
    }
    String shown =
        gguf.get(fullKey).type() == GgufValueType.UINT64 ? Long.toUnsignedString(id) : "" + id;
    gguf.warn(
        "metadata '"
            + fullKey
            + "' = "
            + shown
            + " is outside the vocabulary of "
            + n
            + " tokens; using "
            + (fallback >= 0 ? "the default id " + fallback : "no such token"));
    return fallback;
  }

  private static void requireLength(GgufFile gguf, String key, int length, int n) {
    if (length != n) {
      throw new IllegalArgumentException(
          gguf.path() + ": metadata '" + key + "' has " + length + " entries, expected " + n);
    }
  }
}
