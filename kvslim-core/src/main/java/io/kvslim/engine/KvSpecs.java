package io.kvslim.engine;

import io.kvslim.calibrate.ModelIdentity;
import io.kvslim.kv.cache.KvCaches;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import io.kvslim.model.ModelConfig;

/** Adapts a KV spec to the engine: a cache factory for a model's shape. */
public final class KvSpecs {
  private KvSpecs() {}

  /**
   * Caches for {@code spec} and {@code config}'s shape, drawing from {@code pool}; a method's
   * calibration profile is checked against the model {@code config} belongs to ({@link
   * Model#fileOf}), and methods that need the model's RoPE get its ({@link Model#ropeOf}).
   */
  public static KvCaches caches(KvSpec spec, BlockPool pool, ModelConfig config) {
    ModelIdentity model =
        new ModelIdentity(
            Model.fileOf(config),
            config.layers(),
            config.heads(),
            config.kvHeads(),
            config.headDim());
    return new KvCaches(
        spec,
        pool,
        config.layers(),
        config.kvHeads(),
        config.headDim(),
        model,
        Model.ropeOf(config));
  }

  /** A factory that builds (and checks) the spec's caches on first use, per model shape. */
  public static KvCacheFactory factory(KvSpec spec, BlockPool pool) {
    return new KvCacheFactory() {
      private KvCaches caches;
      private ModelConfig shape;

      @Override
      public synchronized io.kvslim.kv.KvCache create(ModelConfig config) {
        if (caches == null || shape != config) {
          caches = caches(spec, pool, config);
          shape = config;
        }
        return caches.create();
      }
    };
  }
}
