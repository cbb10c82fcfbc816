package io.kvslim.kv.policy;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import java.util.BitSet;

/**
 * StreamingLLM (Xiao et al. 2023, "Efficient Streaming Language Models with Attention Sinks",
 * arXiv:2309.17453 §3.2): keep the first {@code sinks} tokens and the {@code window} most recent;
 * after every step evict the oldest non-sink tokens beyond that capacity. Kept tokens keep their
 * original positions (the paper's rolling positions are not implemented; the spec says so).
 */
public final class StreamingPolicy implements KvPolicy {
  private final boolean[] layers;
  private final int sinks;
  private final int window;
  private final BitSet scratch = new BitSet();

  public StreamingPolicy(boolean[] layers, int sinks, int window) {
    this.layers = layers;
    this.sinks = sinks;
    this.window = window;
  }

  public int capacity() {
    return sinks + window;
  }

  @Override
  public void afterStep(ManagedKvCache cache, KvCache.StepKind kind) {
    for (int l = 0; l < layers.length; l++) {
      if (!layers[l]) {
        continue;
      }
      PagedLayerKv layer = cache.paged(l);
      for (int g = 0; g < layer.kvHeads(); g++) {
        int size = layer.size(g);
        if (size > sinks + window) {
          scratch.clear();
          scratch.set(sinks, size - window);
          layer.evict(g, scratch);
        }
      }
    }
  }
}
