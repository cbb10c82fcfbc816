package io.kvslim.gguf;

import java.util.Arrays;

/**
 * One metadata value. Scalars are boxed ({@link Long} for all integer types, {@link Double} for
 * floats, {@link Boolean}, {@link String}); arrays keep their element type and are held as
 * primitive arrays ({@code long[]}, {@code double[]}, {@code boolean[]}, {@code String[]}) or, for
 * nested arrays, {@code GgufValue[]}.
 */
public record GgufValue(GgufValueType type, GgufValueType elementType, Object value) {

  public static GgufValue scalar(GgufValueType type, Object value) {
    return new GgufValue(type, null, value);
  }

  public static GgufValue array(GgufValueType elementType, Object values) {
    return new GgufValue(GgufValueType.ARRAY, elementType, values);
  }

  public boolean isArray() {
    return type == GgufValueType.ARRAY;
  }

  /** Number of elements of an array value. */
  public int length() {
    return switch (value) {
      case long[] a -> a.length;
      case double[] a -> a.length;
      case boolean[] a -> a.length;
      case String[] a -> a.length;
      case GgufValue[] a -> a.length;
      default -> throw new IllegalStateException("not an array: " + type);
    };
  }

  @Override
  public String toString() {
    return switch (value) {
      case long[] a -> abbreviate(Arrays.toString(a), a.length);
      case double[] a -> abbreviate(Arrays.toString(a), a.length);
      case boolean[] a -> abbreviate(Arrays.toString(a), a.length);
      case String[] a -> abbreviate(Arrays.toString(a), a.length);
      case GgufValue[] a -> abbreviate(Arrays.toString(a), a.length);
      default -> String.valueOf(value);
    };
  }

  private static String abbreviate(String s, int n) {
    return s.length() <= 120 ? s : s.substring(0, 117) + "... (" + n + " items)";
  }
}
