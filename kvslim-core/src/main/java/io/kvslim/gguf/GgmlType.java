package io.kvslim.gguf;

import io.kvslim.ggml.Q4_0Codec;
import io.kvslim.ggml.Q4_1Codec;
import io.kvslim.ggml.Q4_KCodec;
import io.kvslim.ggml.Q5_0Codec;
import io.kvslim.ggml.Q5_1Codec;
import io.kvslim.ggml.Q5_KCodec;
import io.kvslim.ggml.Q6_KCodec;
import io.kvslim.ggml.Q8_0Codec;
import io.kvslim.ggml.Q8_1Codec;
import io.kvslim.ggml.Q8_KCodec;

/**
 * Tensor element types of GGML/GGUF, with llama.cpp's numeric ids and block layouts: {@code
 * blockSize} elements are stored in {@code typeSize} bytes (for the block types kvslim reads or
 * writes, the sizes of their codecs in {@code io.kvslim.ggml}).
 */
public enum GgmlType {
  F32(0, 1, 4),
  F16(1, 1, 2),
  Q4_0(2, Q4_0Codec.BLOCK, Q4_0Codec.BYTES),
  Q4_1(3, Q4_1Codec.BLOCK, Q4_1Codec.BYTES),
  Q5_0(6, Q5_0Codec.BLOCK, Q5_0Codec.BYTES),
  Q5_1(7, Q5_1Codec.BLOCK, Q5_1Codec.BYTES),
  Q8_0(8, Q8_0Codec.BLOCK, Q8_0Codec.BYTES),
  Q8_1(9, Q8_1Codec.BLOCK, Q8_1Codec.BYTES),
  Q2_K(10, 256, 84),
  Q3_K(11, 256, 110),
  Q4_K(12, Q4_KCodec.BLOCK, Q4_KCodec.BYTES),
  Q5_K(13, Q5_KCodec.BLOCK, Q5_KCodec.BYTES),
  Q6_K(14, Q6_KCodec.BLOCK, Q6_KCodec.BYTES),
  Q8_K(15, Q8_KCodec.BLOCK, Q8_KCodec.BYTES),
  I8(24, 1, 1),
  I16(25, 1, 2),
  I32(26, 1, 4),
  I64(27, 1, 8),
  F64(28, 1, 8),
  BF16(30, 1, 2);

  private final int id;
  private final int blockSize;
  private final int typeSize;

  GgmlType(int id, int blockSize, int typeSize) {
    this.id = id;
    this.blockSize = blockSize;
    this.typeSize = typeSize;
  }

  /** llama.cpp's numeric id of this type (the value stored in GGUF tensor infos). */
  public int id() {
    return id;
  }

  /** Number of elements in one block. */
  public int blockSize() {
    return blockSize;
  }

  /** Bytes of one block. */
  public int typeSize() {
    return typeSize;
  }

  /** Bytes taken by {@code elements} elements; {@code elements} must be a multiple of the block. */
  public long bytesFor(long elements) {
    if (elements % blockSize != 0) {
      throw new IllegalArgumentException(
          this + " needs a multiple of " + blockSize + " elements, got " + elements);
    }
    return Math.multiplyExact(elements / blockSize, (long) typeSize);
  }

  private static final GgmlType[] BY_ID = new GgmlType[64];

  static {
    for (GgmlType t : values()) {
      BY_ID[t.id] = t;
    }
  }

  /** The type with this id, or {@code null} when kvslim does not know it. */
  public static GgmlType byId(int id) {
    return id >= 0 && id < BY_ID.length ? BY_ID[id] : null;
  }
}
