package io.kvslim.tensor;

import io.kvslim.gguf.GgmlType;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Random;

/** Random weight bytes in every supported type: random quants, finite fp16 scales. */
final class RandomWeights {
  private RandomWeights() {}

  static final GgmlType[] TYPES = {
    GgmlType.F32,
    GgmlType.F16,
    GgmlType.BF16,
    GgmlType.Q8_0,
    GgmlType.Q4_0,
    GgmlType.Q4_1,
    GgmlType.Q5_0,
    GgmlType.Q5_1,
    GgmlType.Q4_K,
    GgmlType.Q5_K,
    GgmlType.Q6_K
  };

  private static final ValueLayout.OfShort SHORT_LE =
      ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
  private static final ValueLayout.OfFloat FLOAT_LE =
      ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

  /** Byte offsets of the fp16 scale/min fields inside one block of {@code type}. */
  static int[] halfFields(GgmlType type) {
    return switch (type) {
      case Q8_0, Q4_0, Q5_0 -> new int[] {0};
      case Q4_1, Q5_1, Q4_K, Q5_K -> new int[] {0, 2};
      case Q6_K -> new int[] {208};
      default -> new int[0];
    };
  }

  /** {@code rows × cols} random weights of {@code type}, off-heap like a mapped GGUF tensor. */
  static WeightMatrix matrix(GgmlType type, int rows, int cols, long seed) {
    return WeightMatrix.of(type, segment(type, rows, cols, seed), rows, cols);
  }

  static MemorySegment segment(GgmlType type, int rows, int cols, long seed) {
    return segment(type, rows, cols, seed, Arena.ofAuto());
  }

  static MemorySegment segment(GgmlType type, int rows, int cols, long seed, Arena arena) {
    Random random = new Random(seed);
    long bytes = type.bytesFor(cols) * rows;
    MemorySegment s = arena.allocate(bytes, 64);
    switch (type) {
      case F32 -> {
        for (long o = 0; o < bytes; o += 4) {
          s.set(FLOAT_LE, o, random.nextFloat() * 2 - 1);
        }
      }
      case F16 -> {
        for (long o = 0; o < bytes; o += 2) {
          s.set(SHORT_LE, o, randomFiniteHalf(random));
        }
      }
      case BF16 -> {
        for (long o = 0; o < bytes; o += 2) {
          float f = (random.nextFloat() * 2 - 1) * (float) Math.pow(2, random.nextInt(40) - 30);
          s.set(SHORT_LE, o, (short) (Float.floatToRawIntBits(f) >>> 16));
        }
      }
      default -> {
        byte[] raw = new byte[1 << 16];
        for (long o = 0; o < bytes; o += raw.length) {
          random.nextBytes(raw);
          MemorySegment.copy(MemorySegment.ofArray(raw), 0, s, o, Math.min(raw.length, bytes - o));
        }
        for (long block = 0; block < bytes; block += type.typeSize()) {
          for (int field : halfFields(type)) {
            float scale = (random.nextFloat() * 2 - 1) * 0.05f;
            s.set(SHORT_LE, block + field, Float.floatToFloat16(scale));
          }
        }
      }
    }
    return s;
  }

  /** Any finite half: all exponents but the all-ones one (so subnormals and zeros appear too). */
  static short randomFiniteHalf(Random random) {
    int bits = random.nextInt(1 << 16);
    if ((bits & 0x7C00) == 0x7C00) {
      bits &= ~0x0400;
    }
    return (short) bits;
  }

  static float[] activations(int length, long seed) {
    Random random = new Random(seed);
    float[] x = new float[length];
    for (int i = 0; i < length; i++) {
      x[i] = random.nextFloat() * 2 - 1;
    }
    return x;
  }

  /** Sum of |w_i x_i| over row {@code row}: the scale of rounding error in its dot product. */
  static double magnitude(WeightMatrix w, int row, float[] x, int xOffset) {
    float[] weights = new float[w.cols()];
    w.dequantizeRow(row, weights, 0);
    double sum = 0;
    for (int i = 0; i < weights.length; i++) {
      sum += Math.abs((double) weights[i] * x[xOffset + i]);
    }
    return sum;
  }

  /** Allowed |difference| between two float dot products of row {@code row} with {@code x}. */
  static double tolerance(WeightMatrix w, int row, float[] x, int xOffset) {
    return 1e-4 * magnitude(w, row, x, xOffset) + 1e-30;
  }
}
