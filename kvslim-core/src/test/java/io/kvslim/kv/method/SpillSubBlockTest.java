package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.SharedData;
import io.kvslim.SpmEngineTest;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.format.KvFormat;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.policy.KvPolicy;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.ColdStorage;
import io.kvslim.kv.store.ColdStore;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.kv.store.SpillFile;
import io.kvslim.kv.store.SpillStats;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Spill-and-recall fetching only the sub-blocks of 8 slots that hold a selected token, in blocks of
 * 32 per-token rows: the same logits as everything in RAM and as fetching whole blocks, strictly
 * fewer bytes read than whole-block fetch, and the fetched-bytes counters equal to the bytes the
 * store really copied.
 */
class SpillSubBlockTest extends SpmEngineTest {

  /** A spill file that counts the bytes read from it; {@code parts} false: blocks read whole. */
  static final class Counting implements ColdStore {
    final SpillFile file = new SpillFile(null);
    final boolean parts;
    long read;
    long partReads;

    Counting(boolean parts) {
      this.parts = parts;
    }

    @Override
    public Slot write(MemorySegment keys, MemorySegment values) {
      return file.write(keys, values);
    }

    @Override
    public void read(Slot s, MemorySegment keys, MemorySegment values) {
      read += s.bytes();
      file.read(s, keys, values);
    }

    @Override
    public boolean readsParts() {
      return parts;
    }

    @Override
    public void readPart(Slot s, long from, MemorySegment dst, long dstOffset, long count) {
      read += count;
      partReads++;
      file.readPart(s, from, dst, dstOffset, count);
    }

    @Override
    public long bytesWritten() {
      return file.bytesWritten();
    }

    @Override
    public String where() {
      return file.where();
    }

    @Override
    public void close() {
      file.close();
    }
  }

  static ColdStorage storage(boolean parts, List<Counting> opened) {
    SpillStats stats = new SpillStats();
    return new ColdStorage() {
      @Override
      public ColdStore open() {
        Counting c = new Counting(parts);
        opened.add(c);
        return c;
      }

      @Override
      public SpillStats stats() {
        return stats;
      }

      @Override
      public String name() {
        return "counting";
      }
    };
  }

  static ManagedKvCache cache(KvPolicy policy, KvFormat format) {
    var c = model.config();
    KvCacheFormat[] formats = new KvCacheFormat[c.layers()];
    Arrays.fill(formats, new KvCacheFormat(format, format, 32, 0, KvFormats.F32, KvFormats.F32));
    return new ManagedKvCache(new BlockPool(), c.kvHeads(), c.headDim(), formats, List.of(policy));
  }

  @ParameterizedTest
  @ValueSource(
      strings = {
        "quest:token_budget=64,page_size=16,skip_layers=1",
        "shadowkv:budget=40,outliers=3",
        "pqcache:budget=16,sink=4,bits=4,cache_blocks=2",
        "pqcache:budget=24,sink=4,bits=4|q8_0",
        "shadowkv:budget=40,outliers=3|f16"
      })
  void subBlockFetchGivesTheSameLogitsAndReadsFewerBytes(String specAndFormat) {
    SharedData.require();
    String[] parts = specAndFormat.split("\\|");
    String spec = parts[0];
    KvFormat format = parts.length > 1 ? KvFormats.byName(parts[1]) : KvFormats.F32;
    int n = 201;
    int steps = 6;
    int vocab = model.config().vocabSize();
    int[] toks = tokens(n + steps, 21);
    KvPolicy ram = SpillRecallTest.policy(spec);
    KvPolicy sub = SpillRecallTest.policy(spec + ",spill=true");
    KvPolicy whole = SpillRecallTest.policy(spec + ",spill=true");
    List<Counting> subStores = new ArrayList<>();
    List<Counting> wholeStores = new ArrayList<>();
    ColdStorage subStorage = storage(true, subStores);
    ColdStorage wholeStorage = storage(false, wholeStores);
    SpillRecallTest.spillOf(sub).use(subStorage);
    SpillRecallTest.spillOf(whole).use(wholeStorage);
    float[] lr = new float[vocab];
    float[] ls = new float[vocab];
    float[] lw = new float[vocab];
    try (ManagedKvCache r = cache(ram, format);
        ManagedKvCache s = cache(sub, format);
        ManagedKvCache w = cache(whole, format)) {
      engine.prefill(r, toks, 0, n, 0, false, lr);
      engine.prefill(s, toks, 0, n, 0, false, ls);
      engine.prefill(w, toks, 0, n, 0, false, lw);
      assertThat(ls).isEqualTo(lr);
      assertThat(lw).isEqualTo(lr);
      for (int t = 0; t < steps; t++) {
        engine.decode(r, toks[n + t], n + t, lr);
        engine.decode(s, toks[n + t], n + t, ls);
        engine.decode(w, toks[n + t], n + t, lw);
        assertThat(ls).as("step %d, sub-block fetch", t).isEqualTo(lr);
        assertThat(lw).as("step %d, whole-block fetch", t).isEqualTo(lr);
        assertThat(s.bytes() + s.coldBytes()).isEqualTo(r.bytes());
      }
      long subRead = subStores.stream().mapToLong(c -> c.read).sum();
      long wholeRead = wholeStores.stream().mapToLong(c -> c.read).sum();
      assertThat(subStores.stream().mapToLong(c -> c.partReads).sum())
          .as("sub-blocks were read")
          .isPositive();
      assertThat(subStorage.stats().bytesFetched.get())
          .as("the counter counts the bytes really read")
          .isEqualTo(subRead);
      assertThat(wholeStorage.stats().bytesFetched.get()).isEqualTo(wholeRead);
      double subPerStep = SpillRecallTest.spillOf(sub).bytesFetchedPerStep();
      double wholePerStep = SpillRecallTest.spillOf(whole).bytesFetchedPerStep();
      assertThat(wholePerStep).isPositive();
      assertThat(subPerStep).as("fetched bytes per decode step").isLessThan(wholePerStep);
    }
  }
}
