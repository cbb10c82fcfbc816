package io.kvslim.server;

import io.kvslim.engine.Engine;
import io.kvslim.engine.blend.CacheBlend;
import io.kvslim.engine.blend.ChunkKvStore;
import java.util.HashMap;
import java.util.Map;

/**
 * The scheduler's CacheBlend prefills: one chunk store for the server's lifetime (chunks are keyed
 * by the model, the request's KV spec and their tokens) and one {@link CacheBlend} per KV spec and
 * blend spec. A blended prompt runs alone, in one forward pass, on the scheduler thread.
 */
final class BlendPrefill {
  /** Bytes of chunk KV kept (least recently used chunks go first). */
  static final long STORE_BYTES = 256L << 20;

  private final Engine engine;
  private final ChunkKvStore store = new ChunkKvStore(STORE_BYTES);
  private final Map<String, CacheBlend> blends = new HashMap<>();

  BlendPrefill(Engine engine) {
    this.engine = engine;
  }

  ChunkKvStore store() {
    return store;
  }

  /** Prefills {@code s}'s cache with its blended prompt; the last token's logits into logits. */
  CacheBlend.Result prefill(Sequence s, float[] logits) {
    BlendPrompt p = s.blend;
    KvPlan plan = s.plan;
    CacheBlend blend =
        blends.computeIfAbsent(
            plan.text() + "|" + p.options(),
            k -> new CacheBlend(engine, plan::create, plan.text(), store, p.options()));
    return blend.prefill(s.cache, p.prefix(), p.chunks(), p.suffix(), logits);
  }
}
