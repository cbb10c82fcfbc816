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

  /** 16 bytes of a block at {@code offset}, loaded from its array when it has one. */
  static ByteVector bytes16(MemorySegment block, long offset) {
    byte[] array = array(block);
    return array != null
        ? ByteVector.fromArray(ByteVector.SPECIES_128, array, (int) offset)
        : ByteVector.fromMemorySegment(ByteVector.SPECIES_128, block, offset, LE);
  }
}
