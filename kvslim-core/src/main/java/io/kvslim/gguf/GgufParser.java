package io.kvslim.gguf;

import io.kvslim.ggml.LittleEndian;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

/** A bounds-checked little-endian cursor over a GGUF header. */
final class GgufParser {
  private static final ValueLayout.OfInt I32 = LittleEndian.INT;
  private static final ValueLayout.OfLong I64 = LittleEndian.LONG;
  private static final ValueLayout.OfShort I16 = LittleEndian.SHORT;
  private static final int MAX_NESTING = 8;

  /**
   * Longest metadata array accepted. Real vocabularies hold a few hundred thousand entries; the cap
   * keeps a corrupted length from turning a large file into a multi-gigabyte heap array (a UINT8
   * array is held as {@code long[]}, eight times its size on disk).
   */
  static final long MAX_ARRAY_LENGTH = 1L << 26;

  /** Longest metadata string accepted (chat templates are kilobytes). */
  static final long MAX_STRING_BYTES = 1L << 28;

  private final Path path;
  private final MemorySegment s;
  private long pos;
  private final CharsetDecoder utf8 =
      StandardCharsets.UTF_8
          .newDecoder()
          .onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT);

  GgufParser(Path path, MemorySegment s) {
    this.path = path;
    this.s = s;
  }

  long position() {
    return pos;
  }

  GgufFormatException error(String what) {
    return new GgufFormatException(path + ": " + what + " (at byte " + pos + ")");
  }

  private void need(long n, String what) {
    if (n < 0 || pos > s.byteSize() - n) {
      throw error(
          "file ends inside "
              + what
              + " (needs "
              + n
              + " bytes, "
              + Math.max(0, s.byteSize() - pos)
              + " left; the file is truncated)");
    }
  }

  /** Rejects a count that could not possibly fit in what is left of the file. */
  void checkCount(long count, long minBytesEach, String what) {
    long left = s.byteSize() - pos;
    if (count < 0 || (minBytesEach > 0 && count > left / minBytesEach)) {
      throw error(
          "absurd number of "
              + what
              + ": "
              + Long.toUnsignedString(count)
              + " in a file of "
              + s.byteSize()
              + " bytes");
    }
  }

  int u32(String what) {
    need(4, what);
    int v = s.get(I32, pos);
    pos += 4;
    return v;
  }

  long u64(String what) {
    need(8, what);
    long v = s.get(I64, pos);
    pos += 8;
    return v;
  }

  String string(String what) {
    long len = u64("length of " + what);
    if (len > MAX_STRING_BYTES && len <= s.byteSize() - pos) {
      throw error(
          "absurd string length " + len + " of " + what + " (at most " + MAX_STRING_BYTES + ")");
    }
    if (len < 0 || len > s.byteSize() - pos) {
      throw error(
          "string length "
              + Long.toUnsignedString(len)
              + " of "
              + what
              + " runs past the end of"
              + " the file");
    }
    if (len == 0) {
      return "";
    }
    byte[] bytes = s.asSlice(pos, len).toArray(ValueLayout.JAVA_BYTE);
    String str;
    if (isAscii(bytes)) {
      str = new String(bytes, StandardCharsets.US_ASCII);
    } else {
      try {
        str = utf8.reset().decode(ByteBuffer.wrap(bytes)).toString();
      } catch (CharacterCodingException e) {
        throw error(what + " is not valid UTF-8");
      }
    }
    pos += len;
    return str;
  }

  private static boolean isAscii(byte[] bytes) {
    for (byte b : bytes) {
      if (b < 0) {
        return false;
      }
    }
    return true;
  }

  GgufValue value(String key) {
    int typeId = u32("type of '" + key + "'");
    GgufValueType type = GgufValueType.byId(typeId);
    if (type == null) {
      throw error(
          "metadata '" + key + "' has unknown value type " + Integer.toUnsignedString(typeId));
    }
    return value(key, type, 0);
  }

  private GgufValue value(String key, GgufValueType type, int depth) {
    if (type == GgufValueType.ARRAY) {
      if (depth >= MAX_NESTING) {
        throw error("metadata '" + key + "' nests arrays deeper than " + MAX_NESTING);
      }
      int elemId = u32("element type of '" + key + "'");
      GgufValueType elem = GgufValueType.byId(elemId);
      if (elem == null) {
        throw error(
            "array '" + key + "' has unknown element type " + Integer.toUnsignedString(elemId));
      }
      long n = u64("length of '" + key + "'");
      checkCount(n, elem.minBytes(), "elements in array '" + key + "'");
      if (n > MAX_ARRAY_LENGTH) {
        throw error(
            "absurd length " + n + " of array '" + key + "' (at most " + MAX_ARRAY_LENGTH + ")");
      }
      int count = (int) n;
      Object values =
          switch (elem) {
            case STRING -> {
              String[] a = new String[count];
              for (int i = 0; i < count; i++) {
                a[i] = string("element " + i + " of '" + key + "'");
              }
              yield a;
            }
            case ARRAY -> {
              GgufValue[] a = new GgufValue[count];
              for (int i = 0; i < count; i++) {
                a[i] = value(key, GgufValueType.ARRAY, depth + 1);
              }
              yield a;
            }
            case FLOAT32, FLOAT64 -> {
              double[] a = new double[count];
              for (int i = 0; i < count; i++) {
                a[i] = (Double) scalar(key, elem).value();
              }
              yield a;
            }
            case BOOL -> {
              boolean[] a = new boolean[count];
              for (int i = 0; i < count; i++) {
                a[i] = (Boolean) scalar(key, elem).value();
              }
              yield a;
            }
            default -> {
              long[] a = new long[count];
              for (int i = 0; i < count; i++) {
                a[i] = (Long) scalar(key, elem).value();
              }
              yield a;
            }
          };
      return GgufValue.array(elem, values);
    }
    return scalar(key, type);
  }

  private GgufValue scalar(String key, GgufValueType type) {
    String what = "value of '" + key + "'";
    Object v =
        switch (type) {
          case UINT8 -> {
            need(1, what);
            yield (long) (s.get(ValueLayout.JAVA_BYTE, pos++) & 0xff);
          }
          case INT8 -> {
            need(1, what);
            yield (long) s.get(ValueLayout.JAVA_BYTE, pos++);
          }
          case UINT16 -> {
            need(2, what);
            long x = s.get(I16, pos) & 0xffff;
            pos += 2;
            yield x;
          }
          case INT16 -> {
            need(2, what);
            long x = s.get(I16, pos);
            pos += 2;
            yield x;
          }
          case UINT32 -> Integer.toUnsignedLong(u32(what));
          case INT32 -> (long) u32(what);
          case FLOAT32 -> (double) Float.intBitsToFloat(u32(what));
          case BOOL -> {
            need(1, what);
            byte b = s.get(ValueLayout.JAVA_BYTE, pos++);
            if (b != 0 && b != 1) {
              throw error("metadata '" + key + "' is a bool with value " + b);
            }
            yield b == 1;
          }
          case STRING -> string(what);
          case UINT64, INT64 -> u64(what);
          case FLOAT64 -> Double.longBitsToDouble(u64(what));
          case ARRAY -> throw new IllegalStateException("arrays are read by value()");
        };
    return GgufValue.scalar(type, v);
  }

  /**
   * Reads one tensor info. Metadata keys given to {@link #value} and the names in messages are
   * already passed through {@link SafeText#of}; 32-bit fields print unsigned, as the format stores
   * them.
   */
  TensorInfo tensorInfo(long index) {
    String realName = string("name of tensor #" + index);
    String name = SafeText.of(realName);
    int nDims = u32("dimension count of tensor '" + name + "'");
    if (nDims < 1 || nDims > GgufFile.MAX_DIMS) {
      throw error(
          "tensor '"
              + name
              + "' has "
              + Integer.toUnsignedString(nDims)
              + " dimensions (1 to 4 allowed)");
    }
    long[] dims = new long[nDims];
    long elements = 1;
    for (int d = 0; d < nDims; d++) {
      dims[d] = u64("dimension " + d + " of tensor '" + name + "'");
      if (dims[d] <= 0 || dims[d] > (1L << 40)) {
        throw error("tensor '" + name + "' has absurd dimension " + Long.toUnsignedString(dims[d]));
      }
      try {
        elements = Math.multiplyExact(elements, dims[d]);
      } catch (ArithmeticException e) {
        throw error("tensor '" + name + "' has more elements than fit in 64 bits");
      }
    }
    int typeId = u32("type of tensor '" + name + "'");
    GgmlType type = GgmlType.byId(typeId);
    if (type == null) {
      throw error(
          "tensor '" + name + "' has unsupported type id " + Integer.toUnsignedString(typeId));
    }
    if (dims[0] % type.blockSize() != 0) {
      throw error(
          "tensor '"
              + name
              + "' of type "
              + type
              + " has first dimension "
              + dims[0]
              + ", not a multiple of the block size "
              + type.blockSize());
    }
    try {
      type.bytesFor(elements);
    } catch (ArithmeticException e) {
      throw error("tensor '" + name + "' has more bytes than fit in 64 bits");
    }
    long offset = u64("data offset of tensor '" + name + "'");
    if (offset < 0) {
      throw error("tensor '" + name + "' has absurd data offset " + Long.toUnsignedString(offset));
    }
    return new TensorInfo(realName, dims, type, offset);
  }
}
