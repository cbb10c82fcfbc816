package io.kvslim.kv.format;

import io.kvslim.kv.attention.VectorKernels;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * Coupled Quantization (Zhang et al., "KV Cache is 1 Bit Per Channel: Efficient Large Language
 * Model Inference with Coupled Quantization", arXiv:2405.03917; METHODS.md Q5): the {@code d}
 * channels of a key or value are split into {@code d/c} contiguous groups of {@code c} channels,
 * and each group is stored as the index of its nearest centroid in a learned codebook of {@value
 * #CENTROIDS} centroids in R^c (8 bits per group, so {@code 8/c} bits per channel: CQ-2c8b is 4,
 * CQ-4c8b 2, CQ-8c8b 1). The codebooks come from k-means on calibration activations ({@code
 * io.kvslim.calibrate.CqCodebooks}); this format only reads them.
 *
 * <p>Row layout: {@code d/c} bytes, the code of group g at byte g; nothing else (no scale or zero
 * point). The codebook is a constant of the layer, {@link #tableBytes} bytes as f32, shared by
 * every token and sequence; or, made by {@link #perHead}, one codebook per KV head, each head's
 * rows in its own ({@link #forHead}; the layer's form stores nothing itself).
 *
 * <p>Encoding: per group, the centroid with the smallest squared distance {@code Σ_i (x_i −
 * C_j,i)²} (summed in channel order, ties to the lowest index). Decoding: the centroid itself, so a
 * reconstructed group is exactly a codebook row.
 *
 * <p>Fused score (METHODS.md Q5 step 3): {@link #prepareQuery} computes once per query the table
 * {@code T[g][j] = q_g · C_g,j} for every group and centroid; a key's score is then {@code Σ_g
 * T[g][code_g]}, {@code d/c} gathers and adds, without dequantizing. The fused weighted sum adds
 * {@code w · C_g,code_g} group by group.
 */
public final class CqFormat extends RawQueryKeyFormat {
  /** Centroids per group codebook (8-bit codes). */
  public static final int CENTROIDS = 256;

  private final int coupled;
  private final float[] book; // [group][centroid][channel]
  private final float[] bookT; // [group][channel][centroid], for the vectorized searches
  private final String tag;
  private final String origin;
  private final CqFormat[] heads; // per-head codebooks: the heads' forms; else null

  /**
   * @param coupled channels per group, c
   * @param book the codebooks, {@code [group][centroid][channel]}: {@code groups ·} {@value
   *     #CENTROIDS} {@code · c} floats
   * @param tag what the codebook is (e.g. {@code k3}: keys of layer 3), for the format's name
   * @throws IllegalArgumentException when the codebook is not a whole number of groups
   */
  public CqFormat(int coupled, float[] book, String tag) {
    this(coupled, book, tag, null);
  }

  /**
   * @param origin where the codebook comes from (a profile and its model), named when it does not
   *     fit the head dimension; may be null
   */
  public CqFormat(int coupled, float[] book, String tag, String origin) {
    this(coupled, book, tag, origin, null);
  }

  /**
   * A layer's format with one codebook per KV head: head {@code g} stores its rows with {@code
   * books[g]} ({@link #forHead}, tagged {@code tag + "h" + g}).
   *
   * @throws IllegalArgumentException when there is no head or a codebook is not a whole number of
   *     groups
   */
  public static CqFormat perHead(int coupled, float[][] books, String tag, String origin) {
    if (books.length == 0) {
      throw new IllegalArgumentException("per-head cq codebooks need at least one KV head");
    }
    CqFormat[] heads = new CqFormat[books.length];
    for (int g = 0; g < books.length; g++) {
      heads[g] = new CqFormat(coupled, books[g], tag + "h" + g, origin);
      if (heads[g].groups() != heads[0].groups()) {
        throw new IllegalArgumentException("per-head cq codebooks differ in length");
      }
    }
    return new CqFormat(coupled, books[0], tag, origin, heads);
  }

  private CqFormat(int coupled, float[] book, String tag, String origin, CqFormat[] heads) {
    this.heads = heads;
    if (coupled < 1 || book.length == 0 || book.length % (CENTROIDS * coupled) != 0) {
      throw new IllegalArgumentException(
          "a cq codebook needs groups × " + CENTROIDS + " × " + coupled + " floats");
    }
    this.coupled = coupled;
    this.book = book;
    this.tag = tag;
    this.origin = origin;
    int groups = book.length / (CENTROIDS * coupled);
    this.bookT = new float[book.length];
    for (int g = 0; g < groups; g++) {
      for (int j = 0; j < CENTROIDS; j++) {
        for (int i = 0; i < coupled; i++) {
          bookT[(g * coupled + i) * CENTROIDS + j] = book[(g * CENTROIDS + j) * coupled + i];
        }
      }
    }
  }

  /** Channels per group, c. */
  public int coupled() {
    return coupled;
  }

  /** Groups, d/c. */
  public int groups() {
    return book.length / (CENTROIDS * coupled);
  }

  /** Bits per channel: 8/c. */
  public double bitsPerChannel() {
    return 8.0 / coupled;
  }

  /**
   * Bytes of the codebook (f32), a constant of the layer: {@code d ·} {@value #CENTROIDS} · 4; with
   * per-head codebooks, that times the KV heads (every head's form reports its own).
   */
  @Override
  public long tableBytes() {
    if (heads == null) {
      return 4L * book.length;
    }
    long b = 0;
    for (CqFormat h : heads) {
      b += h.tableBytes();
    }
    return b;
  }

  /** KV head {@code kvHead}'s format: itself, unless the codebooks are per head. */
  @Override
  public KvFormat forHead(int kvHead) {
    if (heads == null) {
      return this;
    }
    if (kvHead < 0 || kvHead >= heads.length) {
      throw new IllegalArgumentException(
          "cq codebooks cover " + heads.length + " KV heads, not head " + kvHead);
    }
    return heads[kvHead];
  }

  /** True when each KV head has its own codebook ({@link #perHead}). */
  public boolean perHeadBooks() {
    return heads != null;
  }

  private void requireHead() {
    if (heads != null) {
      throw new IllegalStateException(
          "the layer's per-head cq format stores no tokens; use forHead(kvHead)");
    }
  }

  /** Centroid {@code j} of group {@code g}, channel {@code i}. */
  public float centroid(int g, int j, int i) {
    return book[(g * CENTROIDS + j) * coupled + i];
  }

  @Override
  public String name() {
    return "cq" + coupled + "c8b_" + tag;
  }

  @Override
  public int rowBytes(int headDim) {
    return headDim / coupled;
  }

  @Override
  protected int rowScaleBytes(int headDim) {
    return 0;
  }

  @Override
  public void checkHeadDim(int headDim) {
    if (headDim != groups() * coupled) {
      throw new IllegalArgumentException(
          "format "
              + name()
              + " has codebooks for "
              + groups() * coupled
              + " channels"
              + (origin == null ? "" : " (" + origin + ")")
              + " but the head dimension is "
              + headDim);
    }
  }

  /**
   * Index of the centroid of group {@code g} nearest to {@code x[off..+c)}; {@code dist} has at
   * least {@value #CENTROIDS} floats. Each lane computes {@code Σ_i (x_i − C_j,i)²} in channel
   * order with a separate multiply and add, so the distances equal the plain loop's bit for bit.
   */
  public int nearest(float[] x, int off, int g, float[] dist) {
    VectorSpecies<Float> species = VectorKernels.FLOATS;
    int base = g * coupled * CENTROIDS;
    int j = 0;
    for (int end = species.loopBound(CENTROIDS); j < end; j += species.length()) {
      FloatVector d = FloatVector.zero(species);
      for (int i = 0; i < coupled; i++) {
        FloatVector t =
            FloatVector.fromArray(species, bookT, base + i * CENTROIDS + j).neg().add(x[off + i]);
        d = d.add(t.mul(t));
      }
      d.intoArray(dist, j);
    }
    for (; j < CENTROIDS; j++) {
      float d = 0f;
      for (int i = 0; i < coupled; i++) {
        float t = x[off + i] - bookT[base + i * CENTROIDS + j];
        d += t * t;
      }
      dist[j] = d;
    }
    int best = 0;
    for (int k = 1; k < CENTROIDS; k++) {
      if (dist[k] < dist[best]) {
        best = k;
      }
    }
    return best;
  }

  private static int code(MemorySegment block, long offset) {
    return block.get(ValueLayout.JAVA_BYTE, offset) & 0xFF;
  }

  @Override
  protected void encodeRow(float[] src, int srcOff, MemorySegment block, long offset, int headDim) {
    requireHead();
    float[] dist = new float[CENTROIDS];
    int groups = headDim / coupled;
    for (int g = 0; g < groups; g++) {
      int j = nearest(src, srcOff + g * coupled, g, dist);
      block.set(ValueLayout.JAVA_BYTE, offset + g, (byte) j);
    }
  }

  @Override
  protected void decodeRow(MemorySegment block, long offset, int headDim, float[] dst, int dstOff) {
    requireHead();
    int groups = headDim / coupled;
    for (int g = 0; g < groups; g++) {
      System.arraycopy(
          book,
          (g * CENTROIDS + code(block, offset + g)) * coupled,
          dst,
          dstOff + g * coupled,
          coupled);
    }
  }

  /** The table {@code T[g·256 + j] = q_g · C_g,j}: {@code d/c ·} {@value #CENTROIDS} floats. */
  @Override
  public int preparedQueryLength(int headDim) {
    return headDim / coupled * CENTROIDS;
  }

  @Override
  public void prepareQuery(float[] q, int qOff, int headDim, float[] dst, int dstOff) {
    VectorSpecies<Float> species = VectorKernels.FLOATS;
    int groups = headDim / coupled;
    for (int g = 0; g < groups; g++) {
      int base = g * coupled * CENTROIDS;
      int out = dstOff + g * CENTROIDS;
      int j = 0;
      for (int end = species.loopBound(CENTROIDS); j < end; j += species.length()) {
        FloatVector d = FloatVector.zero(species);
        for (int i = 0; i < coupled; i++) {
          d =
              FloatVector.fromArray(species, bookT, base + i * CENTROIDS + j)
                  .mul(q[qOff + g * coupled + i])
                  .add(d);
        }
        d.intoArray(dst, out + j);
      }
      for (; j < CENTROIDS; j++) {
        float d = 0f;
        for (int i = 0; i < coupled; i++) {
          d += bookT[base + i * CENTROIDS + j] * q[qOff + g * coupled + i];
        }
        dst[out + j] = d;
      }
    }
  }

  /** {@code Σ_g T[g][code_g]}: the codes gathered from the prepared table. */
  @Override
  protected float dotRow(
      MemorySegment block, long offset, int headDim, float[] q, int qOff, float[] work) {
    int groups = headDim / coupled;
    float sum = 0f;
    for (int g = 0; g < groups; g++) {
      sum += q[qOff + g * CENTROIDS + code(block, offset + g)];
    }
    return sum;
  }

  /**
   * {@link #dotRow} for each slot without its per-row calls, four slots at a time so that their
   * four sequential sums run side by side (each slot's sum adds the same table entries in the same
   * order: the same bits).
   */
  @Override
  public void scores(
      MemorySegment block,
      int count,
      int capacity,
      int headDim,
      float[] prepared,
      int pOff,
      float[] scores,
      float[] work) {
    byte[] array = VectorKernels.array(block);
    if (array == null) {
      super.scores(block, count, capacity, headDim, prepared, pOff, scores, work);
      return;
    }
    int groups = headDim / coupled;
    int s = 0;
    for (; s + 3 < count; s += 4) {
      int o0 = s * groups;
      int o1 = o0 + groups;
      int o2 = o1 + groups;
      int o3 = o2 + groups;
      float s0 = 0f;
      float s1 = 0f;
      float s2 = 0f;
      float s3 = 0f;
      for (int g = 0, t = pOff; g < groups; g++, t += CENTROIDS) {
        s0 += prepared[t + (array[o0 + g] & 0xFF)];
        s1 += prepared[t + (array[o1 + g] & 0xFF)];
        s2 += prepared[t + (array[o2 + g] & 0xFF)];
        s3 += prepared[t + (array[o3 + g] & 0xFF)];
      }
      scores[s] = s0;
      scores[s + 1] = s1;
      scores[s + 2] = s2;
      scores[s + 3] = s3;
    }
    for (; s < count; s++) {
      int o = s * groups;
      float sum = 0f;
      for (int g = 0, t = pOff; g < groups; g++, t += CENTROIDS) {
        sum += prepared[t + (array[o + g] & 0xFF)];
      }
      scores[s] = sum;
    }
  }

  /**
   * {@link #accumulateRow} for the slots with a nonzero weight, in slot order, without its per-row
   * calls; with 2, 4 or 8 coupled channels a group's centroid is one 64-, 128- or 256-bit vector,
   * added as {@code acc + w·C} lane by lane (the scalar loop's operations: the same bits).
   */
  @Override
  public void accumulateBlock(
      MemorySegment block,
      int count,
      int capacity,
      int headDim,
      float[] weights,
      int wOff,
      float[] acc,
      int accOff,
      float[] work) {
    byte[] array = VectorKernels.array(block);
    int lanes = VectorKernels.FLOATS.length();
    if (array == null) {
      super.accumulateBlock(block, count, capacity, headDim, weights, wOff, acc, accOff, work);
    } else if (coupled == 8 && lanes >= 8) {
      add8(array, count, headDim / coupled, book, weights, wOff, acc, accOff);
    } else if (coupled == 4 && lanes >= 4) {
      add4(array, count, headDim / coupled, book, weights, wOff, acc, accOff);
    } else if (coupled == 2 && lanes >= 4) {
      add2(array, count, headDim / coupled, book, weights, wOff, acc, accOff);
    } else {
      int groups = headDim / coupled;
      for (int s = 0; s < count; s++) {
        float w = weights[wOff + s];
        if (w == 0f) {
          continue;
        }
        for (int g = 0, o = s * groups; g < groups; g++) {
          int from = (g * CENTROIDS + (array[o + g] & 0xFF)) * coupled;
          int to = accOff + g * coupled;
          for (int i = 0; i < coupled; i++) {
            acc[to + i] += w * book[from + i];
          }
        }
      }
    }
  }

  private static void add8(
      byte[] array,
      int count,
      int groups,
      float[] book,
      float[] weights,
      int wOff,
      float[] acc,
      int accOff) {
    VectorSpecies<Float> species = FloatVector.SPECIES_256;
    for (int s = 0; s < count; s++) {
      float w = weights[wOff + s];
      if (w == 0f) {
        continue;
      }
      FloatVector vw = FloatVector.broadcast(species, w);
      for (int g = 0, o = s * groups; g < groups; g++) {
        int from = (g * CENTROIDS + (array[o + g] & 0xFF)) * 8;
        int to = accOff + g * 8;
        FloatVector.fromArray(species, acc, to)
            .add(FloatVector.fromArray(species, book, from).mul(vw))
            .intoArray(acc, to);
      }
    }
  }

  private static void add2(
      byte[] array,
      int count,
      int groups,
      float[] book,
      float[] weights,
      int wOff,
      float[] acc,
      int accOff) {
    VectorSpecies<Float> species = FloatVector.SPECIES_64;
    for (int s = 0; s < count; s++) {
      float w = weights[wOff + s];
      if (w == 0f) {
        continue;
      }
      FloatVector vw = FloatVector.broadcast(species, w);
      for (int g = 0, o = s * groups; g < groups; g++) {
        int from = (g * CENTROIDS + (array[o + g] & 0xFF)) * 2;
        int to = accOff + g * 2;
        FloatVector.fromArray(species, acc, to)
            .add(FloatVector.fromArray(species, book, from).mul(vw))
            .intoArray(acc, to);
      }
    }
  }

  private static void add4(
      byte[] array,
      int count,
      int groups,
      float[] book,
      float[] weights,
      int wOff,
      float[] acc,
      int accOff) {
    VectorSpecies<Float> species = FloatVector.SPECIES_128;
    for (int s = 0; s < count; s++) {
      float w = weights[wOff + s];
      if (w == 0f) {
        continue;
      }
      FloatVector vw = FloatVector.broadcast(species, w);
      for (int g = 0, o = s * groups; g < groups; g++) {
        int from = (g * CENTROIDS + (array[o + g] & 0xFF)) * 4;
        int to = accOff + g * 4;
        FloatVector.fromArray(species, acc, to)
            .add(FloatVector.fromArray(species, book, from).mul(vw))
            .intoArray(acc, to);
      }
    }
  }

  /** {@code acc += w · C_g,code_g}, group by group. */
  @Override
  protected void accumulateRow(
      MemorySegment block,
      long offset,
      int headDim,
      float weight,
      float[] acc,
      int accOff,
      float[] work) {
    int groups = headDim / coupled;
    for (int g = 0; g < groups; g++) {
      int from = (g * CENTROIDS + code(block, offset + g)) * coupled;
      int to = accOff + g * coupled;
      for (int i = 0; i < coupled; i++) {
        acc[to + i] += weight * book[from + i];
      }
    }
  }

  @Override
  public boolean equals(Object other) {
    return other instanceof CqFormat o
        && o.coupled == coupled
        && o.book == book
        && o.heads == heads;
  }

  @Override
  public int hashCode() {
    return System.identityHashCode(book) * 31 + coupled;
  }
}
