package io.kvslim.kv.tier;

import java.lang.foreign.MemorySegment;
import java.nio.BufferUnderflowException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.zip.CRC32C;

/**
 * One stored prefix block: the key and value bytes of one block of tokens in every layer and KV
 * head, as the store holds them (compressed formats stay compressed), with what it belongs to.
 *
 * <p>Layout (little-endian): the magic {@code KVSLIMKB}, version 1, the owner (model identity and
 * KV spec, length-prefixed UTF-8), the 32-byte hash chain value of the block, its first position,
 * tokens per block, layers and KV heads; then per layer and head the length-prefixed key bytes and
 * value bytes; last a CRC32C of everything before it. {@link #decode} checks all of it: a flipped
 * byte, a block of another model or spec, or one of another shape is rejected, never used.
 */
public final class TierBlock {
  private static final byte[] MAGIC = "KVSLIMKB".getBytes(StandardCharsets.US_ASCII);
  private static final int VERSION = 1;

  /** Why a stored block was not used. */
  public static final class Rejected extends Exception {
    Rejected(String message) {
      super(message, null, false, false);
    }
  }

  /** The parts of a decoded block: {@code keys[layer][head]}, {@code values[layer][head]}. */
  public record Parts(MemorySegment[][] keys, MemorySegment[][] values) {}

  private TierBlock() {}

  /** The bytes of a block whose parts are {@code keys[l][g]}, {@code values[l][g]}. */
  public static byte[] encode(
      String owner,
      byte[] chain,
      int firstPosition,
      int blockTokens,
      MemorySegment[][] keys,
      MemorySegment[][] values) {
    byte[] ownerBytes = owner.getBytes(StandardCharsets.UTF_8);
    int layers = keys.length;
    int heads = keys[0].length;
    long size = MAGIC.length + 4 + 4 + ownerBytes.length + chain.length + 16 + 4;
    for (int l = 0; l < layers; l++) {
      for (int g = 0; g < heads; g++) {
        size += 8 + keys[l][g].byteSize() + values[l][g].byteSize();
      }
    }
    ByteBuffer b = ByteBuffer.allocate(Math.toIntExact(size)).order(ByteOrder.LITTLE_ENDIAN);
    b.put(MAGIC).putInt(VERSION).putInt(ownerBytes.length).put(ownerBytes).put(chain);
    b.putInt(firstPosition).putInt(blockTokens).putInt(layers).putInt(heads);
    for (int l = 0; l < layers; l++) {
      for (int g = 0; g < heads; g++) {
        put(b, keys[l][g]);
        put(b, values[l][g]);
      }
    }
    CRC32C crc = new CRC32C();
    crc.update(b.array(), 0, b.position());
    b.putInt((int) crc.getValue());
    return b.array();
  }

  private static void put(ByteBuffer b, MemorySegment s) {
    b.putInt(Math.toIntExact(s.byteSize()));
    int at = b.position();
    MemorySegment.copy(s, 0, MemorySegment.ofArray(b.array()), at, s.byteSize());
    b.position(at + (int) s.byteSize());
  }

  /**
   * The parts of {@code data} if it is the block expected: intact (CRC32C), of {@code owner}, at
   * {@code chain} and {@code firstPosition}, of this shape, and with exactly {@code keyBytes[l]}
   * and {@code valueBytes[l]} bytes per head of layer {@code l}.
   *
   * @throws Rejected naming the first check that failed
   */
  public static Parts decode(
      byte[] data,
      String owner,
      byte[] chain,
      int firstPosition,
      int blockTokens,
      int kvHeads,
      long[] keyBytes,
      long[] valueBytes)
      throws Rejected {
    if (data.length < MAGIC.length + 12) {
      throw new Rejected("truncated block (" + data.length + " bytes)");
    }
    CRC32C crc = new CRC32C();
    crc.update(data, 0, data.length - 4);
    ByteBuffer b = ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN);
    if (b.getInt(data.length - 4) != (int) crc.getValue()) {
      throw new Rejected("checksum mismatch");
    }
    try {
      byte[] magic = new byte[MAGIC.length];
      b.get(magic);
      if (!Arrays.equals(magic, MAGIC) || b.getInt() != VERSION) {
        throw new Rejected("not a kvslim block of version " + VERSION);
      }
      int ownerLength = b.getInt();
      if (ownerLength < 0 || ownerLength > b.remaining()) {
        throw new Rejected("malformed owner");
      }
      byte[] ownerBytes = new byte[ownerLength];
      b.get(ownerBytes);
      if (!new String(ownerBytes, StandardCharsets.UTF_8).equals(owner)) {
        throw new Rejected("a block of another model or KV spec");
      }
      byte[] storedChain = new byte[chain.length];
      b.get(storedChain);
      if (!Arrays.equals(storedChain, chain)) {
        throw new Rejected("a block of other tokens");
      }
      int first = b.getInt();
      int tokens = b.getInt();
      int layers = b.getInt();
      int heads = b.getInt();
      if (first != firstPosition
          || tokens != blockTokens
          || layers != keyBytes.length
          || heads != kvHeads) {
        throw new Rejected("a block of another shape");
      }
      MemorySegment all = MemorySegment.ofArray(data);
      MemorySegment[][] keys = new MemorySegment[layers][heads];
      MemorySegment[][] values = new MemorySegment[layers][heads];
      for (int l = 0; l < layers; l++) {
        for (int g = 0; g < heads; g++) {
          keys[l][g] = slice(b, all, keyBytes[l]);
          values[l][g] = slice(b, all, valueBytes[l]);
        }
      }
      if (b.remaining() != 4) {
        throw new Rejected("trailing bytes");
      }
      return new Parts(keys, values);
    } catch (BufferUnderflowException | IndexOutOfBoundsException e) {
      throw new Rejected("truncated block");
    }
  }

  private static MemorySegment slice(ByteBuffer b, MemorySegment all, long expected)
      throws Rejected {
    int n = b.getInt();
    if (n != expected || n > b.remaining() - 4) {
      throw new Rejected("a part of " + n + " bytes where the format holds " + expected);
    }
    MemorySegment s = all.asSlice(b.position(), n);
    b.position(b.position() + n);
    return s;
  }
}
