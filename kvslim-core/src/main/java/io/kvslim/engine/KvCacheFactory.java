package io.kvslim.engine;

import io.kvslim.kv.KvCache;
import io.kvslim.model.ModelConfig;

/** Makes a fresh KV cache for a new sequence of a model. */
@FunctionalInterface
public interface KvCacheFactory {
  KvCache create(ModelConfig config);
}
