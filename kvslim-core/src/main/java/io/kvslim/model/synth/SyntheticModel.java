package io.kvslim.model.synth;

import io.kvslim.gguf.GgmlType;
import io.kvslim.gguf.GgufWriter;
import io.kvslim.tensor.Quantizer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.stream.IntStream;

/**
 * Writes a {@code llama}-architecture GGUF with random weights, laid out and described exactly as
 * llama.cpp's converter would write a real model, so llama.cpp and kvslim can both run it.
 *
 * <p>Weights are deterministic for a seed: each tensor is cut into chunks of whole rows, and each
 * chunk draws from its own {@link java.util.SplittableRandom} seeded by (seed, tensor, chunk), so
 * chunks are generated in parallel and the bytes do not depend on the thread count. Values are
 * approximately normal (an Irwin-Hall sum of four uniforms), with standard deviation {@code
 * 1/sqrt(fan_in)} for matrices so activations keep unit scale through the layers, {@code
 * 2/sqrt(dim)} for {@code output.weight} so logits are spread (standard deviation about 2) rather
 * than flat, 1 for token embeddings, and exactly 1 for RMSNorm weights. Tensors stream to the file
 * chunk by chunk, so memory stays small whatever the model size.
 */
public final class SyntheticModel {
  private SyntheticModel() {}

  /** Elements per generated chunk (rounded to whole rows). */
  private static final int CHUNK_ELEMENTS = 1 << 18;

  /** What was written. */
  public record Summary(
      Path file, SyntheticShape shape, GgmlType type, long parameters, long bytes, int tensors) {}

  /** llama.cpp's {@code general.file_type} ({@code LLAMA_FTYPE_*}) for a uniform weight type. */
  static long fileType(GgmlType type) {
    return switch (type) {
      case F32 -> 0;
      case F16 -> 1;
      case Q4_0 -> 2;
      case Q8_0 -> 7;
      default -> throw new IllegalArgumentException("unsupported weight type " + type);
    };
  }

  /**
   * Writes the model to {@code out}: matrices (token embeddings included) in {@code type}, norms in
   * F32.
   */
  public static Summary write(
      SyntheticShape shape, GgmlType type, long seed, SyntheticVocabulary vocab, Path out) {
    if (!Quantizer.supports(type)) {
      throw new IllegalArgumentException(
          "unsupported weight type " + type + " (expected f32, f16, q8_0 or q4_0)");
    }
    if (vocab.size() != shape.vocab()) {
      throw new IllegalArgumentException(
          "vocabulary has "
              + vocab.size()
              + " tokens, shape "
              + shape.name()
              + " needs "
              + shape.vocab());
    }
    GgufWriter w = new GgufWriter();
    w.putString("general.architecture", "llama");
    w.putString("general.name", "kvslim synthetic " + shape.name());
    w.putUInt32("llama.vocab_size", shape.vocab());
    w.putUInt32("llama.context_length", shape.contextLength());
    w.putUInt32("llama.embedding_length", shape.dim());
    w.putUInt32("llama.block_count", shape.layers());
    w.putUInt32("llama.feed_forward_length", shape.ffn());
    w.putUInt32("llama.rope.dimension_count", shape.headSize());
    w.putUInt32("llama.attention.head_count", shape.heads());
    w.putUInt32("llama.attention.head_count_kv", shape.kvHeads());
    w.putFloat32("llama.attention.layer_norm_rms_epsilon", shape.rmsEps());
    w.putFloat32("llama.rope.freq_base", shape.ropeBase());
    w.putUInt32("general.file_type", fileType(type));
    if (type == GgmlType.Q8_0 || type == GgmlType.Q4_0) {
      w.putUInt32("general.quantization_version", 2);
    }
    w.putAll(vocab.metadata());

    int dim = shape.dim();
    int tensorIndex = 0;
    addMatrix(w, "token_embd.weight", type, dim, shape.vocab(), 1.0, seed, tensorIndex++);
    for (int l = 0; l < shape.layers(); l++) {
      String p = "blk." + l + ".";
      addNorm(w, p + "attn_norm.weight", dim);
      double inDim = 1 / Math.sqrt(dim);
      addMatrix(w, p + "attn_q.weight", type, dim, dim, inDim, seed, tensorIndex++);
      addMatrix(w, p + "attn_k.weight", type, dim, shape.kvDim(), inDim, seed, tensorIndex++);
      addMatrix(w, p + "attn_v.weight", type, dim, shape.kvDim(), inDim, seed, tensorIndex++);
      addMatrix(w, p + "attn_output.weight", type, dim, dim, inDim, seed, tensorIndex++);
      addNorm(w, p + "ffn_norm.weight", dim);
      addMatrix(w, p + "ffn_gate.weight", type, dim, shape.ffn(), inDim, seed, tensorIndex++);
      addMatrix(
          w,
          p + "ffn_down.weight",
          type,
          shape.ffn(),
          dim,
          1 / Math.sqrt(shape.ffn()),
          seed,
          tensorIndex++);
      addMatrix(w, p + "ffn_up.weight", type, dim, shape.ffn(), inDim, seed, tensorIndex++);
    }
    addNorm(w, "output_norm.weight", dim);
    addMatrix(
        w, "output.weight", type, dim, shape.vocab(), 2 / Math.sqrt(dim), seed, tensorIndex++);
    w.write(out);
    long bytes;
    try {
      bytes = Files.size(out);
    } catch (IOException e) {
      bytes = -1;
    }
    return new Summary(out, shape, type, shape.parameterCount(), bytes, w.tensorNames().size());
  }

  private static void addNorm(GgufWriter w, String name, int dim) {
    float[] ones = new float[dim];
    Arrays.fill(ones, 1f);
    w.addTensor(name, GgmlType.F32, new long[] {dim}, Quantizer.quantize(GgmlType.F32, ones));
  }

  /**
   * A {@code rows x cols} matrix (ggml dims {cols, rows}) streamed in parallel-generated chunks.
   */
  private static void addMatrix(
      GgufWriter w,
      String name,
      GgmlType type,
      int cols,
      int rows,
      double std,
      long seed,
      int tensorIndex) {
    int rowsPerChunk = Math.max(1, CHUNK_ELEMENTS / cols);
    int chunks = (rows + rowsPerChunk - 1) / rowsPerChunk;
    int rowBytes = Math.toIntExact(type.bytesFor(cols));
    int batch = Math.max(2, 2 * Runtime.getRuntime().availableProcessors());
    w.addTensor(
        name,
        type,
        new long[] {cols, rows},
        sink -> {
          for (int first = 0; first < chunks; first += batch) {
            int start = first;
            int n = Math.min(batch, chunks - first);
            byte[][] out = new byte[n][];
            IntStream.range(0, n)
                .parallel()
                .forEach(
                    i -> {
                      int chunk = start + i;
                      int r0 = chunk * rowsPerChunk;
                      int r1 = Math.min(rows, r0 + rowsPerChunk);
                      out[i] =
                          chunkBytes(
                              type,
                              cols,
                              r1 - r0,
                              rowBytes,
                              std,
                              chunkSeed(seed, tensorIndex, chunk));
                    });
            for (byte[] b : out) {
              sink.write(b);
            }
          }
        });
  }

  static long chunkSeed(long seed, int tensor, int chunk) {
    long h = seed * 0x9E3779B97F4A7C15L + tensor;
    h = (h ^ (h >>> 31)) * 0xBF58476D1CE4E5B9L + chunk;
    return h ^ (h >>> 29);
  }

  private static byte[] chunkBytes(
      GgmlType type, int cols, int rows, int rowBytes, double std, long seed) {
    SplittableRandom rnd = new SplittableRandom(seed);
    float[] row = new float[cols];
    byte[] out = new byte[rows * rowBytes];
    // Irwin-Hall: the sum of four 16-bit uniforms has variance 4 * 65536^2 / 12.
    double scale = std * Math.sqrt(3.0) / 65536.0;
    for (int r = 0; r < rows; r++) {
      for (int c = 0; c < cols; c++) {
        long u = rnd.nextLong();
        long sum = (u & 0xffff) + ((u >>> 16) & 0xffff) + ((u >>> 32) & 0xffff) + (u >>> 48);
        row[c] = (float) ((sum - 131070) * scale);
      }
      Quantizer.quantize(type, row, 0, cols, out, r * rowBytes);
    }
    return out;
  }
}
