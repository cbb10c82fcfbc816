package io.kvslim.kv;

/** The reference uncompressed cache: one {@link DenseLayerKv} per layer. */
public final class DenseKvCache implements KvCache {
  private final DenseLayerKv[] layers;

  public DenseKvCache(int layerCount, int kvHeads, int headDim) {
    layers = new DenseLayerKv[layerCount];
    for (int l = 0; l < layerCount; l++) {
      layers[l] = new DenseLayerKv(kvHeads, headDim);
    }
  }

  @Override
  public int layerCount() {
    return layers.length;
  }

  @Override
  public DenseLayerKv layer(int layer) {
    return layers[layer];
  }

  @Override
  public long bytes() {
    long total = 0;
    for (DenseLayerKv l : layers) {
      total += l.bytes();
    }
    return total;
  }

  @Override
  public void close() {}
}
