package io.kvslim.model;

import io.kvslim.kv.AttentionOrder;
import io.kvslim.tensor.ActivationQuant;
import io.kvslim.tensor.MatMul;
import io.kvslim.tensor.Parallel;
import io.kvslim.tensor.WeightMatrix;
import java.util.List;
import java.util.Locale;

/**
 * How the forward pass rounds where kvslim and llama.cpp may differ: the activations a matmul
 * multiplies the weights with, and the order attention adds things up in. Chosen once, when the
 * {@link Forward} (and so the engine) is built; the forward pass reads it from a final field once
 * per matmul or attention call, never per element.
 *
 * <p>RMSNorm, RoPE, SwiGLU and the residual adds are llama.cpp's in both.
 *
 * <ul>
 *   <li>{@link #DEFAULT}: kvslim's own matmuls ({@link MatMul}, F32 activations for every weight
 *       type), attention in the cache's own order ({@link AttentionOrder#OWN}).
 *   <li>{@link #LLAMA_CPP}: what llama.cpp's CPU backend computes (x86-64, AVX-512 build, F32 KV
 *       cache, no flash attention), bit for bit: matmuls over quantized, F16 and BF16 weights
 *       convert the activations as llama.cpp does (Q8_0/Q8_1/Q8_K blocks, or F16/BF16) and use its
 *       integer block dot products, F32 weights its F32 summation order ({@link ActivationQuant});
 *       attention in llama.cpp's order ({@link AttentionOrder#LLAMA_CPP}).
 * </ul>
 */
public sealed interface Numerics permits Numerics.Own, Numerics.LlamaCpp {
  /** kvslim's own numerics: F32 activations, the cache's attention order. */
  Numerics DEFAULT = new Own();

  /** llama.cpp's numerics: its activation conversion and block dot products, its attention. */
  Numerics LLAMA_CPP = new LlamaCpp();

  /** The name the command line uses: {@code default} or {@code llamacpp}. */
  String name();

  /** The order attention runs in. */
  AttentionOrder attentionOrder();

  /**
   * Whether {@link #matmul} over {@code w} is {@link MatMul}'s (F32 activations), so that it may
   * share one dispatch with other such matmuls ({@link MatMul#matmuls}, or rows of several matrices
   * per thread) with the same result row by row.
   */
  boolean fusable(WeightMatrix w);

  /** {@code out[r] = w · in[r]} for the {@code n} rows of {@code in}. */
  void matmul(WeightMatrix w, float[] in, int n, float[] out, Parallel pool);

  /** The numerics named {@code name} ({@code default} or {@code llamacpp}). */
  static Numerics parse(String name) {
    for (Numerics n : all()) {
      if (n.name().equals(name.toLowerCase(Locale.ROOT))) {
        return n;
      }
    }
    throw new IllegalArgumentException(
        "unknown --numerics '" + name + "' (expected one of: " + String.join(", ", names()) + ")");
  }

  static List<Numerics> all() {
    return List.of(DEFAULT, LLAMA_CPP);
  }

  static List<String> names() {
    return all().stream().map(Numerics::name).toList();
  }

  /** {@link #DEFAULT}. */
  final class Own implements Numerics {
    private Own() {}

    @Override
    public String name() {
      return "default";
    }

    @Override
    public AttentionOrder attentionOrder() {
      return AttentionOrder.OWN;
    }

    @Override
    public boolean fusable(WeightMatrix w) {
      return true;
    }

    @Override
    public void matmul(WeightMatrix w, float[] in, int n, float[] out, Parallel pool) {
      MatMul.matmul(w, in, n, out, pool);
    }

    @Override
    public String toString() {
      return name();
    }
  }

  /** {@link #LLAMA_CPP}. */
  final class LlamaCpp implements Numerics {
    private LlamaCpp() {}

    @Override
    public String name() {
      return "llamacpp";
    }

    @Override
    public AttentionOrder attentionOrder() {
      return AttentionOrder.LLAMA_CPP;
    }

    @Override
    public boolean fusable(WeightMatrix w) {
      return !ActivationQuant.applies(w.type());
    }

    @Override
    public void matmul(WeightMatrix w, float[] in, int n, float[] out, Parallel pool) {
      if (ActivationQuant.applies(w.type())) {
        ActivationQuant.matmul(w, in, n, out, pool);
      } else {
        MatMul.matmul(w, in, n, out, pool);
      }
    }

    @Override
    public String toString() {
      return name();
    }
  }
}
