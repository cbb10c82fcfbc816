package io.kvslim.kv.method;

import io.kvslim.calibrate.ModelIdentity;
import io.kvslim.kv.Rotary;
import io.kvslim.kv.policy.LayerAllocator;

/**
 * What a method's policy is built for: the layers its rule covers ({@code layers[l]} true), the
 * model's shape, the bytes one token costs over all layers and heads in the spec's formats (byte
 * budgets divide by it), the model's identity (null when unknown), against which calibration
 * profiles are checked, the model's rotary position embedding (null when unknown), for methods that
 * reason about queries before RoPE or at future positions (Expected Attention), and the rule's
 * per-layer budget allocator (null for none; see {@link KvMethod#allocator}).
 */
public record PolicyContext(
    boolean[] layers,
    int kvHeads,
    int headDim,
    double bytesPerToken,
    ModelIdentity model,
    Rotary rope,
    LayerAllocator allocator) {
  public PolicyContext(boolean[] layers, int kvHeads, int headDim, double bytesPerToken) {
    this(layers, kvHeads, headDim, bytesPerToken, null, null, null);
  }

  public PolicyContext(
      boolean[] layers, int kvHeads, int headDim, double bytesPerToken, ModelIdentity model) {
    this(layers, kvHeads, headDim, bytesPerToken, model, null, null);
  }

  public PolicyContext(
      boolean[] layers,
      int kvHeads,
      int headDim,
      double bytesPerToken,
      ModelIdentity model,
      Rotary rope) {
    this(layers, kvHeads, headDim, bytesPerToken, model, rope, null);
  }

  /** This context with the rule's per-layer allocator (null for none). */
  public PolicyContext withAllocator(LayerAllocator a) {
    return new PolicyContext(layers, kvHeads, headDim, bytesPerToken, model, rope, a);
  }

  public int layerCount() {
    return layers.length;
  }
}
