package io.kvslim.kv.tier;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.cache.KvCaches;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The prefix cache over a disk tier on the tiny SPM model: a restored prefix gives the RAM-only
 * logits bit for bit (full-precision blocks), a flipped byte or a foreign block is rejected and
 * recomputed, and compressed blocks are stored and restored in their format.
 */
class PrefixCacheTest {
  private static Model model;
  private static Engine engine;
  @TempDir Path dir;

  @BeforeAll
  static void load() {
    model = Model.load(SharedData.model("llama-spm-f32.gguf"));
    engine = new Engine(model, 1, KvSpecs.factory(KvSpec.FULL, new BlockPool()));
  }

  @AfterAll
  static void close() {
    if (engine != null) {
      engine.close();
    }
  }

  private static int[] prompt(int n, long seed) {
    Random r = new Random(seed);
    int[] t = new int[n];
    t[0] = 1;
    for (int i = 1; i < n; i++) {
      t[i] = 3 + r.nextInt(model.config().vocabSize() - 3);
    }
    return t;
  }

  /** The logits of the prompt's last row and then of {@code steps} greedy decode steps. */
  private static List<float[]> run(
      ManagedKvCache cache, PrefixCache prefix, String spec, int[] prompt, int steps) {
    int restored = prefix == null ? 0 : prefix.restore(cache, spec, prompt, prompt.length);
    int vocab = model.config().vocabSize();
    float[] logits = new float[vocab];
    engine.prefill(cache, prompt, restored, prompt.length, restored, false, logits);
    if (prefix != null) {
      prefix.store(cache, spec, prompt, prompt.length, restored);
    }
    List<float[]> out = new ArrayList<>();
    out.add(logits.clone());
    int pos = prompt.length;
    for (int s = 0; s < steps; s++) {
      int best = 0;
      for (int i = 1; i < vocab; i++) {
        best = logits[i] > logits[best] ? i : best;
      }
      engine.decode(cache, best, pos++, logits);
      out.add(logits.clone());
    }
    return out;
  }

  private static KvCaches caches(String spec) {
    return KvSpecs.caches(KvSpec.parse(spec), new BlockPool(), model.config());
  }

  private PrefixCache prefix(TierStats stats) {
    return new PrefixCache(
        List.of(new DiskTier(dir)),
        PrefixCache.identityOf(model.config(), "default"),
        stats,
        w -> {});
  }

  @Test
  void restoredFullPrecisionPrefixGivesTheRamOnlyLogitsBitForBit() {
    for (String spec : new String[] {"full", "f16"}) {
      KvCaches caches = caches(spec);
      int[] first = prompt(300, 1);
      int[] second = first.clone();
      for (int i = 200; i < second.length; i++) {
        second[i] = 5 + i; // shares the first 200 tokens
      }
      List<float[]> ramOnly = run(caches.create(), null, spec, second, 4);
      TierStats stats = new TierStats();
      PrefixCache prefix = prefix(stats);
      run(caches.create(), prefix, spec, first, 0);
      assertThat(stats.stored.get()).isEqualTo(300 / 32);
      ManagedKvCache tiered = caches.create();
      List<float[]> restoredRun = run(tiered, prefix, spec, second, 4);
      assertThat(stats.restoredTokens.get()).as(spec).isEqualTo(192); // 6 whole blocks of 32
      for (int i = 0; i < ramOnly.size(); i++) {
        assertThat(restoredRun.get(i)).as(spec + " step " + i).containsExactly(ramOnly.get(i));
      }
      ManagedKvCache ram = caches.create();
      run(ram, null, spec, second, 4);
      assertThat(tiered.bytes()).isEqualTo(ram.bytes());
      clear();
    }
  }

  @Test
  void aFlippedByteIsDetectedAndItsBlockRecomputed() throws IOException {
    KvCaches caches = caches("full");
    int[] p = prompt(200, 2);
    List<float[]> ramOnly = run(caches.create(), null, "full", p, 2);
    TierStats stats = new TierStats();
    PrefixCache prefix = prefix(stats);
    run(caches.create(), prefix, "full", p, 0);
    // flip one byte inside the third block's payload
    Path f = new DiskTier(dir).file(prefix.keyOf("full", p, 32, 2));
    byte[] bytes = Files.readAllBytes(f);
    bytes[bytes.length / 2] ^= 0x10;
    Files.write(f, bytes);
    List<float[]> again = run(caches.create(), prefix, "full", p, 2);
    assertThat(stats.rejected.get()).isEqualTo(1);
    assertThat(stats.restoredTokens.get()).isEqualTo(64); // blocks 0 and 1 only
    for (int i = 0; i < ramOnly.size(); i++) {
      assertThat(again.get(i)).containsExactly(ramOnly.get(i));
    }
  }

  @Test
  void anotherSpecOrModelFindsNothingAndAForeignBlockIsRejected() throws TierBlock.Rejected {
    KvCaches caches = caches("full");
    int[] p = prompt(100, 3);
    TierStats stats = new TierStats();
    PrefixCache prefix = prefix(stats);
    run(caches.create(), prefix, "full", p, 0);
    PrefixCache other =
        new PrefixCache(List.of(new DiskTier(dir)), "another model", new TierStats(), w -> {});
    assertThat(other.restore(caches.create(), "full", p, p.length)).isZero();
    MemorySegment[][] k = {{MemorySegment.ofArray(new byte[8])}};
    byte[] chain = new byte[32];
    byte[] data = TierBlock.encode("model A\nkv=full", chain, 0, 32, k, k);
    long[] sizes = {8};
    assertThatThrownBy(
            () -> TierBlock.decode(data, "model B\nkv=full", chain, 0, 32, 1, sizes, sizes))
        .isInstanceOf(TierBlock.Rejected.class)
        .hasMessageContaining("another model");
    assertThatThrownBy(
            () ->
                TierBlock.decode(
                    java.util.Arrays.copyOf(data, data.length - 3),
                    "model A\nkv=full",
                    chain,
                    0,
                    32,
                    1,
                    sizes,
                    sizes))
        .isInstanceOf(TierBlock.Rejected.class);
    assertThat(TierBlock.decode(data, "model A\nkv=full", chain, 0, 32, 1, sizes, sizes).keys())
        .hasDimensions(1, 1);
  }

  @Test
  void compressedBlocksAreStoredInTheirFormatAndRestoredWhole() {
    for (String spec : new String[] {"q4_0", "kivi:kbits=2,vbits=2,group=32,residual=64"}) {
      KvCaches caches = caches(spec);
      int[] p = prompt(300, 4);
      TierStats stats = new TierStats();
      PrefixCache prefix = prefix(stats);
      ManagedKvCache original = caches.create();
      List<float[]> first = run(original, prefix, spec, p, 0);
      assertThat(stats.stored.get()).as(spec).isPositive();
      long perBlock = stats.bytesWritten.get() / stats.stored.get();
      // an F32 block: 32 tokens x 32 dims x 4 bytes x (keys, values) x 4 layers x 2 KV heads;
      // KIVI's blocks hold 64 tokens (R)
      assertThat(perBlock).as(spec).isLessThan((spec.startsWith("kivi") ? 2 : 1) * 65_536 / 4);
      ManagedKvCache restored = caches.create();
      List<float[]> second = run(restored, prefix, spec, p, 0);
      int unit = spec.startsWith("kivi") ? 64 : 32;
      long tokens = stats.restoredTokens.get();
      assertThat(tokens % unit).isZero();
      assertThat(tokens).as(spec).isGreaterThanOrEqualTo(192);
      // the restored blocks are byte for byte the ones the first run settled
      for (int l = 0; l < original.layerCount(); l++) {
        for (int g = 0; g < original.paged(l).kvHeads(); g++) {
          int blockTokens = original.paged(l).store().format().blockTokens(); // KIVI: R = 64
          for (int b = 0; b < tokens / blockTokens; b++) {
            var a = original.paged(l).head(g).blocks().get(b);
            var c = restored.paged(l).head(g).blocks().get(b);
            assertThat(a.keys().mismatch(c.keys())).isEqualTo(-1);
            assertThat(a.values().mismatch(c.values())).isEqualTo(-1);
          }
        }
      }
      assertThat(restored.tokens()).isEqualTo(original.tokens());
      if (!spec.startsWith("kivi")) {
        assertThat(second.get(0)).containsExactly(first.get(0));
      }
      clear();
    }
  }

  private void clear() {
    try (Stream<Path> files = Files.list(dir)) {
      for (Path f : files.toList()) {
        Files.delete(f);
      }
    } catch (IOException e) {
      throw new AssertionError(e);
    }
  }
}
