package io.kvslim.model;

import io.kvslim.gguf.GgufFile;
import io.kvslim.gguf.GgufFormatException;
import io.kvslim.gguf.SafeText;

/**
 * Hyper-parameters of a Llama-family model, all read from GGUF metadata ({@code <arch>.*} keys);
 * nothing is guessed from the model's name.
 */
public record ModelConfig(
    String architecture,
    int dim,
    int layers,
    int heads,
    int kvHeads,
    int headDim,
    int ffnDim,
    int vocabSize,
    int contextLength,
    float rmsEps,
    float ropeBase,
    int ropeDims,
    RopeType ropeType,
    float ropeFreqScale,
    boolean qkvBias) {

  /** How RoPE pairs dimensions: adjacent pairs (GGML mode 0) or the two halves (NEOX). */
  public enum RopeType {
    NORMAL,
    NEOX
  }

  public static ModelConfig from(GgufFile f) {
    String arch = f.getString("general.architecture");
    RopeType rope;
    boolean bias;
    switch (arch) {
      case "llama" -> {
        rope = RopeType.NORMAL;
        bias = false;
      }
      case "qwen2" -> {
        rope = RopeType.NEOX;
        bias = true;
      }
      default ->
          throw new GgufFormatException(
              f.path()
                  + ": unsupported architecture '"
                  + SafeText.of(arch)
                  + "' (supported: llama, qwen2)");
    }
    int dim = f.getInt(arch + ".embedding_length");
    int layers = f.getInt(arch + ".block_count");
    int heads = f.getInt(arch + ".attention.head_count");
    int kvHeads = f.getInt(arch + ".attention.head_count_kv", heads);
    int headDim = f.getInt(arch + ".attention.key_length", heads > 0 ? dim / heads : 0);
    int valueDim = f.getInt(arch + ".attention.value_length", headDim);
    int ffn = f.getInt(arch + ".feed_forward_length");
    int vocab = f.has(arch + ".vocab_size") ? f.getInt(arch + ".vocab_size") : embeddingRows(f);
    int ctx = f.getInt(arch + ".context_length", 2048);
    float eps = (float) f.getDouble(arch + ".attention.layer_norm_rms_epsilon", 1e-5);
    float base = (float) f.getDouble(arch + ".rope.freq_base", 10000.0);
    int ropeDims = f.getInt(arch + ".rope.dimension_count", headDim);
    float freqScale = 1f;
    String scaling = f.getString(arch + ".rope.scaling.type", "none");
    switch (scaling) {
      case "none" -> {}
      case "linear" -> {
        float factor = (float) f.getDouble(arch + ".rope.scaling.factor", 1.0);
        requirePositiveFinite(f, arch + ".rope.scaling.factor", factor);
        freqScale = 1f / factor;
      }
      default ->
          throw new GgufFormatException(
              f.path()
                  + ": unsupported rope scaling '"
                  + SafeText.of(scaling)
                  + "' (supported: none, linear)");
    }
    if (dim <= 0 || layers <= 0 || heads <= 0 || kvHeads <= 0 || headDim <= 0 || ffn <= 0) {
      throw new GgufFormatException(f.path() + ": model dimensions must be positive");
    }
    if (vocab <= 0 || ctx <= 0) {
      throw new GgufFormatException(
          f.path() + ": vocab_size " + vocab + " and context_length " + ctx + " must be positive");
    }
    if ((long) heads * headDim > Integer.MAX_VALUE) {
      throw new GgufFormatException(
          f.path() + ": head_count " + heads + " x key_length " + headDim + " is too large");
    }
    requirePositiveFinite(f, arch + ".attention.layer_norm_rms_epsilon", eps);
    requirePositiveFinite(f, arch + ".rope.freq_base", base);
    if (heads % kvHeads != 0) {
      throw new GgufFormatException(
          f.path() + ": head_count " + heads + " is not a multiple of head_count_kv " + kvHeads);
    }
    if (valueDim != headDim) {
      throw new GgufFormatException(
          f.path()
              + ": key_length "
              + headDim
              + " != value_length "
              + valueDim
              + " is not supported");
    }
    if (ropeDims <= 0 || ropeDims > headDim || ropeDims % 2 != 0) {
      throw new GgufFormatException(
          f.path()
              + ": rope.dimension_count "
              + ropeDims
              + " is invalid for head size "
              + headDim
              + " (expected a positive even number at most the head size)");
    }
    return new ModelConfig(
        arch, dim, layers, heads, kvHeads, headDim, ffn, vocab, ctx, eps, base, ropeDims, rope,
        freqScale, bias);
  }

  /**
   * A value the forward pass divides by or raises to a power: NaN, an infinity, zero or a negative
   * value would only show up later as NaN logits, so the file is refused at load.
   */
  private static void requirePositiveFinite(GgufFile f, String key, float v) {
    if (!(v > 0) || Float.isInfinite(v)) {
      throw new GgufFormatException(
          f.path() + ": metadata '" + key + "' = " + v + " must be a positive finite number");
    }
  }

  /** The vocabulary size from the token embedding's shape, when the metadata does not say. */
  private static int embeddingRows(GgufFile f) {
    long[] dims = f.requireTensor("token_embd.weight").dims();
    if (dims.length != 2 || dims[1] > Integer.MAX_VALUE) {
      throw new GgufFormatException(
          f.path()
              + ": tensor 'token_embd.weight' has shape "
              + java.util.Arrays.toString(dims)
              + ", expected [embedding_length, vocab_size]");
    }
    return (int) dims[1];
  }

  public int qDim() {
    return heads * headDim;
  }

  public int kvDim() {
    return kvHeads * headDim;
  }
}
