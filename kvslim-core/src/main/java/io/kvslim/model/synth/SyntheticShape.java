package io.kvslim.model.synth;

import java.util.List;

/**
 * Dimensions of a synthetic {@code llama}-architecture model.
 *
 * @param name the name used on the command line
 * @param dim embedding length
 * @param layers number of transformer blocks
 * @param heads query heads
 * @param kvHeads key/value heads (fewer than {@code heads} means grouped-query attention)
 * @param ffn feed-forward hidden size
 * @param vocab vocabulary size
 * @param contextLength {@code llama.context_length}
 * @param ropeBase {@code llama.rope.freq_base}
 * @param rmsEps {@code llama.attention.layer_norm_rms_epsilon}
 */
public record SyntheticShape(
    String name,
    int dim,
    int layers,
    int heads,
    int kvHeads,
    int ffn,
    int vocab,
    int contextLength,
    double ropeBase,
    double rmsEps) {

  /** About 7M parameters: quick to write and to run in tests. */
  public static final SyntheticShape TINY =
      new SyntheticShape("tiny", 256, 4, 8, 4, 768, 8192, 2048, 10000, 1e-5);

  /** The llama2.c "110M" shape (dim 768, 12 layers, 12 heads) with an 8192-token vocabulary. */
  public static final SyntheticShape LLAMA_110M =
      new SyntheticShape("110m", 768, 12, 12, 12, 2048, 8192, 2048, 10000, 1e-5);

  /**
   * Llama-3.2-1B's transformer dimensions with a 32000-token SentencePiece vocabulary (the real
   * model has 128256 BPE tokens and a 131072 context; 8192 keeps KV allocations modest).
   */
  public static final SyntheticShape LLAMA_1B =
      new SyntheticShape("llama-1b", 2048, 16, 32, 8, 8192, 32000, 8192, 500000, 1e-5);

  public static final List<SyntheticShape> ALL = List.of(TINY, LLAMA_110M, LLAMA_1B);

  public SyntheticShape {
    if (dim % heads != 0 || heads % kvHeads != 0) {
      throw new IllegalArgumentException(
          "shape " + name + ": dim must divide into heads and heads into KV heads");
    }
  }

  /** The shape called {@code name}, or an {@link IllegalArgumentException} listing the names. */
  public static SyntheticShape byName(String name) {
    for (SyntheticShape s : ALL) {
      if (s.name.equalsIgnoreCase(name)) {
        return s;
      }
    }
    throw new IllegalArgumentException(
        "unknown shape '" + name + "' (expected one of " + names() + ")");
  }

  public static List<String> names() {
    return ALL.stream().map(SyntheticShape::name).toList();
  }

  public int headSize() {
    return dim / heads;
  }

  public int kvDim() {
    return kvHeads * headSize();
  }

  /** Parameters of all tensors (token embeddings and output counted separately, not tied). */
  public long parameterCount() {
    long perLayer =
        2L * dim // attention and FFN norms
            + 2L * dim * dim // q, output
            + 2L * dim * kvDim() // k, v
            + 3L * dim * ffn; // gate, up, down
    return 2L * vocab * dim + dim + layers * perLayer;
  }
}
