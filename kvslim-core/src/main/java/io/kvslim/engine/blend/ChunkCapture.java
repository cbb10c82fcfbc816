package io.kvslim.engine.blend;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.LayerKv;

/**
 * A cache that records every key and value appended to it, layer by layer, while it hands
 * everything to {@code inner}: a chunk's own prefill goes through it and the records become the
 * chunk's {@link ChunkKv}. Appends must come in position order from 0 (one prefill from the start).
 * Closing it closes {@code inner}.
 */
final class ChunkCapture implements KvCache {
  private final KvCache inner;
  private final Recording[] layers;

  ChunkCapture(KvCache inner, int rows) {
    this.inner = inner;
    this.layers = new Recording[inner.layerCount()];
    for (int l = 0; l < layers.length; l++) {
      layers[l] = new Recording(inner.layer(l), rows);
    }
  }

  /** The recorded chunk; every layer must have received all {@code tokens}. */
  ChunkKv chunk(int[] tokens) {
    float[][] keys = new float[layers.length][];
    float[][] values = new float[layers.length][];
    for (int l = 0; l < layers.length; l++) {
      if (layers[l].count != tokens.length) {
        throw new IllegalStateException(
            "layer " + l + " received " + layers[l].count + " of " + tokens.length + " tokens");
      }
      keys[l] = layers[l].keys;
      values[l] = layers[l].values;
    }
    return new ChunkKv(tokens.clone(), keys, values);
  }

  @Override
  public int layerCount() {
    return layers.length;
  }

  @Override
  public LayerKv layer(int layer) {
    return layers[layer];
  }

  @Override
  public long bytes() {
    return inner.bytes();
  }

  @Override
  public int prefillChunk() {
    return inner.prefillChunk();
  }

  @Override
  public void beginPrompt(int tokens) {
    inner.beginPrompt(tokens);
  }

  @Override
  public boolean thinsPrefill() {
    return inner.thinsPrefill();
  }

  @Override
  public void afterStep(StepKind kind) {
    inner.afterStep(kind);
  }

  @Override
  public void close() {
    inner.close();
  }

  private static final class Recording extends ForwardingLayer {
    private final int width;
    final float[] keys;
    final float[] values;
    int count;

    Recording(LayerKv inner, int rows) {
      super(inner);
      this.width = inner.kvHeads() * inner.headDim();
      this.keys = new float[rows * width];
      this.values = new float[rows * width];
    }

    @Override
    public void append(int n, int[] positions, float[] k, float[] v) {
      for (int i = 0; i < n; i++) {
        if (positions[i] != count + i) {
          throw new IllegalStateException(
              "a chunk is recorded in position order, got " + positions[i] + " at " + (count + i));
        }
      }
      System.arraycopy(k, 0, keys, count * width, n * width);
      System.arraycopy(v, 0, values, count * width, n * width);
      count += n;
      inner.append(n, positions, k, v);
    }
  }
}
