package io.kvslim.gguf;

/** Checks that a {@link GgufValue} can be written as its declared GGUF type. */
final class GgufValueChecks {
  private GgufValueChecks() {}

  static void checkValue(String key, GgufValue v, int depth) {
    if (key == null || key.isEmpty()) {
      throw new IllegalArgumentException("metadata key must not be empty");
    }
    if (v == null || v.type() == null) {
      throw new IllegalArgumentException("metadata '" + key + "' has no value");
    }
    if (depth > 8) {
      throw new IllegalArgumentException("metadata '" + key + "' nests arrays deeper than 8");
    }
    if (!v.isArray()) {
      checkScalar(key, v.type(), v.value());
      return;
    }
    GgufValueType elem = v.elementType();
    if (elem == null) {
      throw new IllegalArgumentException("array '" + key + "' has no element type");
    }
    switch (v.value()) {
      case long[] a when isInteger(elem) -> {
        for (long x : a) {
          checkScalar(key, elem, x);
        }
      }
      case double[] _ when elem == GgufValueType.FLOAT32 || elem == GgufValueType.FLOAT64 -> {}
      case boolean[] _ when elem == GgufValueType.BOOL -> {}
      case String[] a when elem == GgufValueType.STRING -> {
        for (String s : a) {
          if (s == null) {
            throw new IllegalArgumentException("array '" + key + "' holds a null string");
          }
        }
      }
      case GgufValue[] a when elem == GgufValueType.ARRAY -> {
        for (GgufValue x : a) {
          if (x == null || !x.isArray()) {
            throw new IllegalArgumentException(
                "array '" + key + "' of arrays holds a non-array element");
          }
          checkValue(key, x, depth + 1);
        }
      }
      default ->
          throw new IllegalArgumentException(
              "array '"
                  + key
                  + "' of "
                  + elem
                  + " cannot hold a "
                  + (v.value() == null ? "null" : v.value().getClass().getSimpleName()));
    }
  }

  private static boolean isInteger(GgufValueType t) {
    return switch (t) {
      case UINT8, INT8, UINT16, INT16, UINT32, INT32, UINT64, INT64 -> true;
      default -> false;
    };
  }

  private static void checkScalar(String key, GgufValueType type, Object value) {
    boolean ok =
        switch (type) {
          case UINT8 -> value instanceof Long l && l >= 0 && l <= 0xff;
          case INT8 -> value instanceof Long l && l >= Byte.MIN_VALUE && l <= Byte.MAX_VALUE;
          case UINT16 -> value instanceof Long l && l >= 0 && l <= 0xffff;
          case INT16 -> value instanceof Long l && l >= Short.MIN_VALUE && l <= Short.MAX_VALUE;
          case UINT32 -> value instanceof Long l && l >= 0 && l <= 0xffffffffL;
          case INT32 -> value instanceof Long l && l >= Integer.MIN_VALUE && l <= Integer.MAX_VALUE;
          case UINT64, INT64 -> value instanceof Long;
          case FLOAT32, FLOAT64 -> value instanceof Double;
          case BOOL -> value instanceof Boolean;
          case STRING -> value instanceof String;
          case ARRAY -> false;
        };
    if (!ok) {
      throw new IllegalArgumentException(
          "metadata '" + key + "' of type " + type + " cannot hold the value " + value);
    }
  }
}
