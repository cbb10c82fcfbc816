package io.kvslim.kv.format;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.calibrate.KvQuantCalibration;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * KVQuant's key and value formats (METHODS.md Q4 "Test"): the per-element bound, sparse outliers,
 * dequantized inliers on the codebook, bit packing, fused kernels against the scalar references,
 * and bytes against the analytical size.
 */
class KvQuantFormatTest {
  static final int D = 64;
  static final int CAP = 32;
  static final int HEADS = 2;

  /** A codebook of 2^bits sorted values in (−1, 1), uneven on purpose. */
  static float[] codebook(int bits, SplittableRandom r) {
    int k = 1 << bits;
    float[] c = new float[k];
    for (int i = 0; i < k; i++) {
      c[i] = (float) (-0.95 + 1.9 * (i + 0.3 * r.nextDouble()) / k);
    }
    Arrays.sort(c);
    return c;
  }

  static KvQuantKeyFormat keys(int bits, int outliers, SplittableRandom r) {
    float[][] offset = new float[HEADS][D];
    float[][] range = new float[HEADS][D];
    for (int g = 0; g < HEADS; g++) {
      for (int j = 0; j < D; j++) {
        offset[g][j] = (float) r.nextGaussian();
        range[g][j] = (float) (0.2 + 3 * r.nextDouble());
      }
    }
    return new KvQuantKeyFormat(bits, codebook(bits, r), offset, range, outliers);
  }

  /**
   * Rows near each head's channel ranges, with a few planted outliers (several per row at times).
   */
  static float[] keyRows(KvQuantKeyFormat layer, int g, int n, SplittableRandom r) {
    KvQuantKeyFormat f = (KvQuantKeyFormat) layer.forHead(g);
    float[] x = new float[n * D];
    for (int t = 0; t < n; t++) {
      for (int j = 0; j < D; j++) {
        x[t * D + j] = f.offset(j) + f.range(j) * (float) (2 * r.nextDouble() - 1);
      }
      int planted = t % 4; // 0..3 outliers per row
      for (int i = 0; i < planted; i++) {
        int j = r.nextInt(D);
        x[t * D + j] =
            f.offset(j)
                + f.range(j) * (float) ((r.nextBoolean() ? 1 : -1) * (1.5 + 20 * r.nextDouble()));
      }
    }
    return x;
  }

  static float[] valueRows(int n, SplittableRandom r) {
    float[] x = new float[n * D];
    for (int t = 0; t < n; t++) {
      float scale = (float) Math.exp(2 * r.nextGaussian());
      for (int j = 0; j < D; j++) {
        x[t * D + j] = scale * (float) r.nextGaussian();
      }
      x[t * D + r.nextInt(D)] *= 30;
    }
    return x;
  }

  static MemorySegment block(KvFormat f) {
    return MemorySegment.ofArray(new byte[(int) f.blockBytes(CAP, D)]);
  }

  @ParameterizedTest
  @ValueSource(ints = {2, 3, 4})
  void keysAreWithinTheirBoundWithInliersOnTheCodebookAndSparseOutliers(int bits) {
    SplittableRandom r = new SplittableRandom(bits);
    KvQuantKeyFormat layer = keys(bits, 2, r);
    for (int g = 0; g < HEADS; g++) {
      KvQuantKeyFormat f = (KvQuantKeyFormat) layer.forHead(g);
      float[] x = keyRows(layer, g, CAP, r);
      MemorySegment b = block(f);
      f.encode(x, 0, D, CAP, b, 0, CAP, D);
      float e = f.inlierError();
      float[] y = new float[D];
      for (int t = 0; t < CAP; t++) {
        f.decode(b, t, CAP, D, y, 0);
        int beyond = 0;
        for (int j = 0; j < D; j++) {
          float u = Math.abs((x[t * D + j] - f.offset(j)) / f.range(j));
          beyond += u > 1 ? 1 : 0;
        }
        int sparse = 0;
        for (int j = 0; j < D; j++) {
          float xv = x[t * D + j];
          float u = Math.abs((xv - f.offset(j)) / f.range(j));
          float err = Math.abs(xv - y[j]);
          boolean exactish = err <= Math.abs(xv) * 0x1p-11f;
          boolean onBook = false;
          for (int i = 0; i < 1 << bits; i++) {
            onBook |= y[j] == f.centroid(i) * f.range(j) + f.offset(j);
          }
          if (!onBook) {
            // not a dense code: must be a sparse outlier, stored as fp16
            assertThat(exactish).as("row %d channel %d", t, j).isTrue();
            assertThat(u).isGreaterThan(1f);
            sparse++;
          } else {
            float bound =
                f.range(j) * (e + Math.max(0f, u - 1f))
                    + 1e-5f * (Math.abs(f.offset(j)) + f.range(j));
            assertThat(err).as("row %d channel %d", t, j).isLessThanOrEqualTo(bound);
          }
        }
        assertThat(sparse).isEqualTo(Math.min(2, beyond));
      }
    }
  }

  @ParameterizedTest
  @ValueSource(ints = {2, 3, 4})
  void valuesAreWithinTheirBoundAndTheExtremesAreSparse(int bits) {
    SplittableRandom r = new SplittableRandom(10 + bits);
    KvQuantValueFormat f = new KvQuantValueFormat(bits, codebook(bits, r), 1);
    float[] x = valueRows(CAP, r);
    MemorySegment b = block(f);
    f.encode(x, 0, D, CAP, b, 0, CAP, D);
    float e = f.inlierError();
    float[] y = new float[D];
    for (int t = 0; t < CAP; t++) {
      f.decode(b, t, CAP, D, y, 0);
      int max = 0;
      int min = 0;
      for (int j = 1; j < D; j++) {
        max = x[t * D + j] > x[t * D + max] ? j : max;
        min = x[t * D + j] < x[t * D + min] ? j : min;
      }
      float range = f.range(b, t, D);
      for (int j = 0; j < D; j++) {
        float xv = x[t * D + j];
        float err = Math.abs(xv - y[j]);
        if (j == max || j == min) {
          assertThat(err).isLessThanOrEqualTo(Math.abs(xv) * 0x1p-11f);
        } else {
          assertThat(err)
              .as("row %d channel %d", t, j)
              .isLessThanOrEqualTo(range * e * (1 + 1e-5f) + 1e-6f * range);
        }
      }
    }
  }

  @ParameterizedTest
  @ValueSource(ints = {2, 3, 4})
  void inliersOnCentroidsRoundTripTheirCodes(int bits) {
    SplittableRandom r = new SplittableRandom(20 + bits);
    KvQuantKeyFormat layer = keys(bits, 1, r);
    KvQuantKeyFormat f = (KvQuantKeyFormat) layer.forHead(1);
    int k = 1 << bits;
    float[] c = new float[k];
    for (int i = 0; i < k; i++) {
      c[i] = f.centroid(i);
    }
    float[] x = new float[CAP * D];
    int[] codes = new int[CAP * D];
    for (int t = 0; t < CAP; t++) {
      for (int j = 0; j < D; j++) {
        codes[t * D + j] = r.nextInt(k);
        x[t * D + j] = c[codes[t * D + j]] * f.range(j) + f.offset(j);
      }
    }
    MemorySegment b = block(f);
    f.encode(x, 0, D, CAP, b, 0, CAP, D);
    int[] back = new int[D];
    for (int t = 0; t < CAP; t++) {
      PackedCodes.unpack(b, (long) t * f.rowBytes(D), D, bits, back);
      assertThat(back).containsExactly(Arrays.copyOfRange(codes, t * D, (t + 1) * D));
    }
  }

  @ParameterizedTest
  @ValueSource(ints = {2, 3, 4})
  void fusedKernelsEqualTheDequantizedBlock(int bits) {
    SplittableRandom r = new SplittableRandom(30 + bits);
    KvQuantKeyFormat layer = keys(bits, 2, r);
    KvQuantKeyFormat kf = (KvQuantKeyFormat) layer.forHead(0);
    KvQuantValueFormat vf = new KvQuantValueFormat(bits, codebook(bits, r), 1);
    int n = CAP - 3;
    MemorySegment kb = block(kf);
    MemorySegment vb = block(vf);
    kf.encode(keyRows(layer, 0, n, r), 0, D, n, kb, 0, CAP, D);
    vf.encode(valueRows(n, r), 0, D, n, vb, 0, CAP, D);
    float[] work = new float[KvFormat.workLength(D)];
    int rows = 3;
    float[] q = new float[rows * D];
    for (int i = 0; i < q.length; i++) {
      q[i] = (float) r.nextGaussian();
    }
    float[] prepared = new float[rows * kf.preparedQueryLength(D)];
    for (int i = 0; i < rows; i++) {
      kf.prepareQuery(q, i * D, D, prepared, i * kf.preparedQueryLength(D));
    }
    float[] out = new float[rows * CAP];
    kf.scoresRows(
        kb,
        n,
        CAP,
        D,
        prepared,
        kf.preparedQueryLength(D),
        new int[] {0, 1, 2},
        rows,
        out,
        CAP,
        work,
        new float[CAP * D]);
    float[] ref = new float[CAP];
    float[] key = new float[D];
    for (int i = 0; i < rows; i++) {
      kf.dotsReference(kb, n, CAP, D, q, i * D, ref);
      for (int s = 0; s < n; s++) {
        kf.decode(kb, s, CAP, D, key, 0);
        double mag = 0;
        for (int j = 0; j < D; j++) {
          mag += Math.abs(q[i * D + j] * key[j]);
        }
        assertThat((double) Math.abs(out[i * CAP + s] - ref[s])).isLessThanOrEqualTo(1e-5 * mag);
      }
    }
    float[] weights = new float[CAP];
    for (int s = 0; s < n; s++) {
      weights[s] = s % 5 == 0 ? 0f : (float) r.nextDouble();
    }
    float[] acc = new float[D];
    float[] accRef = new float[D];
    vf.accumulateBlock(vb, n, CAP, D, weights, 0, acc, 0, work);
    float[] row = new float[D];
    double[] mag = new double[D];
    for (int s = 0; s < n; s++) {
      vf.accumulateReference(vb, s, CAP, D, weights[s], accRef);
      vf.decode(vb, s, CAP, D, row, 0);
      for (int j = 0; j < D; j++) {
        mag[j] += Math.abs(weights[s] * row[j]);
      }
    }
    for (int j = 0; j < D; j++) {
      assertThat((double) Math.abs(acc[j] - accRef[j])).isLessThanOrEqualTo(1e-5 * mag[j]);
    }
  }

  @ParameterizedTest
  @ValueSource(ints = {2, 3, 4})
  void bytesAreTheAnalyticalSize(int bits) {
    SplittableRandom r = new SplittableRandom(40 + bits);
    int m = KvQuantCalibration.keyOutliers(D, 0.01);
    int side = KvQuantCalibration.valueOutliersPerSide(D, 0.01);
    assertThat(m).isEqualTo(1);
    assertThat(side).isEqualTo(1);
    KvQuantKeyFormat k = (KvQuantKeyFormat) keys(bits, m, r).forHead(1);
    KvQuantValueFormat v = new KvQuantValueFormat(bits, codebook(bits, r), side);
    long codes = D * bits / 8;
    assertThat(k.blockBytes(CAP, D)).isEqualTo(CAP * (codes + 3L * m));
    assertThat(k.scaleBytes(CAP, D)).isEqualTo(CAP * 3L * m);
    assertThat(v.blockBytes(CAP, D)).isEqualTo(CAP * (codes + 4 + 3L * 2 * side));
    assertThat(v.scaleBytes(CAP, D)).isEqualTo(CAP * (4 + 3L * 2 * side));
    // 3 bits, d = 64: 27 + 34 = 61 bytes a token and head against f16's 256
    if (bits == 3) {
      assertThat(k.rowBytes(D) + v.rowBytes(D)).isEqualTo(61);
    }
  }

  @ParameterizedTest
  @ValueSource(ints = {2, 3})
  void badTablesAreOneSentence(int bits) {
    SplittableRandom r = new SplittableRandom(50);
    float[] book = codebook(bits, r);
    float[][] ok = new float[1][D];
    float[][] one = new float[1][D];
    Arrays.fill(one[0], 1f);
    assertThatThrownBy(() -> new KvQuantKeyFormat(bits, Arrays.copyOf(book, 3), ok, one, 1))
        .hasMessageContaining("centroids");
    float[] unsorted = book.clone();
    unsorted[0] = unsorted[1];
    assertThatThrownBy(() -> new KvQuantValueFormat(bits, unsorted, 1))
        .hasMessageContaining("strictly increasing");
    assertThatThrownBy(() -> new KvQuantKeyFormat(bits, book, ok, ok, 1))
        .hasMessageContaining("positive");
    KvQuantKeyFormat f = new KvQuantKeyFormat(bits, book, ok, one, 1);
    assertThatThrownBy(() -> f.checkHeadDim(128)).hasMessageContaining("head dimension of 64");
    assertThatThrownBy(() -> f.encode(new float[D], 0, D, 1, block(f), 0, CAP, D))
        .hasMessageContaining("forHead");
  }

  @ParameterizedTest
  @ValueSource(ints = {2, 3, 4})
  void theStoreKeepsTheSinkInF16AndHoldsExactlyTheAnalyticalBytes(int bits) {
    SplittableRandom r = new SplittableRandom(60 + bits);
    KvQuantKeyFormat layer =
        new KvQuantKeyFormat(
            bits, codebook(bits, r), keys(bits, 1, r).offsets(), keys(bits, 1, r).ranges(), 1, 1);
    KvQuantValueFormat vf = new KvQuantValueFormat(bits, codebook(bits, r), 1);
    io.kvslim.kv.store.LayerStore store =
        new io.kvslim.kv.store.LayerStore(
            new io.kvslim.kv.store.BlockPool(),
            HEADS,
            D,
            io.kvslim.kv.store.KvCacheFormat.of(layer, vf));
    int n = 70;
    float[] k = new float[n * HEADS * D];
    float[] v = new float[n * HEADS * D];
    for (int g = 0; g < HEADS; g++) {
      float[] kr = keyRows(layer, g, n, r);
      float[] vr = valueRows(n, r);
      for (int t = 0; t < n; t++) {
        System.arraycopy(kr, t * D, k, (t * HEADS + g) * D, D);
        System.arraycopy(vr, t * D, v, (t * HEADS + g) * D, D);
      }
    }
    int[] positions = new int[n];
    for (int t = 0; t < n; t++) {
      positions[t] = t;
    }
    store.append(1, positions, k, v); // the sink arrives alone (a prefill chunk of one) ...
    store.append(
        n - 1,
        java.util.Arrays.copyOfRange(positions, 1, n),
        java.util.Arrays.copyOfRange(k, HEADS * D, k.length),
        java.util.Arrays.copyOfRange(v, HEADS * D, v.length));
    // the layer's tables, held once beside the blocks: both codebooks and every head's offsets
    // and ranges, as f32
    long tables = 4L * (2 * (1 << bits) + 2L * HEADS * D);
    assertThat(store.format().tableBytes()).isEqualTo(tables);
    assertThat(layer.forHead(0).tableBytes()).isEqualTo(layer.tableBytes());
    assertThat(new io.kvslim.kv.cache.PagedLayerKv(store).bytes())
        .isEqualTo(store.bytes() + tables);
    int keyRow = (D * bits + 7) / 8 + 3;
    int valueRow = (D * bits + 7) / 8 + 4 + 6;
    long sink = 16 + 2L * D + 2L * D;
    long blocks = (n - 1 + CAP - 1) / CAP;
    for (int g = 0; g < HEADS; g++) {
      assertThat(store.head(g).bytes())
          .isEqualTo(sink + blocks * (16 + CAP * (long) (keyRow + valueRow)));
      float[] keysRead = new float[n * D];
      float[] valuesRead = new float[n * D];
      store.head(g).readKeys(keysRead);
      store.head(g).readValues(valuesRead);
      for (int j = 0; j < D; j++) {
        float x = k[g * D + j];
        assertThat(keysRead[j]).isEqualTo(HalfFloats.fromF16(HalfFloats.toF16(x)));
        assertThat(valuesRead[j]).isEqualTo(HalfFloats.fromF16(HalfFloats.toF16(v[g * D + j])));
      }
      // the others in the kvquant formats
      KvQuantKeyFormat kf = (KvQuantKeyFormat) layer.forHead(g);
      float[] row = new float[D];
      MemorySegment one = MemorySegment.ofArray(new byte[kf.rowBytes(D)]);
      kf.encode(k, (5 * HEADS + g) * D, D, 1, one, 0, 1, D);
      kf.decode(one, 0, 1, D, row, 0);
      assertThat(java.util.Arrays.copyOfRange(keysRead, 5 * D, 6 * D)).containsExactly(row);
    }
  }
}
