package io.kvslim.kv.method;

import io.kvslim.calibrate.ModelIdentity;

/**
 * What a method's policy is built for: the layers its rule covers ({@code layers[l]} true), the
 * model's shape, the bytes one token costs over all layers and heads in the spec's formats (byte
 * budgets divide by it), and the model's identity (null when unknown), against which calibration
 * profiles are checked.
 */
public record PolicyContext(
    boolean[] layers, int kvHeads, int headDim, double bytesPerToken, ModelIdentity model) {
  public PolicyContext(boolean[] layers, int kvHeads, int headDim, double bytesPerToken) {
    this(layers, kvHeads, headDim, bytesPerToken, null);
  }

  public int layerCount() {
    return layers.length;
  }
}
