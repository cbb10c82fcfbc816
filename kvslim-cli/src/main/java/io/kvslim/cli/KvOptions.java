package io.kvslim.cli;

import io.kvslim.engine.KvCacheFactory;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import picocli.CommandLine.Option;

/** The {@code --kv SPEC} option shared by commands that run the model. */
public final class KvOptions {
  @Option(
      names = "--kv",
      paramLabel = "SPEC",
      description =
          "KV cache method(s), e.g. 'snapkv:budget=512 + q8_0' (default: ${DEFAULT-VALUE}); see"
              + " 'kvslim kv-methods'.")
  String spec = "full";

  private KvSpec parsed;

  /** The parsed spec; a bad spec fails here, before any model is loaded. */
  public KvSpec parsed() {
    if (parsed == null) {
      parsed = KvSpec.parse(spec);
    }
    return parsed;
  }

  public String spec() {
    return parsed().text();
  }

  public KvCacheFactory factory() {
    return KvSpecs.factory(parsed(), new BlockPool());
  }
}
