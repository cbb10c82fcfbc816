package io.kvslim.kv.policy;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import java.util.BitSet;

/**
 * StreamingLLM (Xiao et al. 2023, "Efficient Streaming Language Models with Attention Sinks",
 * arXiv:2309.17453 §3.2, METHODS.md E1): keep the first {@code sinks} tokens and the most recent
 * ones, capacity C = sinks + window per (layer, KV head). References below are to
 * mit-han-lab/streaming-llm at commit 2e50426.
 *
 * <ul>
 *   <li><b>When it evicts.</b> So that attention never sees more than C tokens, the new ones
 *       included, as the reference's {@code StartRecentKVCache.evict_for_space} ({@code
 *       streaming_llm/kv_cache.py} lines 66–94, called before each prompt at {@code
 *       examples/run_streaming_llama.py} lines 69–71) frees room for the tokens to come: after each
 *       step the oldest non-sink tokens go until C − 1 are left, room for the next token (a decode
 *       step then attends over exactly C), and before a chunk of {@code n > 1} tokens more go,
 *       until C − n are left. Freeing the room for one token right after the step rather than right
 *       before the next changes nothing for attention, and between steps the cache's blocks stay
 *       cut to its tokens (an eviction just before the append would cut them, then open a block for
 *       the new token). (The paper's perplexity script instead prunes to C after each token, {@code
 *       kv_cache.py} lines 40–64 called at {@code examples/eval_long_ppl.py} line 93, so its
 *       attention sees C + 1.) The prompt (the first prefill, in however many chunks) is taken
 *       whole and pruned once it ends (METHODS.md E1 step 3, the "prune once" variant of kvpress);
 *       tokens appended after it, one or a chunk at a time, are streamed.
 *   <li><b>Positions</b> ({@code positions=rolling}, the paper's and the default): attention uses
 *       positions inside the cache, not in the text: keys are stored before RoPE and rotated at
 *       read time by their index in the cache (sinks 0..S−1, the window S, S+1, … in cache order),
 *       the query by the index of its own token, the number of tokens kept before it ({@code
 *       streaming_llm/pos_shift/modify_llama.py} lines 89–103: the query at {@code position_ids},
 *       keys cached before RoPE at line 99 and rotated by {@code arange(kv_seq_len)}), so after the
 *       prompt the largest position RoPE sees is C − 1 (during a prompt longer than C, its length −
 *       1; see {@link io.kvslim.kv.cache.PagedLayerKv#appliesRope}). {@code positions=original}
 *       keeps post-RoPE keys at their positions in the text, as every other eviction policy does.
 * </ul>
 */
public final class StreamingPolicy implements KvPolicy {
  private final boolean[] layers;
  private final int sinks;
  private final int window;
  private final boolean rolling;
  private final BitSet scratch = new BitSet();

  /** A policy with cache-relative (rolling) positions, the paper's. */
  public StreamingPolicy(boolean[] layers, int sinks, int window) {
    this(layers, sinks, window, true);
  }

  /**
   * @param rolling cache-relative positions (keys before RoPE, rotated by cache index); false keeps
   *     the tokens' original positions
   */
  public StreamingPolicy(boolean[] layers, int sinks, int window, boolean rolling) {
    this.layers = layers;
    this.sinks = sinks;
    this.window = window;
    this.rolling = rolling;
  }

  public int capacity() {
    return sinks + window;
  }

  @Override
  public boolean cacheRelativePositions(int layer) {
    return rolling && layers[layer];
  }

  /**
   * Once the prompt has been taken, frees room for {@code n} tokens: keeps the sinks and the last
   * {@code window − n} other tokens (none when {@code n >= window}), as {@code evict_for_space}
   * does. The prompt itself is taken whole and pruned once when it ends, so until then the cache
   * holds what an uncompressed one would (which {@link ManagedKvCache#sharedPrefill} relies on).
   */
  @Override
  public void beforeAppend(ManagedKvCache cache, int layer, int n) {
    if (layers[layer] && cache.promptTokens() >= 0) {
      PagedLayerKv paged = cache.paged(layer);
      for (int g = 0; g < paged.kvHeads(); g++) {
        int size = paged.size(g);
        if (size + n > sinks + window) {
          evictOldest(paged, g, size, Math.max(0, window - n));
        }
      }
    }
  }

  /** Leaves the sinks and the last {@code window − 1} other tokens: room for the next token. */
  @Override
  public void afterStep(ManagedKvCache cache, KvCache.StepKind kind) {
    for (int l = 0; l < layers.length; l++) {
      if (layers[l]) {
        beforeAppend(cache, l, 1);
      }
    }
  }

  /** Evicts the non-sink tokens of head {@code g} but the last {@code keep}. */
  private void evictOldest(PagedLayerKv layer, int g, int size, int keep) {
    int end = size - keep;
    if (end > sinks) {
      scratch.clear();
      scratch.set(sinks, end);
      layer.evict(g, scratch);
    }
  }
}
