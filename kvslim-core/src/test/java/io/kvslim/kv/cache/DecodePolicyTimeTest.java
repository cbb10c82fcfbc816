package io.kvslim.kv.cache;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.kv.KvCache;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.KvCacheFormat;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * A decode step's policy time ({@link ManagedKvCache#decodePolicyNanos}) counts the decode steps'
 * {@code afterStep} and not the prefill's (a quantizing policy converts the whole prompt after it),
 * while {@link ManagedKvCache#policyNanos} counts both. Bounds from sleeps, not timings.
 */
class DecodePolicyTimeTest {
  /** Sleeps {@code prefillMs} after a prefill and {@code decodeMs} after a decode step. */
  record Sleeper(long prefillMs, long decodeMs) implements KvPolicy {
    @Override
    public void afterStep(ManagedKvCache cache, KvCache.StepKind kind) {
      try {
        Thread.sleep(kind == KvCache.StepKind.DECODE ? decodeMs : prefillMs);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
  }

  @Test
  void thePrefillsPolicyTimeIsNotADecodeSteps() {
    KvCacheFormat[] formats = new KvCacheFormat[2];
    Arrays.fill(formats, KvCacheFormat.of(KvFormats.F32));
    try (ManagedKvCache cache =
        new ManagedKvCache(new BlockPool(), 2, 8, formats, List.of(new Sleeper(30, 2)))) {
      cache.afterStep(KvCache.StepKind.PREFILL);
      assertThat(cache.policyNanos()).isGreaterThanOrEqualTo(30_000_000L);
      assertThat(cache.decodePolicyNanos()).isZero();
      cache.afterStep(KvCache.StepKind.DECODE);
      cache.afterStep(KvCache.StepKind.DECODE);
      assertThat(cache.decodeSteps()).isEqualTo(2);
      assertThat(cache.decodePolicyNanos())
          .isGreaterThanOrEqualTo(4_000_000L)
          .isLessThan(cache.policyNanos() - 30_000_000L + 1);
    }
  }
}
