package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.SharedData;
import io.kvslim.SpmEngineTest;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.policy.ColdSpill;
import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.policy.RecallPolicy;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.KvCacheFormat;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Spill-and-recall with a real cold tier ({@code spill=true}): the same logits as the method with
 * everything in RAM, RAM held plus cold bytes equal to the in-RAM cache's bytes, a corrupted spill
 * file detected, the file deleted when the cache closes.
 */
class SpillRecallTest extends SpmEngineTest {

  static KvPolicy policy(String spec) {
    var c = model.config();
    boolean[] layers = new boolean[c.layers()];
    Arrays.fill(layers, true);
    MethodCall call = KvSpec.parse(spec).rules().get(0).calls().get(0);
    return call.method()
        .policy(call, new PolicyContext(layers, c.kvHeads(), c.headDim(), 8.0 * c.headDim()));
  }

  static ManagedKvCache cache(KvPolicy policy) {
    var c = model.config();
    KvCacheFormat[] formats = new KvCacheFormat[c.layers()];
    // blocks of 8 tokens: a top-k of scattered tokens leaves blocks unselected
    Arrays.fill(
        formats,
        new KvCacheFormat(KvFormats.F32, KvFormats.F32, 8, 0, KvFormats.F32, KvFormats.F32));
    return new ManagedKvCache(new BlockPool(), c.kvHeads(), c.headDim(), formats, List.of(policy));
  }

  static ColdSpill spillOf(KvPolicy p) {
    return p instanceof QuestMethod.Policy q ? q.spill() : ((RecallPolicy<?>) p).spill();
  }

  @ParameterizedTest
  @ValueSource(
      strings = {
        "quest:token_budget=64,page_size=16,skip_layers=1",
        "shadowkv:budget=40,outliers=3",
        "pqcache:budget=16,sink=4,bits=4,cache_blocks=2"
      })
  void spilledLogitsAreBitIdenticalAndRamPlusColdIsTheInRamCache(String spec) throws IOException {
    SharedData.require();
    int n = 201;
    int steps = 6;
    int vocab = model.config().vocabSize();
    int[] toks = tokens(n + steps + 123, 11);
    KvPolicy ram = policy(spec);
    KvPolicy cold = policy(spec + ",spill=true");
    KvPolicy cached = policy(spec + ",spill=true,spill_cache=2");
    float[] lr = new float[vocab];
    float[] lc = new float[vocab];
    float[] lk = new float[vocab];
    Path file;
    try (ManagedKvCache r = cache(ram);
        ManagedKvCache c = cache(cold);
        ManagedKvCache k = cache(cached)) {
      engine.prefill(r, toks, 0, n, 0, false, lr);
      engine.prefill(c, toks, 0, n, 0, false, lc);
      engine.prefill(k, toks, 0, n, 0, false, lk);
      assertThat(lc).isEqualTo(lr);
      for (int s = 0; s < steps; s++) {
        engine.decode(r, toks[n + s], n + s, lr);
        engine.decode(c, toks[n + s], n + s, lc);
        engine.decode(k, toks[n + s], n + s, lk);
        assertThat(lc).as("step %d with spill", s).isEqualTo(lr);
        assertThat(lk).as("step %d with spill and an LRU cache", s).isEqualTo(lr);
        assertThat(c.coldBytes()).as("bytes spilled out of RAM").isPositive();
        assertThat(c.bytes()).as("RAM held").isLessThan(r.bytes());
        assertThat(c.bytes() + c.coldBytes()).isEqualTo(r.bytes());
        assertThat(k.bytes() + k.coldBytes()).isEqualTo(r.bytes());
        assertThat(k.bytes()).isGreaterThanOrEqualTo(c.bytes());
      }
      // a second prompt in the same caches (a chat turn), then more decode steps
      int more = 120; // more than twice the blocks: Quest re-reads every key
      int at = n + steps;
      engine.prefill(r, toks, at, at + more, at, false, lr);
      engine.prefill(c, toks, at, at + more, at, false, lc);
      engine.prefill(k, toks, at, at + more, at, false, lk);
      assertThat(lc).isEqualTo(lr);
      assertThat(lk).isEqualTo(lr);
      for (int s = 0; s < 3; s++) {
        int p = at + more + s;
        engine.decode(r, toks[p], p, lr);
        engine.decode(c, toks[p], p, lc);
        engine.decode(k, toks[p], p, lk);
        assertThat(lc).as("turn 2, step %d with spill", s).isEqualTo(lr);
        assertThat(lk).as("turn 2, step %d with spill and an LRU cache", s).isEqualTo(lr);
        assertThat(c.bytes() + c.coldBytes()).isEqualTo(r.bytes());
      }
      assertThat(r.coldBytes()).isZero();
      assertThat(c.indexBytes()).as("bounds, landmarks or codes").isPositive();
      assertThat(c.indexBytes()).isEqualTo(r.indexBytes());
      assertThat(r.bytesFetched()).isNegative();
      ColdSpill spill = spillOf(cold);
      file = spill.spillFile().path();
      assertThat(file).exists();
      // every step fetches the selected blocks, never the whole cold part
      assertThat(c.bytesFetched()).isPositive();
      assertThat(spill.bytesFetchedPerStep()).isLessThan(c.coldBytes());
      assertThat(k.bytesFetched()).as("the LRU cache serves some").isLessThan(c.bytesFetched());
      assertThat(spill.bytesSpilled()).isGreaterThanOrEqualTo(c.coldBytes());
    }
    assertThat(file).as("the spill file is deleted with the cache").doesNotExist();
    assertThat(Files.exists(spillOf(cached).spillFile().path())).isFalse();
  }

  @org.junit.jupiter.api.Test
  void badSpillKnobsAreOneSentence() {
    for (String bad :
        List.of(
            "quest:spill=maybe", "shadowkv:spill_cache=-1", "pqcache:spill=true,spill_cache=x")) {
      assertThatThrownBy(() -> KvSpec.parse(bad))
          .isInstanceOf(KvSpecException.class)
          .hasMessageContaining("spill");
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"quest:token_budget=64,page_size=16,skip_layers=1,spill=true"})
  void aCorruptedSpillFileIsDetectedNotAttended(String spec) throws IOException {
    SharedData.require();
    int n = 201;
    int vocab = model.config().vocabSize();
    int[] toks = tokens(n + 8, 12);
    KvPolicy p = policy(spec);
    float[] logits = new float[vocab];
    Path file;
    try (ManagedKvCache c = cache(p)) {
      engine.prefill(c, toks, 0, n, 0, false, logits);
      engine.decode(c, toks[n], n, logits);
      file = spillOf(p).spillFile().path();
      long written = spillOf(p).bytesSpilled();
      try (FileChannel ch =
          FileChannel.open(file, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
        // one flipped byte in every 64 of what was written: each spilled block is hit
        for (long at = 7; at < written; at += 64) {
          ByteBuffer b = ByteBuffer.allocate(1);
          ch.read(b, at);
          b.flip();
          byte flipped = (byte) (b.get(0) ^ 0x20);
          ch.write(ByteBuffer.wrap(new byte[] {flipped}), at);
        }
      }
      long used = c.bytes();
      assertThatThrownBy(() -> engine.decode(c, toks[n + 1], n + 1, logits))
          .isInstanceOf(io.kvslim.kv.store.ColdStore.Corrupt.class)
          .hasMessageContaining("checksum");
      assertThat(c.bytes()).as("no corrupt block was taken into RAM").isLessThanOrEqualTo(used);
    }
    assertThat(file).doesNotExist();
  }
}
