package io.kvslim.kv.attention;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.kv.format.F16Format;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import org.junit.jupiter.api.Test;

class VectorKernelsTest {

  /** Every fp16 bit pattern, from a heap block (vector path) and a native one (scalar path). */
  @Test
  void halvesWidenEveryPatternExactlyAsFloat16ToFloat() {
    int n = 1 << 16;
    byte[] bytes = new byte[2 * n + 6];
    MemorySegment heap = MemorySegment.ofArray(bytes);
    for (int i = 0; i < n; i++) {
      heap.set(F16Format.SHORT_LE, 2L * i, (short) i);
    }
    float[] out = new float[n + 3];
    VectorKernels.halves(heap, 0, n, out, 3);
    for (int i = 0; i < n; i++) {
      int want = Float.floatToRawIntBits(Float.float16ToFloat((short) i));
      assertThat(Float.floatToRawIntBits(out[3 + i])).as("half 0x%04x", i).isEqualTo(want);
    }
    // odd offsets and lengths that leave a scalar tail
    for (int offset : new int[] {2, 6}) {
      float[] part = new float[37];
      VectorKernels.halves(heap, offset, 37, part, 0);
      for (int i = 0; i < 37; i++) {
        assertThat(part[i]).isEqualTo(Float.float16ToFloat((short) (offset / 2 + i)));
      }
    }
    try (Arena arena = Arena.ofConfined()) {
      MemorySegment nat = arena.allocate(2L * n);
      nat.copyFrom(heap.asSlice(0, 2L * n));
      float[] fromNative = new float[n];
      VectorKernels.halves(nat, 0, n, fromNative, 0);
      for (int i = 0; i < n; i++) {
        assertThat(Float.floatToRawIntBits(fromNative[i]))
            .isEqualTo(Float.floatToRawIntBits(out[3 + i]));
      }
    }
  }

  /** Every pattern again in a scrambled order, so infinities and NaNs share vectors with others. */
  @Test
  void halvesWidenMixedVectorsExactly() {
    int n = 1 << 16;
    byte[] bytes = new byte[2 * n];
    MemorySegment heap = MemorySegment.ofArray(bytes);
    for (int i = 0; i < n; i++) {
      heap.set(F16Format.SHORT_LE, 2L * i, (short) (i * 4099)); // odd factor: a permutation
    }
    float[] out = new float[n];
    VectorKernels.halves(heap, 0, n, out, 0);
    for (int i = 0; i < n; i++) {
      short h = (short) (i * 4099);
      assertThat(Float.floatToRawIntBits(out[i]))
          .as("half 0x%04x", h & 0xffff)
          .isEqualTo(Float.floatToRawIntBits(Float.float16ToFloat(h)));
    }
  }

  /** One pattern among zeros, in a full vector or in the scalar tail. */
  @Test
  void anyInfinityOrNaNFindsExactlyTheExponent31Patterns() {
    int halves = 75; // two or more vectors of halves and a tail on any vector width
    byte[] bytes = new byte[2 * halves + 4];
    MemorySegment seg = MemorySegment.ofArray(bytes);
    for (int at : new int[] {0, 17, halves - 1}) {
      for (int h = 0; h < 1 << 16; h++) {
        seg.set(F16Format.SHORT_LE, 4 + 2L * at, (short) h);
        boolean special = (h & 0x7c00) == 0x7c00;
        assertThat(VectorKernels.anyInfinityOrNaN(bytes, 4, 2 * halves))
            .as("half 0x%04x at %d", h, at)
            .isEqualTo(special);
      }
      seg.set(F16Format.SHORT_LE, 4 + 2L * at, (short) 0);
    }
  }

  /** Pairs (first, second): every fp16 pattern in both places. */
  @Test
  void halfPairsWidenEveryPatternExactly() {
    int n = 1 << 16;
    byte[] bytes = new byte[4 * n];
    MemorySegment seg = MemorySegment.ofArray(bytes);
    for (int i = 0; i < n; i++) {
      seg.set(F16Format.SHORT_LE, 4L * i, (short) i);
      seg.set(F16Format.SHORT_LE, 4L * i + 2, (short) (n - 1 - i));
    }
    float[] firsts = new float[n + 2];
    float[] seconds = new float[n + 5];
    VectorKernels.halfPairs(bytes, 0, n, firsts, 2, seconds, 5);
    check(n, firsts, seconds);
    // one vector of pairs a call: runs without infinities or NaNs take the finite-only path
    int lanes = VectorKernels.FLOATS.length();
    java.util.Arrays.fill(firsts, 0f);
    java.util.Arrays.fill(seconds, 0f);
    for (int j = 0; j < n; j += lanes) {
      VectorKernels.halfPairs(bytes, 4 * j, lanes, firsts, 2 + j, seconds, 5 + j);
    }
    check(n, firsts, seconds);
  }

  private static void check(int n, float[] firsts, float[] seconds) {
    for (int i = 0; i < n; i++) {
      assertThat(Float.floatToRawIntBits(firsts[2 + i]))
          .as("first 0x%04x", i)
          .isEqualTo(Float.floatToRawIntBits(Float.float16ToFloat((short) i)));
      assertThat(Float.floatToRawIntBits(seconds[5 + i]))
          .as("second 0x%04x", n - 1 - i)
          .isEqualTo(Float.floatToRawIntBits(Float.float16ToFloat((short) (n - 1 - i))));
    }
  }
}
