package io.kvslim.kv.store;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.kv.format.KvFormats;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class HeadStoreSpillTest {
  static LayerStore layer(BlockPool pool, String format, int n) {
    int dim = 32;
    LayerStore store =
        new LayerStore(
            pool, 1, dim, KvCacheFormat.of(KvFormats.byName(format), KvFormats.byName(format)));
    SplittableRandom r = new SplittableRandom(3);
    float[] k = new float[n * dim];
    float[] v = new float[n * dim];
    for (int i = 0; i < k.length; i++) {
      k[i] = (float) r.nextGaussian();
      v[i] = (float) r.nextGaussian();
    }
    int[] pos = new int[n];
    for (int i = 0; i < n; i++) {
      pos[i] = i;
    }
    store.append(n, pos, k, v);
    store.flushResidual();
    return store;
  }

  @Test
  void spillFreesThePoolFetchRestoresTheExactBytesAndReleaseBalances() {
    for (String format : new String[] {"f32", "q4_0", "f16"}) {
      BlockPool pool = new BlockPool();
      LayerStore store = layer(pool, format, 100); // 3 full blocks of 32 and a tail of 4
      HeadStore h = store.head(0);
      float[] before = new float[100 * 32];
      h.readKeys(before);
      float[] valuesBefore = new float[100 * 32];
      h.readValues(valuesBefore);
      long held = h.bytes();
      assertThat(pool.usedBytes()).isEqualTo(held);
      assertThat(h.spillable(3)).as("the tail is not settled").isFalse();
      try (SpillFile file = new SpillFile(null)) {
        long freed = h.spill(1, file) + h.spill(2, file);
        assertThat(h.spill(2, file)).as("spilling twice frees nothing").isZero();
        assertThat(freed).isPositive();
        assertThat(h.bytes()).isEqualTo(held - freed);
        assertThat(h.coldBytes()).isEqualTo(freed);
        assertThat(pool.usedBytes()).isEqualTo(held - freed);
        assertThatThrownBy(() -> h.blocks().get(1).keys())
            .isInstanceOf(IllegalStateException.class);
        assertThat(h.fetch(1, file)).isEqualTo(freed / 2);
        assertThat(h.fetch(2, file) + h.fetch(0, file)).isEqualTo(freed / 2);
        assertThat(h.coldBytes()).isZero();
        assertThat(h.bytes()).isEqualTo(held);
        float[] after = new float[100 * 32];
        h.readKeys(after);
        assertThat(after).isEqualTo(before);
        h.readValues(after);
        assertThat(after).isEqualTo(valuesBefore);
        // the bytes are in the file: dropping the RAM copy again writes nothing more
        long written = file.bytesWritten();
        h.spill(1, file);
        assertThat(file.bytesWritten()).isEqualTo(written);
        store.release();
        assertThat(pool.usedBytes()).isZero();
      }
    }
  }

  @Test
  void aFlippedByteIsDetectedAndTheBlockStaysCold() throws IOException {
    BlockPool pool = new BlockPool();
    LayerStore store = layer(pool, "f32", 64);
    HeadStore h = store.head(0);
    SpillFile file = new SpillFile(null);
    Path path = file.path();
    h.spill(0, file);
    h.spill(1, file);
    long used = pool.usedBytes();
    try (FileChannel ch = FileChannel.open(path, StandardOpenOption.WRITE)) {
      ch.write(ByteBuffer.wrap(new byte[] {42, 43}), 40); // inside block 0's keys
    }
    assertThatThrownBy(() -> h.fetch(0, file))
        .isInstanceOf(ColdStore.Corrupt.class)
        .hasMessageContaining("checksum");
    assertThat(h.blocks().get(0).cold()).isTrue();
    assertThat(pool.usedBytes()).isEqualTo(used);
    assertThat(h.fetch(1, file)).as("the other block is intact").isPositive();
    file.close();
    assertThat(path).doesNotExist();
    assertThatThrownBy(() -> h.fetch(0, file)).isInstanceOf(IllegalStateException.class);
  }
}
