package io.kvslim.engine.blend;

import io.kvslim.kv.AttentionObserver;
import io.kvslim.kv.AttentionOrder;
import io.kvslim.kv.LayerKv;
import io.kvslim.kv.Rotary;
import io.kvslim.tensor.Parallel;

/**
 * A layer that hands every call to another: the base of CacheBlend's capturing and fusing layers.
 */
abstract class ForwardingLayer implements LayerKv {
  final LayerKv inner;

  ForwardingLayer(LayerKv inner) {
    this.inner = inner;
  }

  @Override
  public int kvHeads() {
    return inner.kvHeads();
  }

  @Override
  public int headDim() {
    return inner.headDim();
  }

  @Override
  public void append(int n, int[] positions, float[] keys, float[] values) {
    inner.append(n, positions, keys, values);
  }

  @Override
  public boolean appliesRope(Rotary rope) {
    return inner.appliesRope(rope);
  }

  @Override
  public void attend(
      int n,
      int[] positions,
      int heads,
      float[] queries,
      float scale,
      float[] out,
      AttentionObserver observer) {
    inner.attend(n, positions, heads, queries, scale, out, observer);
  }

  @Override
  public void attend(
      int n,
      int[] positions,
      int heads,
      float[] queries,
      float scale,
      float[] out,
      AttentionObserver observer,
      Parallel pool) {
    inner.attend(n, positions, heads, queries, scale, out, observer, pool);
  }

  @Override
  public void attend(
      int n,
      int[] positions,
      int heads,
      float[] queries,
      float scale,
      float[] out,
      AttentionObserver observer,
      Parallel pool,
      AttentionOrder order) {
    inner.attend(n, positions, heads, queries, scale, out, observer, pool, order);
  }

  @Override
  public boolean storesKv() {
    return inner.storesKv();
  }

  @Override
  public boolean wantsAttentionOutput() {
    return inner.wantsAttentionOutput();
  }

  @Override
  public void attentionOutput(int rows, int dim, float[] x, float[] out, int off) {
    inner.attentionOutput(rows, dim, x, out, off);
  }

  @Override
  public int[] keptRows(int rows) {
    return inner.keptRows(rows);
  }

  @Override
  public int size(int kvHead) {
    return inner.size(kvHead);
  }

  @Override
  public long bytes() {
    return inner.bytes();
  }

  @Override
  public long bytes(int kvHead) {
    return inner.bytes(kvHead);
  }
}
