package io.kvslim.kv.method;

import io.kvslim.calibrate.ModelIdentity;
import io.kvslim.kv.Rotary;

/**
 * What a method's policy is built for: the layers its rule covers ({@code layers[l]} true), the
 * model's shape, the bytes one token costs over all layers and heads in the spec's formats (byte
 * budgets divide by it), the model's identity (null when unknown), against which calibration
 * profiles are checked, and the model's rotary position embedding (null when unknown), for methods
 * that reason about queries before RoPE or at future positions (Expected Attention).
 */
public record PolicyContext(
    boolean[] layers,
    int kvHeads,
    int headDim,
    double bytesPerToken,
    ModelIdentity model,
    Rotary rope) {
  public PolicyContext(boolean[] layers, int kvHeads, int headDim, double bytesPerToken) {
    this(layers, kvHeads, headDim, bytesPerToken, null, null);
  }

  public PolicyContext(
      boolean[] layers, int kvHeads, int headDim, double bytesPerToken, ModelIdentity model) {
    this(layers, kvHeads, headDim, bytesPerToken, model, null);
  }

  public int layerCount() {
    return layers.length;
  }
}
