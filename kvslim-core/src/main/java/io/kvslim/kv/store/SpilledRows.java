package io.kvslim.kv.store;

import io.kvslim.kv.format.KvFormat;
import io.kvslim.kv.format.RowFormat;
import java.lang.foreign.MemorySegment;
import java.util.BitSet;
import java.util.zip.CRC32C;

/**
 * The sub-blocks of a spilled block whose key and value formats are per-token rows ({@link
 * RowFormat}: F32, F16, BF16, the llama.cpp blocks), so that a decode step fetches only the rows of
 * the tokens it selected: slots {@code [8j, 8j + 8)} are sub-block {@code j}, its key rows then its
 * value rows carry a CRC32C of their own, kept in RAM with the block's {@link ColdStore.Slot}, and
 * a store that reads byte ranges ({@link ColdStore#readsParts}) copies only the sub-blocks holding
 * a selected token. Each sub-block is checked on the copy, so a flipped byte in one that is read is
 * detected; one that is not read is never looked at. Token-group formats (KIVI keys: scales per
 * channel over the whole block) have none and are fetched whole.
 */
final class SpilledRows {
  /** Slots per sub-block. */
  static final int SLOTS = 8;

  private final long keyRows; // key bytes of one sub-block
  private final long valueRows; // value bytes of one sub-block
  private final int[] crcs;

  private SpilledRows(long keyRows, long valueRows, int[] crcs) {
    this.keyRows = keyRows;
    this.valueRows = valueRows;
    this.crcs = crcs;
  }

  /**
   * The sub-block checksums of a block of {@code capacity} slots holding {@code keys} and {@code
   * values} in these formats, or null when its rows cannot be fetched apart (a token-group format,
   * or fewer than two sub-blocks).
   */
  static SpilledRows of(
      KvFormat keyFormat,
      KvFormat valueFormat,
      int capacity,
      int headDim,
      MemorySegment keys,
      MemorySegment values) {
    if (!(keyFormat instanceof RowFormat kf)
        || !(valueFormat instanceof RowFormat vf)
        || capacity % SLOTS != 0
        || capacity / SLOTS < 2
        || capacity / SLOTS > Long.SIZE) {
      return null;
    }
    long kr = (long) SLOTS * kf.rowBytes(headDim);
    long vr = (long) SLOTS * vf.rowBytes(headDim);
    int n = capacity / SLOTS;
    if (keys.byteSize() != n * kr || values.byteSize() != n * vr) {
      return null; // not laid out slot after slot
    }
    int[] crcs = new int[n];
    for (int j = 0; j < n; j++) {
      crcs[j] = crc(keys, values, j, kr, vr);
    }
    return new SpilledRows(kr, vr, crcs);
  }

  private static int crc(MemorySegment keys, MemorySegment values, int j, long kr, long vr) {
    CRC32C crc = new CRC32C();
    crc.update(keys.asSlice(j * kr, kr).asByteBuffer());
    crc.update(values.asSlice(j * vr, vr).asByteBuffer());
    return (int) crc.getValue();
  }

  /** Every sub-block, as a mask. */
  long all() {
    return crcs.length == Long.SIZE ? -1L : (1L << crcs.length) - 1;
  }

  /**
   * The sub-blocks holding a token set in {@code selected} (every one when null), the block's slot
   * {@code s} being the retained token {@code retained + s} (a block whose slots are all live).
   */
  long holding(BitSet selected, int retained) {
    if (selected == null) {
      return all();
    }
    long mask = 0;
    int end = retained + crcs.length * SLOTS;
    for (int i = selected.nextSetBit(retained); i >= 0 && i < end; i = selected.nextSetBit(i + 1)) {
      int j = (i - retained) / SLOTS;
      mask |= 1L << j;
      i = retained + (j + 1) * SLOTS - 1; // on to the next sub-block
    }
    return mask;
  }

  /** Bytes of keys and values of the sub-blocks in {@code mask}. */
  long bytes(long mask) {
    return Long.bitCount(mask) * (keyRows + valueRows);
  }

  /**
   * The byte ranges of a spilled block ({@code keyBytes} of keys, then the values) that {@link
   * #read} copies for {@code mask}, in its order: {@code from, count} pairs, the key rows then the
   * value rows of each run of adjacent sub-blocks.
   */
  long[] ranges(long mask, long keyBytes) {
    long[] out = new long[4 * Long.bitCount(mask)];
    int n = 0;
    for (long rest = mask; rest != 0; ) {
      int from = Long.numberOfTrailingZeros(rest);
      int to = from;
      while (to < crcs.length && (rest & (1L << to)) != 0) {
        to++;
      }
      rest &= ~((to == Long.SIZE ? -1L : (1L << to) - 1) & (-1L << from));
      out[n++] = from * keyRows;
      out[n++] = (to - from) * keyRows;
      out[n++] = keyBytes + from * valueRows;
      out[n++] = (to - from) * valueRows;
    }
    return java.util.Arrays.copyOf(out, n);
  }

  /**
   * Copies the sub-blocks in {@code mask} of the spilled {@code slot} from {@code file} into the
   * same rows of {@code keys} and {@code values} (of the block's sizes) and checks each against its
   * checksum; returns the bytes read.
   *
   * @throws ColdStore.Corrupt if one does not match (the rows read are then zeroed again)
   */
  long read(
      ColdStore file, ColdStore.Slot slot, long mask, MemorySegment keys, MemorySegment values) {
    long keyBytes = slot.keyBytes();
    for (long rest = mask; rest != 0; ) {
      int from = Long.numberOfTrailingZeros(rest);
      int to = from;
      while (to < crcs.length && (rest & (1L << to)) != 0) {
        to++;
      }
      rest &= ~((to == Long.SIZE ? -1L : (1L << to) - 1) & (-1L << from));
      int n = to - from;
      file.readPart(slot, from * keyRows, keys, from * keyRows, n * keyRows);
      file.readPart(slot, keyBytes + from * valueRows, values, from * valueRows, n * valueRows);
    }
    for (long rest = mask; rest != 0; rest &= rest - 1) {
      int j = Long.numberOfTrailingZeros(rest);
      if (crc(keys, values, j, keyRows, valueRows) != crcs[j]) {
        for (long z = mask; z != 0; z &= z - 1) {
          int k = Long.numberOfTrailingZeros(z);
          keys.asSlice(k * keyRows, keyRows).fill((byte) 0);
          values.asSlice(k * valueRows, valueRows).fill((byte) 0);
        }
        throw new ColdStore.Corrupt(
            "a spilled KV block failed its checksum (slots "
                + j * SLOTS
                + ".."
                + (j * SLOTS + SLOTS - 1)
                + ", "
                + (keyRows + valueRows)
                + " bytes, in "
                + file.where()
                + "): the store was changed; the sequence must be recomputed");
      }
    }
    return bytes(mask);
  }
}
