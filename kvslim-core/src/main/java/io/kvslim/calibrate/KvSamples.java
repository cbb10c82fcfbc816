package io.kvslim.calibrate;

import io.kvslim.engine.Engine;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.model.ModelConfig;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

/**
 * A uniform sample of the keys and values an F32 prefill of calibration windows writes, per layer:
 * reservoir sampling over (token, KV head) pairs, the same pair's key and value kept in every layer
 * (what the CQ codebooks and the Lexico dictionaries are learned on).
 *
 * @param keys {@code keys[layer]}: {@code n} post-RoPE keys of {@code headDim} floats, row-major
 * @param values {@code values[layer]}: the matching values
 * @param heads {@code heads[i]}: the KV head row {@code i} was taken from
 * @param n rows sampled (at most the capacity asked for)
 */
record KvSamples(float[][] keys, float[][] values, int[] heads, int n) {

  /** At most {@code capacity} rows per layer, slots drawn from {@code random} once it is full. */
  static KvSamples draw(Engine engine, List<int[]> windows, int capacity, SplittableRandom random) {
    ModelConfig c = engine.config();
    int layers = c.layers();
    int d = c.headDim();
    float[][] resK = new float[layers][capacity * d];
    float[][] resV = new float[layers][capacity * d];
    int[] heads = new int[capacity];
    long seen = 0;
    float[] row = new float[d];
    float[] logits = new float[c.vocabSize()];
    KvCacheFormat[] formats = new KvCacheFormat[layers];
    Arrays.fill(formats, KvCacheFormat.of(KvFormats.F32));
    for (int[] window : windows) {
      try (ManagedKvCache cache =
          new ManagedKvCache(new BlockPool(), c.kvHeads(), d, formats, List.of(), null)) {
        engine.prefill(cache, window, 0, window.length, 0, false, logits);
        for (int t = 0; t < window.length; t++) {
          for (int g = 0; g < c.kvHeads(); g++) {
            long index = seen++;
            int slot = index < capacity ? (int) index : (int) random.nextLong(index + 1);
            if (slot >= capacity) {
              continue;
            }
            heads[slot] = g;
            for (int l = 0; l < layers; l++) {
              HeadStore head = cache.paged(l).store().head(g);
              head.readKey(t, row);
              System.arraycopy(row, 0, resK[l], slot * d, d);
              head.readValue(t, row);
              System.arraycopy(row, 0, resV[l], slot * d, d);
            }
          }
        }
      }
    }
    int n = (int) Math.min(seen, capacity);
    return new KvSamples(resK, resV, Arrays.copyOf(heads, n), n);
  }
}
