package io.kvslim.model;

import io.kvslim.kv.*;

final class TmpDenseKv implements KvCache {
  final Layer[] layers;

  TmpDenseKv(ModelConfig c, int cap) {
    layers = new Layer[c.layers()];
    for (int i = 0; i < layers.length; i++) layers[i] = new Layer(c.kvHeads(), c.headDim(), cap);
  }

  public int layerCount() {
    return layers.length;
  }

  public LayerKv layer(int l) {
    return layers[l];
  }

  public long bytes() {
    return 0;
  }

  public void close() {}

  static final class Layer implements LayerKv {
    final int kvh, hd;
    final float[] K, V;
    final int[] pos;
    int n;

    Layer(int kvh, int hd, int cap) {
      this.kvh = kvh;
      this.hd = hd;
      K = new float[cap * kvh * hd];
      V = new float[cap * kvh * hd];
      pos = new int[cap];
    }

    public int kvHeads() {
      return kvh;
    }

    public int headDim() {
      return hd;
    }

    public void append(int cnt, int[] p, float[] k, float[] v) {
      System.arraycopy(k, 0, K, n * kvh * hd, cnt * kvh * hd);
      System.arraycopy(v, 0, V, n * kvh * hd, cnt * kvh * hd);
      System.arraycopy(p, 0, pos, n, cnt);
      n += cnt;
    }

    public void attend(
        int cnt, int[] qp, int heads, float[] q, float scale, float[] out, AttentionObserver o) {
      float[] sc = new float[n];
      int g = heads / kvh;
      for (int t = 0; t < cnt; t++)
        for (int h = 0; h < heads; h++) {
          int kh = h / g;
          float max = Float.NEGATIVE_INFINITY;
          for (int j = 0; j < n; j++) {
            if (pos[j] > qp[t]) {
              sc[j] = Float.NEGATIVE_INFINITY;
              continue;
            }
            float s = 0;
            for (int d = 0; d < hd; d++)
              s += q[(t * heads + h) * hd + d] * K[(j * kvh + kh) * hd + d];
            sc[j] = s * scale;
            max = Math.max(max, sc[j]);
          }
          double sum = 0;
          for (int j = 0; j < n; j++) {
            float e = sc[j] == Float.NEGATIVE_INFINITY ? 0f : (float) Math.exp(sc[j] - max);
            sc[j] = e;
            sum += e;
          }
          float inv = (float) (1.0 / sum);
          for (int d = 0; d < hd; d++) {
            float acc = 0;
            for (int j = 0; j < n; j++) acc += sc[j] * inv * V[(j * kvh + kh) * hd + d];
            out[(t * heads + h) * hd + d] = acc;
          }
        }
    }

    public int size(int h) {
      return n;
    }

    public long bytes() {
      return 0;
    }

    public long bytes(int h) {
      return 0;
    }
  }
}
