package io.kvslim;

import io.kvslim.gguf.GgmlType;
import io.kvslim.gguf.GgufValueType;
import io.kvslim.gguf.GgufWriter;
import io.kvslim.tensor.Quantizer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * A complete, loadable llama model of a few kilobytes, written with {@link GgufWriter}: one layer,
 * embedding 32, two query heads sharing one KV head of 16, feed-forward 64, a 57-token
 * SentencePiece vocabulary (specials, the word-start piece, the letters with and without it) and a
 * context of {@code context} tokens. Weights are seeded random, norms 1. Tests that need a model
 * without the shared data (CLI limits, loader checks, fuzz seeds) use it.
 */
public final class TinyModel {
  private TinyModel() {}

  public static final int DIM = 32;
  public static final int FFN = 64;
  public static final int HEAD_DIM = 16;

  /** The vocabulary: {@code <unk> <s> </s> ▁ a..z ▁a..▁z}. */
  public static String[] vocabulary() {
    List<String> v = new ArrayList<>(List.of("<unk>", "<s>", "</s>", "\u2581"));
    for (char c = 'a'; c <= 'z'; c++) {
      v.add(String.valueOf(c));
    }
    for (char c = 'a'; c <= 'z'; c++) {
      v.add("\u2581" + c);
    }
    return v.toArray(String[]::new);
  }

  /** The model in F32 with a context of {@code context} tokens. */
  public static Path write(Path out, int context) {
    writer(GgmlType.F32, context, Map.of()).write(out);
    return out;
  }

  /**
   * A writer holding the whole model with matrices in {@code type} (F32, F16, Q8_0 or Q4_0) and
   * norms in F32; {@code replace} gives the values of tensors to write instead of the generated
   * ones (by name). Callers may change its metadata before writing.
   */
  public static GgufWriter writer(GgmlType type, int context, Map<String, float[]> replace) {
    String[] vocab = vocabulary();
    GgufWriter w = new GgufWriter();
    w.putString("general.architecture", "llama");
    w.putString("general.name", "kvslim tiny test model");
    w.putUInt32("llama.vocab_size", vocab.length);
    w.putUInt32("llama.context_length", context);
    w.putUInt32("llama.embedding_length", DIM);
    w.putUInt32("llama.block_count", 1);
    w.putUInt32("llama.feed_forward_length", FFN);
    w.putUInt32("llama.rope.dimension_count", HEAD_DIM);
    w.putUInt32("llama.attention.head_count", DIM / HEAD_DIM);
    w.putUInt32("llama.attention.head_count_kv", 1);
    w.putFloat32("llama.attention.layer_norm_rms_epsilon", 1e-5);
    w.putFloat32("llama.rope.freq_base", 10000);
    w.putString("tokenizer.ggml.model", "llama");
    w.putArray("tokenizer.ggml.tokens", GgufValueType.STRING, vocab);
    double[] scores = new double[vocab.length];
    long[] types = new long[vocab.length];
    for (int i = 0; i < vocab.length; i++) {
      scores[i] = i < 3 ? 0 : -i;
      types[i] = i == 0 ? 2 : i < 3 ? 3 : 1;
    }
    w.putArray("tokenizer.ggml.scores", GgufValueType.FLOAT32, scores);
    w.putArray("tokenizer.ggml.token_type", GgufValueType.INT32, types);
    w.putUInt32("tokenizer.ggml.bos_token_id", 1);
    w.putUInt32("tokenizer.ggml.eos_token_id", 2);
    w.putUInt32("tokenizer.ggml.unknown_token_id", 0);
    SplittableRandom rnd = new SplittableRandom(7);
    int kv = HEAD_DIM;
    matrix(w, "token_embd.weight", type, DIM, vocab.length, rnd, replace);
    norm(w, "blk.0.attn_norm.weight", replace);
    matrix(w, "blk.0.attn_q.weight", type, DIM, DIM, rnd, replace);
    matrix(w, "blk.0.attn_k.weight", type, DIM, kv, rnd, replace);
    matrix(w, "blk.0.attn_v.weight", type, DIM, kv, rnd, replace);
    matrix(w, "blk.0.attn_output.weight", type, DIM, DIM, rnd, replace);
    norm(w, "blk.0.ffn_norm.weight", replace);
    matrix(w, "blk.0.ffn_gate.weight", type, DIM, FFN, rnd, replace);
    matrix(w, "blk.0.ffn_up.weight", type, DIM, FFN, rnd, replace);
    matrix(w, "blk.0.ffn_down.weight", type, FFN, DIM, rnd, replace);
    norm(w, "output_norm.weight", replace);
    return w;
  }

  private static void norm(GgufWriter w, String name, Map<String, float[]> replace) {
    float[] ones = new float[DIM];
    Arrays.fill(ones, 1f);
    float[] v = replace.getOrDefault(name, ones);
    w.addTensor(name, GgmlType.F32, new long[] {DIM}, Quantizer.quantize(GgmlType.F32, v));
  }

  private static void matrix(
      GgufWriter w,
      String name,
      GgmlType type,
      int cols,
      int rows,
      SplittableRandom rnd,
      Map<String, float[]> replace) {
    float[] v = new float[cols * rows];
    for (int i = 0; i < v.length; i++) {
      v[i] = (float) (rnd.nextDouble(-1, 1) / Math.sqrt(cols));
    }
    v = replace.getOrDefault(name, v);
    w.addTensor(name, type, new long[] {cols, rows}, Quantizer.quantize(type, v));
  }
}
