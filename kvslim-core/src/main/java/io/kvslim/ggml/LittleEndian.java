package io.kvslim.ggml;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/** The little-endian fields of ggml blocks: unaligned layouts and scalar readers and writers. */
public final class LittleEndian {
  private LittleEndian() {}

  public static final ValueLayout.OfShort SHORT =
      ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
  public static final ValueLayout.OfInt INT =
      ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
  public static final ValueLayout.OfLong LONG =
      ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
  public static final ValueLayout.OfFloat FLOAT =
      ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

  /** The IEEE half at {@code offset}, as a float (exact). */
  public static float half(MemorySegment s, long offset) {
    return Float.float16ToFloat(s.get(SHORT, offset));
  }

  /** Stores {@code value} as an IEEE half, rounded to nearest even (ggml's fp32 → fp16). */
  public static void putHalf(MemorySegment s, long offset, float value) {
    s.set(SHORT, offset, Float.floatToFloat16(value));
  }

  /** The unsigned byte at {@code offset}. */
  public static int u8(MemorySegment s, long offset) {
    return s.get(ValueLayout.JAVA_BYTE, offset) & 0xFF;
  }

  /** The signed byte at {@code offset}. */
  public static int s8(MemorySegment s, long offset) {
    return s.get(ValueLayout.JAVA_BYTE, offset);
  }

  public static void putByte(MemorySegment s, long offset, int value) {
    s.set(ValueLayout.JAVA_BYTE, offset, (byte) value);
  }
}
