package io.kvslim.tensor;

import io.kvslim.ggml.LittleEndian;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorShuffle;
import jdk.incubator.vector.VectorSpecies;

/**
 * Vector species and little-endian layouts shared by the weight kernels.
 *
 * <p>Quantized kernels load {@link #BL} bytes at a time and widen them to floats. {@code BL}
 * divides 16 (the smallest group of elements sharing a scale, in Q6_K), so a byte load never spans
 * two scale groups. When a float vector holds fewer lanes than the smallest byte vector (128-bit
 * floats: 4 lanes, 64-bit bytes: 8 lanes) one byte load is widened in {@link #PARTS} parts.
 *
 * <p>Rules the kernels follow, learned from C2 (JDK 25):
 *
 * <ul>
 *   <li>Kernels call the Vector API directly, never through helper methods of ours that return
 *       vectors. The JDK's vector methods are force-inlined, but once a compilation has spent its
 *       inlining node budget ({@code NodeCountInliningCutoff}) C2 leaves other callees out of line,
 *       and a vector returned from an out-of-line method is boxed: 10-100x slower. Scalar helpers
 *       (as {@link LittleEndian#half}) are safe in scalar paths.
 *   <li>A kernel keeps its vector operations few per method: K-quant kernels loop over sub-blocks
 *       with shift counts as variables instead of unrolling one body per sub-block.
 *   <li>Nibbles and bit fields are shifted in 16-bit lanes, then masked: x86 has no byte-lane
 *       shift, and a true byte shift costs several instructions.
 * </ul>
 */
final class Simd {
  private Simd() {}

  /** The float species of every kernel: the preferred one, capped at 512 bits (16 lanes). */
  static final VectorSpecies<Float> F =
      FloatVector.SPECIES_PREFERRED.vectorBitSize() > 512
          ? FloatVector.SPECIES_512
          : FloatVector.SPECIES_PREFERRED;

  static final int FL = F.length();

  /** Ints with as many lanes as {@link #F}. */
  static final VectorSpecies<Integer> I = IntVector.SPECIES_PREFERRED.withShape(F.vectorShape());

  /** Shorts with as many lanes as {@link #F} (for F16 and BF16 rows). */
  static final VectorSpecies<Short> S =
      ShortVector.SPECIES_64.withShape(VectorShape.forBitSize(FL * 16));

  /** Bytes per quantized load: as many lanes as {@link #F}, but at least the 64-bit species. */
  static final VectorSpecies<Byte> B =
      ByteVector.SPECIES_64.withShape(VectorShape.forBitSize(Math.max(64, FL * 8)));

  static final int BL = B.length();

  /** Float vectors per byte load: 1, or 2 for 128-bit floats. */
  static final int PARTS = BL / FL;

  static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
  static final ValueLayout.OfShort SHORT_LE = LittleEndian.SHORT;
  static final ValueLayout.OfInt INT_LE = LittleEndian.INT;
  static final ValueLayout.OfLong LONG_LE = LittleEndian.LONG;
  static final ValueLayout.OfFloat FLOAT_LE = LittleEndian.FLOAT;

  private static final VectorShuffle<Float> STEP1 = rotation(1);
  private static final VectorShuffle<Float> STEP2 = rotation(2);
  private static final VectorShuffle<Float> STEP4 = rotation(4);
  private static final VectorShuffle<Float> STEP8 = rotation(8);

  private static VectorShuffle<Float> rotation(int step) {
    int lanes = F.length();
    return VectorShuffle.fromOp(F, lane -> (lane + step) & (lanes - 1));
  }

  /**
   * Sum of the lanes as a fixed pairwise tree (lane i with lane i + L/2, and so on). Used instead
   * of {@code reduceLanes(ADD)}, whose order the Vector API leaves open and which the interpreter
   * and C2 compute differently: with the fixed tree a row's product is the same bits whether its
   * kernel is compiled or not, alone or in a batch. The shuffles are constants (static finals,
   * branches on the constant lane count) so that C2 intrinsifies every step.
   */
  static float sumLanes(FloatVector v) {
    if (FL >= 16) {
      v = v.add(v.rearrange(STEP8));
    }
    if (FL >= 8) {
      v = v.add(v.rearrange(STEP4));
    }
    if (FL >= 4) {
      v = v.add(v.rearrange(STEP2));
    }
    v = v.add(v.rearrange(STEP1));
    return v.lane(0);
  }

  /**
   * {@link #sumLanes(FloatVector)} of a vector already stored at {@code a[off..off+FL)}, in scalar
   * code: the same additions in the same tree, so the same bits (the array is overwritten). Kernels
   * with many accumulators store them and reduce here: a vector passed to a method C2 did not
   * inline is boxed on the heap, and a kernel that calls {@code sumLanes(FloatVector)} a dozen
   * times can run out of inlining budget (seen in the server: tens of MB/s of boxed vectors).
   */
  static float sumLanes(float[] a, int off) {
    for (int h = FL >> 1; h >= 1; h >>= 1) {
      for (int j = 0; j < h; j++) {
        a[off + j] = a[off + j] + a[off + j + h];
      }
    }
    return a[off];
  }
}
