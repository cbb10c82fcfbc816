package io.kvslim.kv.method;

/**
 * What a method's policy is built for: the layers its rule covers ({@code layers[l]} true), the
 * model's shape, and the bytes one token costs over all layers and heads in the spec's formats
 * (byte budgets divide by it).
 */
public record PolicyContext(boolean[] layers, int kvHeads, int headDim, double bytesPerToken) {
  public int layerCount() {
    return layers.length;
  }
}
