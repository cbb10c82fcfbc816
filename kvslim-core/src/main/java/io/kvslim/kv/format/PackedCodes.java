package io.kvslim.kv.format;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Codes of 1..8 bits packed as one little-endian bit stream: code {@code j} at bits {@code [j·b,
 * (j+1)·b)} of the run, least significant bit first. That is vLLM's TurboQuant layout for every
 * width it uses (vllm-project/vllm, {@code vllm/v1/attention/ops/triton_turboquant_store.py},
 * {@code _tq_fused_store_mse}: 4-bit codes two a byte with even {@code j} in the low nibble, 3-bit
 * codes eight per three bytes at shifts {@code 3·(j mod 8)}), and for 2 bits four a byte. A code
 * may straddle two bytes (3 bits).
 */
final class PackedCodes {
  private PackedCodes() {}

  private static final ThreadLocal<int[]> SCRATCH = ThreadLocal.withInitial(() -> new int[0]);

  /** A per-thread array of at least {@code n} ints for an encoder's codes. */
  static int[] scratch(int n) {
    int[] s = SCRATCH.get();
    if (s.length < n) {
      s = new int[n];
      SCRATCH.set(s);
    }
    return s;
  }

  /** Bytes of {@code count} codes of {@code bits}: ⌈count·bits/8⌉. */
  static int bytes(int count, int bits) {
    return (count * bits + 7) / 8;
  }

  /** Packs {@code codes[0..count)} into the run at {@code base} (whole bytes written). */
  static void pack(int[] codes, int count, int bits, MemorySegment block, long base) {
    int n = bytes(count, bits);
    int acc = 0;
    int have = 0;
    int out = 0;
    for (int j = 0; j < count; j++) {
      acc |= codes[j] << have;
      have += bits;
      while (have >= 8) {
        block.set(ValueLayout.JAVA_BYTE, base + out++, (byte) acc);
        acc >>>= 8;
        have -= 8;
      }
    }
    if (out < n) {
      block.set(ValueLayout.JAVA_BYTE, base + out, (byte) acc);
    }
  }

  /** Unpacks {@code count} codes from the run at {@code base} into {@code codes[0..count)}. */
  static void unpack(MemorySegment block, long base, int count, int bits, int[] codes) {
    byte[] array = io.kvslim.kv.attention.VectorKernels.array(block);
    int mask = (1 << bits) - 1;
    int acc = 0;
    int have = 0;
    long in = base;
    for (int j = 0; j < count; j++) {
      if (have < bits) {
        int b =
            array != null ? array[(int) in] & 0xff : block.get(ValueLayout.JAVA_BYTE, in) & 0xff;
        in++;
        acc |= b << have;
        have += 8;
      }
      codes[j] = acc & mask;
      acc >>>= bits;
      have -= bits;
    }
  }

  /**
   * Unpacks {@code count} codes from the run at {@code base} and writes {@code table[code]} for
   * each into {@code dst[dstOff..+count)} (the codes themselves as floats when {@code table} is
   * null).
   */
  static void lookup(
      MemorySegment block, long base, int count, int bits, float[] table, float[] dst, int dstOff) {
    byte[] array = io.kvslim.kv.attention.VectorKernels.array(block);
    int mask = (1 << bits) - 1;
    if (array != null && CodeVectors.applies(bits, count, table)) {
      CodeVectors.lookup(array, (int) base, count, bits, table, dst, dstOff);
      return;
    }
    if (array != null && bits == 4 && (count & 1) == 0) {
      int at = (int) base;
      for (int j = 0; j < count; j += 2, at++) {
        int b = array[at];
        dst[dstOff + j] = table != null ? table[b & 15] : b & 15;
        dst[dstOff + j + 1] = table != null ? table[(b >>> 4) & 15] : (b >>> 4) & 15;
      }
      return;
    }
    int acc = 0;
    int have = 0;
    long in = base;
    for (int j = 0; j < count; j++) {
      if (have < bits) {
        int b =
            array != null ? array[(int) in] & 0xff : block.get(ValueLayout.JAVA_BYTE, in) & 0xff;
        in++;
        acc |= b << have;
        have += 8;
      }
      int code = acc & mask;
      dst[dstOff + j] = table != null ? table[code] : code;
      acc >>>= bits;
      have -= bits;
    }
  }
}
