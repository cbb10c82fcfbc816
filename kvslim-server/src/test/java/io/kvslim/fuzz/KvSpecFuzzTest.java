package io.kvslim.fuzz;

import static org.assertj.core.api.Assertions.assertThat;

import com.code_intelligence.jazzer.junit.FuzzTest;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.method.KvSpecException;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.ModelConfig;
import io.kvslim.server.ApiException;
import io.kvslim.server.KvPlan;
import java.nio.charset.StandardCharsets;

/**
 * Coverage-guided fuzzing of the KV spec language (Jazzer): any text either parses, or fails with
 * {@link KvSpecException}; a parsed spec then either builds caches for a small model shape (the
 * registry's checks of every method and format against the shape) and a server plan, or fails with
 * {@link IllegalArgumentException} (the CLI) and a 400 {@link ApiException} (the server, which
 * resolves a request's {@code kv} the same way). Anything else is a finding. Seeds: spec strings
 * from the README and the tests.
 */
class KvSpecFuzzTest {
  /** 4 layers, 2 KV heads of 32: small enough that building every cache is cheap. */
  private static final ModelConfig SHAPE =
      new ModelConfig(
          "llama",
          128,
          4,
          4,
          2,
          32,
          256,
          100,
          2048,
          1e-5f,
          10000f,
          32,
          ModelConfig.RopeType.NORMAL,
          1f,
          false);

  @FuzzTest(maxDuration = "60s")
  void parseAndBuild(byte[] data) {
    String text = new String(data, StandardCharsets.UTF_8);
    if (KvPlan.namesProfile(text)) {
      // the CLI reads the profile file its user names (the fuzzer's path-traversal sanitizer
      // reports
      // any such read); a request may not name one: the server refuses it before reading anything
      try {
        KvPlan.refuseProfile(text);
        throw new AssertionError("a spec naming a profile was not refused: " + text);
      } catch (ApiException e) {
        assertThat(e.status()).isEqualTo(400);
      }
      return;
    }
    KvSpec spec;
    try {
      spec = KvSpec.parse(text);
    } catch (KvSpecException e) {
      FuzzChecks.assertHasMessage(e);
      return;
    }
    assertThat(spec.rules()).isNotEmpty();
    try {
      BlockPool pool = new BlockPool();
      try (ManagedKvCache cache = KvSpecs.caches(spec, pool, SHAPE).create()) {
        assertThat(cache.bytes()).isNotNegative();
      }
    } catch (IllegalArgumentException e) {
      FuzzChecks.assertHasMessage(e);
    }
    try {
      KvPlan plan = KvPlan.resolve(text, new BlockPool(), SHAPE, 64);
      assertThat(plan.estimateBytes(100, 100)).isNotNegative();
    } catch (ApiException e) {
      assertThat(e.status()).isEqualTo(400);
      FuzzChecks.assertHasMessage(e);
    }
  }
}
