package io.kvslim.kv;

import io.kvslim.kv.cache.PagedLayerKv;

/**
 * The order in which a layer's attention rounds: part of the forward pass's numerics ({@code
 * io.kvslim.model.Numerics}), handed to every {@link LayerKv#attend(int, int[], int, float[],
 * float, float[], AttentionObserver, io.kvslim.tensor.Parallel, AttentionOrder) attend} call.
 */
public enum AttentionOrder {
  /**
   * The cache's own fixed order: unnormalized weights, normalized at the end ({@link
   * DenseLayerKv}'s arithmetic, which {@link PagedLayerKv} reproduces bit for bit over F32 keys and
   * values).
   */
  OWN,

  /**
   * llama.cpp's CPU backend without flash attention ({@code KQ}, {@code soft_max_ext}, {@code
   * KQV}), over KV heads whose blocks are all F32; other heads and layers that do not support it
   * use their own order. See {@link PagedLayerKv#attend(int, int[], int, float[], float, float[],
   * AttentionObserver, io.kvslim.tensor.Parallel, AttentionOrder)}.
   */
  LLAMA_CPP
}
