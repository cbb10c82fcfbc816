package io.kvslim.kv.quant;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/** The float Vector API loops the fused format kernels share. */
final class VectorKernels {
  private VectorKernels() {}

  static final VectorSpecies<Float> FLOATS = FloatVector.SPECIES_PREFERRED;
  static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;

  /**
   * The byte array behind a block's heap segment (blocks are {@code MemorySegment.ofArray(byte[])},
   * starting at index 0), or null when the segment is not such a view or the platform is not
   * little-endian. Vector loads from an array compile to plain vector moves; loads through a heap
   * segment were measured an order of magnitude slower (JDK 25, x86), so the hot kernels read the
   * array when they can.
   */
  static byte[] array(MemorySegment block) {
    if (ByteOrder.nativeOrder() != LE || block.isNative()) {
      return null;
    }
    Object base = block.heapBase().orElse(null);
    return base instanceof byte[] bytes && bytes.length == block.byteSize() ? bytes : null;
  }

  /**
   * {@code a[aOff..+n) · b[bOff..+n)}, lane-parallel (order differs from a sequential sum, but is
   * fixed: see {@link AttentionKernels#dot(float[], int, float[], int, int)}).
   */
  static float dot(float[] a, int aOff, float[] b, int bOff, int n) {
    return AttentionKernels.dot(a, aOff, b, bOff, n);
  }

  /**
   * {@code acc[accOff..+n) += weight * x[xOff..+n)}, as a multiply then an add per element, so it
   * gives the same bits as the scalar loop {@code acc[j] += weight * x[j]}.
   */
  static void addScaled(float weight, float[] x, int xOff, float[] acc, int accOff, int n) {
    int j = 0;
    for (int upper = FLOATS.loopBound(n); j < upper; j += FLOATS.length()) {
      FloatVector v = FloatVector.fromArray(FLOATS, x, xOff + j);
      FloatVector a = FloatVector.fromArray(FLOATS, acc, accOff + j);
      v.mul(weight).add(a).intoArray(acc, accOff + j);
    }
    for (; j < n; j++) {
      acc[accOff + j] += weight * x[xOff + j];
    }
  }

  /** As {@link #addScaled(float, float[], int, float[], int, int)} with little-endian f32 rows. */
  static void addScaled(float weight, MemorySegment x, long offset, float[] acc, int n) {
    int j = 0;
    for (int upper = FLOATS.loopBound(n); j < upper; j += FLOATS.length()) {
      FloatVector v = FloatVector.fromMemorySegment(FLOATS, x, offset + 4L * j, LE);
      FloatVector a = FloatVector.fromArray(FLOATS, acc, j);
      v.mul(weight).add(a).intoArray(acc, j);
    }
    for (; j < n; j++) {
      acc[j] += weight * x.get(F32Format.FLOAT_LE, offset + 4L * j);
    }
  }

  /** 16 bytes of a block at {@code offset}, loaded from its array when it has one. */
  static ByteVector bytes16(MemorySegment block, long offset) {
    byte[] array = array(block);
    return array != null
        ? ByteVector.fromArray(ByteVector.SPECIES_128, array, (int) offset)
        : ByteVector.fromMemorySegment(ByteVector.SPECIES_128, block, offset, LE);
  }

  /** {@code acc[0..n) *= factor}, element by element. */
  static void scale(float[] acc, float factor, int n) {
    int j = 0;
    for (int upper = FLOATS.loopBound(n); j < upper; j += FLOATS.length()) {
      FloatVector.fromArray(FLOATS, acc, j).mul(factor).intoArray(acc, j);
    }
    for (; j < n; j++) {
      acc[j] *= factor;
    }
  }
}
