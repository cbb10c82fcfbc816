package io.kvslim.gguf;

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
    if (!isArray()) {
      return type == GgufValueType.UINT64 && value instanceof Long l
          ? Long.toUnsignedString(l)
          : String.valueOf(value);
    }
    // Long arrays (vocabularies) are abbreviated without formatting every element.
    int n = length();
    StringBuilder sb = new StringBuilder("[");
    for (int i = 0; i < n; i++) {
      if (i > 0) {
        sb.append(", ");
      }
      if (sb.length() > 117) {
        return sb.append("... (").append(n).append(" items)").toString();
      }
      Object e = element(i);
      sb.append(
          elementType == GgufValueType.UINT64 && e instanceof Long l
              ? Long.toUnsignedString(l)
              : e);
    }
    return sb.append(']').toString();
  }

  /** Element {@code i} of an array value, boxed ({@link Long}, {@link Double}, ...). */
  public Object element(int i) {
    return switch (value) {
      case long[] a -> a[i];
      case double[] a -> a[i];
      case boolean[] a -> a[i];
      case String[] a -> a[i];
      case GgufValue[] a -> a[i];
      default -> throw new IllegalStateException("not an array: " + type);
    };
  }
}
