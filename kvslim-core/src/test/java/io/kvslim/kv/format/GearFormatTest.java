package io.kvslim.kv.format;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.Random;
import org.ejml.data.DMatrixRMaj;
import org.ejml.dense.row.factory.DecompositionFactory_DDRM;
import org.ejml.interfaces.decomposition.SingularValueDecomposition_F64;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** GEAR's formats (METHODS.md H3 "Test"): the plain quantizer, SVD, outliers, kernels, bounds. */
class GearFormatTest {
  static final int C = 64;
  static final int D = 64;

  static float[] data(long seed, int n, int d) {
    Random r = new Random(seed);
    float[] x = new float[n * d];
    for (int t = 0; t < n; t++) {
      for (int c = 0; c < d; c++) {
        // a channel offset, a shared low-rank trend and noise, with a few spikes
        x[t * d + c] = (float) (0.3 * (c % 7) + Math.sin(t * 0.1 + c) + r.nextGaussian() * 0.5);
        if (r.nextInt(50) == 0) {
          x[t * d + c] *= 8;
        }
      }
    }
    return x;
  }

  static MemorySegment encode(KvFormat f, float[] x, int count) {
    MemorySegment block = MemorySegment.ofArray(new byte[(int) f.blockBytes(C, D)]);
    f.encode(x, 0, D, count, block, 0, C, D);
    return block;
  }

  static float[] decodeAll(KvFormat f, MemorySegment block, int count) {
    float[] out = new float[count * D];
    for (int t = 0; t < count; t++) {
      f.decode(block, t, C, D, out, t * D);
    }
    return out;
  }

  /**
   * The heap paths (fp16 factors widened a vector at a time, the low-rank term a vector of channels
   * or tokens at a time, outliers read from the array) give the bits of the general path a block
   * off the heap takes, for ranks 0, 2 and 3, with and without key outliers, full and partial.
   */
  @ParameterizedTest
  @ValueSource(ints = {2, 4})
  void heapKernelsGiveTheBitsOfTheSegmentPath(int bits) {
    Random r = new Random(bits);
    for (int rank : new int[] {0, 2, 3}) {
      for (double s : new double[] {0, 0.02, 0.1}) {
        for (int count : new int[] {C, 37}) {
          KvFormat keys = new GearKeyFormat(bits, rank, 3, s);
          // groups of 32 channels, and one group a row (the default: outliers per row)
          KvFormat values = new GearValueFormat(bits, 32, rank, 3, s);
          KvFormat rows = new GearValueFormat(bits, 64, rank, 3, s);
          float[] x = data(r.nextLong(), count, D);
          float[] q = data(r.nextLong(), 1, D);
          float[] w = new float[count];
          for (int t = 0; t < count; t++) {
            w[t] = t % 6 == 4 ? 0f : r.nextFloat();
          }
          for (KvFormat f : new KvFormat[] {keys, values, rows}) {
            MemorySegment heap = encode(f, x, count);
            MemorySegment off = java.lang.foreign.Arena.ofAuto().allocate(heap.byteSize(), 8);
            off.copyFrom(heap);
            float[] a = new float[count];
            float[] b = new float[count];
            f.scores(heap, count, C, D, q, 0, a, new float[KvFormat.workLength(D)]);
            f.scores(off, count, C, D, q, 0, b, new float[KvFormat.workLength(D)]);
            String what = f.name() + " rank " + rank + " s " + s + " count " + count;
            assertThat(a).as("%s scores", what).isEqualTo(b);
            float[] accA = new float[D + 2];
            float[] accB = new float[D + 2];
            f.accumulateBlock(heap, count, C, D, w, 0, accA, 2, new float[KvFormat.workLength(D)]);
            f.accumulateBlock(off, count, C, D, w, 0, accB, 2, new float[KvFormat.workLength(D)]);
            assertThat(accA).as("%s sums", what).isEqualTo(accB);
          }
        }
      }
    }
  }

  @ParameterizedTest
  @ValueSource(ints = {2, 4})
  void rankZeroAndNoOutliersGiveExactlyThePlainQuantizer(int bits) {
    float[] x = data(1, C, D);
    KvFormat keys = new GearKeyFormat(bits, 0, 3, 0);
    KvFormat kivi = new KiviKeyFormat(bits);
    assertThat(decodeAll(keys, encode(keys, x, C), C))
        .containsExactly(decodeAll(kivi, encode(kivi, x, C), C));
    KvFormat values = new GearValueFormat(bits, 32, 0, 3, 0);
    KvFormat kiviV = new KiviValueFormat(bits, 32);
    assertThat(decodeAll(values, encode(values, x, C), C))
        .containsExactly(decodeAll(kiviV, encode(kiviV, x, C), C));
  }

  @Test
  void powerIterationMatchesAnExactSvdOnSmallMatrices() {
    Random r = new Random(5);
    for (int trial = 0; trial < 5; trial++) {
      int n = 10 + trial;
      int d = 6 + trial;
      // R = Σ σ_i u_i v_iᵀ with a clear gap after the second singular value
      DMatrixRMaj m = new DMatrixRMaj(n, d);
      double[] sigma = {10, 7, 0.4, 0.2, 0.1};
      for (double s : sigma) {
        double[] u = new double[n];
        double[] v = new double[d];
        for (int i = 0; i < n; i++) {
          u[i] = r.nextGaussian();
        }
        for (int i = 0; i < d; i++) {
          v[i] = r.nextGaussian();
        }
        for (int i = 0; i < n; i++) {
          for (int j = 0; j < d; j++) {
            m.add(i, j, s * u[i] * v[j] / Math.sqrt(n * d));
          }
        }
      }
      int rank = 2;
      SingularValueDecomposition_F64<DMatrixRMaj> svd =
          DecompositionFactory_DDRM.svd(n, d, true, true, false);
      assertThat(svd.decompose(m.copy())).isTrue();
      DMatrixRMaj u = svd.getU(null, false);
      DMatrixRMaj v = svd.getV(null, false);
      double[] w = svd.getSingularValues();
      Integer[] order = new Integer[w.length];
      for (int i = 0; i < w.length; i++) {
        order[i] = i;
      }
      Arrays.sort(order, (a, b) -> Double.compare(w[b], w[a]));
      double[] exact = new double[n * d];
      for (int k = 0; k < rank; k++) {
        int s = order[k];
        for (int i = 0; i < n; i++) {
          for (int j = 0; j < d; j++) {
            exact[i * d + j] += w[s] * u.get(i, s) * v.get(j, s);
          }
        }
      }
      double[] a = new double[n * rank];
      double[] b = new double[d * rank];
      GearCodec.powerIteration(m.getData().clone(), n, d, rank, 3, a, b);
      double diff = 0;
      double norm = 0;
      for (int i = 0; i < n; i++) {
        for (int j = 0; j < d; j++) {
          double l = 0;
          for (int k = 0; k < rank; k++) {
            l += a[i * rank + k] * b[j * rank + k];
          }
          diff += (l - exact[i * d + j]) * (l - exact[i * d + j]);
          norm += m.get(i, j) * m.get(i, j);
        }
      }
      assertThat(Math.sqrt(diff)).as("trial %d", trial).isLessThan(1e-3 * Math.sqrt(norm));
    }
  }

  /**
   * The outliers come back exactly, plus the low-rank term the authors add to every entry ({@code
   * output + error_lr}): {@code x} itself at rank 0, {@code x + L_{tc}} (as stored) at rank 2.
   */
  @ParameterizedTest
  @ValueSource(ints = {0, 2})
  void outliersRoundTripExactlyPlusTheLowRankTerm(int rank) {
    float[] x = data(2, C, D);
    double s = 0.1;
    GearKeyFormat keys = new GearKeyFormat(4, rank, 3, s);
    MemorySegment keyBlock = encode(keys, x, C);
    float[] k = decodeAll(keys, keyBlock, C);
    int perSide = GearCodec.perSide(C, s);
    assertThat(perSide).isEqualTo(3);
    for (int c = 0; c < D; c++) {
      Integer[] order = new Integer[C];
      for (int t = 0; t < C; t++) {
        order[t] = t;
      }
      final int ch = c;
      Arrays.sort(order, (a, b) -> Float.compare(x[a * D + ch], x[b * D + ch]));
      for (int j = 0; j < perSide; j++) {
        for (int t : new int[] {order[j], order[C - 1 - j]}) {
          float lowRank = keys.lowRank(keyBlock, t, c, C, D);
          assertThat(k[t * D + c]).isEqualTo(x[t * D + c] + lowRank);
          if (rank == 0) {
            assertThat(k[t * D + c]).isEqualTo(x[t * D + c]);
          }
        }
      }
    }
    GearValueFormat values = new GearValueFormat(4, 32, rank, 3, s);
    MemorySegment valueBlock = encode(values, x, C);
    float[] v = decodeAll(values, valueBlock, C);
    int perToken = GearCodec.perSide(D, s);
    for (int t = 0; t < C; t++) {
      float[] row = Arrays.copyOfRange(x, t * D, t * D + D);
      float[] sorted = row.clone();
      Arrays.sort(sorted);
      for (int c = 0; c < D; c++) {
        if (row[c] <= sorted[perToken - 1] || row[c] >= sorted[D - perToken]) {
          assertThat(v[t * D + c]).isEqualTo(row[c] + values.lowRank(valueBlock, t, c, D));
          if (rank == 0) {
            assertThat(v[t * D + c]).isEqualTo(row[c]);
          }
        }
      }
    }
  }

  static double error(float[] x, float[] y, int n) {
    double e = 0;
    for (int i = 0; i < n; i++) {
      e += (x[i] - (double) y[i]) * (x[i] - (double) y[i]);
    }
    return Math.sqrt(e);
  }

  @ParameterizedTest
  @ValueSource(ints = {2, 4})
  void addingTheLowRankNeverIncreasesTheError(int bits) {
    for (long seed = 0; seed < 6; seed++) {
      float[] x = data(seed, C, D);
      for (double s : new double[] {0, 0.02, 0.1}) {
        KvFormat k0 = new GearKeyFormat(bits, 0, 3, s);
        double base = error(x, decodeAll(k0, encode(k0, x, C), C), C * D);
        KvFormat v0 = new GearValueFormat(bits, 32, 0, 3, s);
        double baseV = error(x, decodeAll(v0, encode(v0, x, C), C), C * D);
        for (int rank : new int[] {1, 2, 4}) {
          KvFormat k = new GearKeyFormat(bits, rank, 3, s);
          assertThat(error(x, decodeAll(k, encode(k, x, C), C), C * D))
              .isLessThanOrEqualTo(base * (1 + 1e-3));
          KvFormat v = new GearValueFormat(bits, 32, rank, 3, s);
          assertThat(error(x, decodeAll(v, encode(v, x, C), C), C * D))
              .isLessThanOrEqualTo(baseV * (1 + 1e-3));
        }
      }
    }
  }

  @ParameterizedTest
  @ValueSource(ints = {2, 4})
  void fusedKernelsEqualTheScalarReference(int bits) {
    Random r = new Random(bits);
    for (int count : new int[] {C, 37, 1}) {
      float[] x = data(bits * 10L + count, C, D);
      for (KvFormat f :
          new KvFormat[] {
            new GearKeyFormat(bits, 2, 3, 0.05),
            new GearValueFormat(bits, 32, 3, 3, 0.05),
            new GearValueFormat(bits, 64, 2, 3, 0.05)
          }) {
        MemorySegment block = encode(f, x, count);
        float[] q = new float[D];
        for (int j = 0; j < D; j++) {
          q[j] = (float) r.nextGaussian();
        }
        float[] fused = new float[count];
        float[] ref = new float[count];
        float[] work = new float[KvFormat.workLength(D)];
        f.dots(block, count, C, D, q, 0, fused, work);
        f.dotsReference(block, count, C, D, q, 0, ref);
        float[] row = new float[D];
        for (int t = 0; t < count; t++) {
          f.decode(block, t, C, D, row, 0);
          double magnitude = 0;
          for (int j = 0; j < D; j++) {
            magnitude += Math.abs(q[j] * row[j]);
          }
          assertThat((double) fused[t])
              .as("%s slot %d", f, t)
              .isCloseTo(ref[t], within(1e-5 * magnitude));
        }
        float[] weights = new float[count];
        for (int t = 0; t < count; t++) {
          weights[t] = t % 5 == 0 ? 0f : r.nextFloat();
        }
        float[] acc = new float[D];
        float[] accRef = new float[D];
        f.accumulateBlock(block, count, C, D, weights, 0, acc, 0, work);
        for (int t = 0; t < count; t++) {
          if (weights[t] != 0f) {
            f.accumulateReference(block, t, C, D, weights[t], accRef);
          }
        }
        float[] magnitude = new float[D];
        for (int t = 0; t < count; t++) {
          f.decode(block, t, C, D, row, 0);
          for (int j = 0; j < D; j++) {
            magnitude[j] += Math.abs(weights[t] * row[j]);
          }
        }
        for (int j = 0; j < D; j++) {
          assertThat((double) acc[j])
              .as("%s channel %d", f, j)
              .isCloseTo(accRef[j], within(1e-5 * magnitude[j]));
        }
      }
    }
  }

  @Test
  void bytesAreTheCodesScalesFactorsAndOutliers() {
    // keys: 4d scales, C·d·b/8 codes, C·r + d·r fp16 factors, d·2k outliers of 6 bytes
    GearKeyFormat keys = new GearKeyFormat(2, 2, 3, 0.1);
    int k = GearCodec.perSide(C, 0.1);
    assertThat(keys.blockBytes(C, D))
        .isEqualTo(4L * D + C * D * 2 / 8 + 2L * C * 2 + 2L * D * 2 + (long) D * 2 * k * 6);
    // values: per token d/g scale pairs + codes + r fp16 + 2k outliers; B once
    GearValueFormat values = new GearValueFormat(4, 32, 2, 3, 0.1);
    int kv = GearCodec.perSide(D, 0.1);
    assertThat(values.blockBytes(C, D))
        .isEqualTo(C * (D / 32 * 4L + D * 4 / 8 + 2 * 2 + 2L * kv * 6) + 2L * D * 2);
    assertThat(keys.scaleBytes(C, D)).isEqualTo(keys.blockBytes(C, D) - C * D * 2 / 8);
  }

  @Test
  void badKnobsAreOneSentence() {
    assertThatThrownBy(() -> new GearKeyFormat(3, 2, 3, 0.02))
        .hasMessage("gear needs 2 or 4 bits, got 3");
    assertThatThrownBy(() -> new GearKeyFormat(4, 2, 0, 0.02))
        .hasMessageContaining("power iteration");
    assertThatThrownBy(() -> new GearValueFormat(4, 64, 2, 3, 1.5))
        .hasMessageContaining("fraction");
  }
}
