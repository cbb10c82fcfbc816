package io.kvslim.kv.store;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.StandardOpenOption;
import java.util.BitSet;
import org.junit.jupiter.api.Test;

/**
 * Sub-block fetch of spilled blocks in per-token formats ({@link SpilledRows}): only the 8-slot
 * sub-blocks holding a selected token are read and checked, a flipped byte in one of them is
 * detected, one in a sub-block that is not read is never looked at.
 */
class SubBlockFetchTest {
  static final int DIM = 32;

  @Test
  void onlyTheSelectedSubBlocksAreReadAndTheyHoldTheExactRows() {
    for (String format : new String[] {"f32", "f16", "bf16", "q8_0", "q4_0"}) {
      BlockPool pool = new BlockPool();
      LayerStore store = HeadStoreSpillTest.layer(pool, format, 100); // blocks of 32
      HeadStore h = store.head(0);
      float[] keys = new float[100 * DIM];
      float[] values = new float[100 * DIM];
      h.readKeys(keys);
      h.readValues(values);
      long held = pool.usedBytes();
      try (SpillFile file = new SpillFile(null)) {
        long freed = h.spill(1, file); // tokens 32..63
        BitSet selected = new BitSet();
        selected.set(35); // sub-block 0
        selected.set(60); // sub-block 3
        selected.set(70); // another block
        long read = h.fetch(1, file, selected, 32);
        assertThat(read).as(format).isEqualTo(freed / 2); // 2 of 4 sub-blocks
        assertThat(h.blocks().get(1).partial()).isTrue();
        assertThat(pool.usedBytes()).as("the pool holds the whole block").isEqualTo(held);
        float[] row = new float[DIM];
        for (int t : new int[] {32, 35, 39, 56, 60, 63}) {
          h.readKey(t, row);
          assertThat(row).isEqualTo(java.util.Arrays.copyOfRange(keys, t * DIM, t * DIM + DIM));
          h.readValue(t, row);
          assertThat(row).isEqualTo(java.util.Arrays.copyOfRange(values, t * DIM, t * DIM + DIM));
        }
        assertThatThrownBy(() -> h.readKey(45, row))
            .as("a row not fetched is never read as if it were")
            .isInstanceOf(IllegalStateException.class);
        selected.set(41);
        assertThat(h.fetch(1, file, selected, 32)).as("one more sub-block").isEqualTo(freed / 4);
        assertThat(h.fetch(1, file)).as("the last one").isEqualTo(freed / 4);
        assertThat(h.blocks().get(1).partial()).isFalse();
        float[] after = new float[100 * DIM];
        h.readKeys(after);
        assertThat(after).isEqualTo(keys);
        h.readValues(after);
        assertThat(after).isEqualTo(values);
        // spilled again: nothing is written, a whole fetch reads the block at once
        long written = file.bytesWritten();
        h.spill(1, file);
        assertThat(file.bytesWritten()).isEqualTo(written);
        assertThat(h.fetch(1, file, null, 32)).isEqualTo(freed);
      }
      store.release();
      assertThat(pool.usedBytes()).isZero();
    }
  }

  @Test
  void aFlippedByteInAFetchedSubBlockIsDetectedOneNotFetchedIsNotRead() throws IOException {
    BlockPool pool = new BlockPool();
    LayerStore store = HeadStoreSpillTest.layer(pool, "f16", 64);
    HeadStore h = store.head(0);
    SpillFile file = new SpillFile(null);
    long freed = h.spill(0, file);
    long keyRows = 8L * DIM * 2; // f16 key bytes of one sub-block
    long keyBytes = 4 * keyRows;
    long used = pool.usedBytes();
    try (FileChannel ch = FileChannel.open(file.path(), StandardOpenOption.WRITE)) {
      ch.write(ByteBuffer.wrap(new byte[] {42}), keyRows + 5); // sub-block 1's keys
      ch.write(ByteBuffer.wrap(new byte[] {43}), keyBytes + 3 * keyRows + 7); // 3's values
    }
    BitSet s = new BitSet();
    s.set(9); // sub-block 1
    assertThatThrownBy(() -> h.fetch(0, file, s, 0))
        .isInstanceOf(ColdStore.Corrupt.class)
        .hasMessageContaining("checksum")
        .hasMessageNotContaining("\n");
    assertThat(h.blocks().get(0).cold()).as("the block stays cold").isTrue();
    assertThat(pool.usedBytes()).as("the pool is balanced").isEqualTo(used);
    BitSet s3 = new BitSet();
    s3.set(30); // sub-block 3: the flipped value byte
    assertThatThrownBy(() -> h.fetch(0, file, s3, 0)).isInstanceOf(ColdStore.Corrupt.class);
    assertThat(pool.usedBytes()).isEqualTo(used);
    BitSet ok = new BitSet();
    ok.set(0);
    ok.set(17); // sub-blocks 0 and 2 are intact: read and taken, the flipped bytes are not read
    assertThat(h.fetch(0, file, ok, 0)).isEqualTo(freed / 2);
    assertThat(h.blocks().get(0).partial()).isTrue();
    assertThat(pool.usedBytes()).isEqualTo(used + freed);
    // completing the block reads the corrupt sub-blocks: detected, the fetched rows kept
    assertThatThrownBy(() -> h.fetch(0, file)).isInstanceOf(ColdStore.Corrupt.class);
    assertThat(h.blocks().get(0).partial()).isTrue();
    float[] row = new float[DIM];
    h.readKey(17, row);
    assertThatThrownBy(() -> h.readKey(9, row)).isInstanceOf(IllegalStateException.class);
    h.spill(0, file);
    assertThat(pool.usedBytes()).isEqualTo(used);
    file.close();
    store.release();
    assertThat(pool.usedBytes()).isZero();
  }
}
