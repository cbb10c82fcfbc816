package io.kvslim.tensor;

import io.kvslim.ggml.BlockCodec;
import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;

/**
 * A weight matrix of {@code rows × cols} elements stored row-major in one GGML type ({@code cols}
 * contiguous, as ggml's {@code ne0}). Each type is one small final subclass holding its Vector API
 * kernels ({@link #dot} and the batched ones); a block type's layout, dequantization and scalar
 * reference {@link #dotScalar} (the test oracle) come from its {@link BlockCodec}.
 */
public abstract class WeightMatrix {
  protected final MemorySegment data;
  protected final int rows;
  protected final int cols;
  protected final long rowBytes;

  /** The block type's codec; {@code null} for F32, F16 and BF16, which override its uses. */
  private final BlockCodec codec;

  protected WeightMatrix(MemorySegment data, int rows, int cols, GgmlType type) {
    this.data = data;
    this.rows = rows;
    this.cols = cols;
    this.rowBytes = type.bytesFor(cols);
    this.codec = BlockCodec.of(type);
    if (data.byteSize() < rowBytes * rows) {
      throw new IllegalArgumentException(
          type
              + " matrix "
              + rows
              + "x"
              + cols
              + " needs "
              + rowBytes * rows
              + " bytes, got "
              + data.byteSize());
    }
  }

  public abstract GgmlType type();

  public final int rows() {
    return rows;
  }

  public final int cols() {
    return cols;
  }

  /** Bytes of weights this matrix reads per full pass (used for bandwidth figures). */
  public final long byteSize() {
    return rowBytes * rows;
  }

  public final MemorySegment data() {
    return data;
  }

  /** Dot product of row {@code row} with {@code x[xOffset .. xOffset+cols)}, Vector API path. */
  public abstract float dot(int row, float[] x, int xOffset);

  /**
   * Same as {@link #dot}, plain scalar Java: the reference the vector path is tested against (for
   * block types, the codec's {@link BlockCodec#dot}).
   */
  public float dotScalar(int row, float[] x, int xOffset) {
    return codec.dot(data, row * rowBytes, cols, x, xOffset);
  }

  /** Writes row {@code row} as floats into {@code out[outOffset .. outOffset+cols)}. */
  public void dequantizeRow(int row, float[] out, int outOffset) {
    codec.dequantizeRow(data, row * rowBytes, cols, out, outOffset);
  }

  /**
   * Dot products of row {@code row} with {@code n} activation rows: for {@code t < n}, {@code
   * out[outOffset + t*outStride] = dot(row, x, xOffset + t*xStride)}, bit for bit
   * (BatchInvarianceTest). Types with a tiled kernel decode each weight block once for several
   * activation rows; this default loops over {@link #dot}.
   */
  public void dotTile(
      int row,
      float[] x,
      int xOffset,
      int xStride,
      int n,
      float[] out,
      int outOffset,
      int outStride) {
    for (int t = 0; t < n; t++) {
      out[outOffset + t * outStride] = dot(row, x, xOffset + t * xStride);
    }
  }

  /**
   * {@link #dotTile} for types that implement {@link #dot4}: tiles of four activation rows; a last
   * partial tile repeats its last row (computed again and written to the same place, so no result
   * changes). There is one call site of {@code dot4} on purpose: when C2 inlines this method into a
   * caller, a second inlined copy of the kernel can exhaust its inlining node budget and leave
   * vector helpers out of line, where their vectors are boxed.
   */
  protected final void dotTileBy4(
      int row,
      float[] x,
      int xOffset,
      int xStride,
      int n,
      float[] out,
      int outOffset,
      int outStride) {
    for (int t = 0; t < n; t += 4) {
      int last = Math.min(3, n - 1 - t);
      int xo = xOffset + t * xStride;
      int oo = outOffset + t * outStride;
      dot4(
          row,
          x,
          xo,
          xo + Math.min(1, last) * xStride,
          xo + Math.min(2, last) * xStride,
          xo + last * xStride,
          out,
          oo,
          oo + Math.min(1, last) * outStride,
          oo + Math.min(2, last) * outStride,
          oo + last * outStride);
    }
  }

  /**
   * Dot products of row {@code row} with four activation vectors at {@code x0..x3}, written to
   * {@code out[o0..o3]}. Only types that call {@link #dotTileBy4} implement it.
   */
  protected void dot4(
      int row,
      float[] x,
      int x0,
      int x1,
      int x2,
      int x3,
      float[] out,
      int o0,
      int o1,
      int o2,
      int o3) {
    throw new UnsupportedOperationException(type() + " has no four-row kernel");
  }

  /**
   * {@code out[r] = dot(r, x, 0)} for rows {@code [row, row + count)}. Types may override it to
   * read several weight rows per pass over {@code x}; each row's result must stay bit-identical to
   * {@link #dot}.
   */
  public void dotRows(int row, int count, float[] x, float[] out) {
    for (int r = row; r < row + count; r++) {
      out[r] = dot(r, x, 0);
    }
  }

  /**
   * {@link #dotRows} for types with a {@link #rows4} kernel: rows {@code count / 4} apart four a
   * pass (four memory streams for the prefetcher, four independent accumulator chains), the last
   * {@code count % 4} rows by {@link #dot}.
   */
  protected final void dotRowsBy4(int row, int count, float[] x, float[] out) {
    int q = count / 4;
    for (int r = row; r < row + q; r++) {
      rows4(r, q, x, out);
    }
    for (int r = row + 4 * q; r < row + count; r++) {
      out[r] = dot(r, x, 0);
    }
  }

  /**
   * {@code out[row + i·q] = dot(row + i·q, x, 0)} for {@code i < 4}, bit for bit. Only types that
   * call {@link #dotRowsBy4} implement it.
   */
  protected void rows4(int row, int q, float[] x, float[] out) {
    throw new UnsupportedOperationException(type() + " has no four-row decode kernel");
  }

  /**
   * Row {@code row}'s bytes as a slice of their own. Kernels read a row through it with {@code int}
   * offsets, whose bounds checks C2 hoists out of a loop; with {@code long} offsets into the whole
   * matrix it kept a check at every vector load (the Q8_0 decode step twice as slow).
   */
  protected final MemorySegment rowSlice(long row) {
    return data.asSlice(row * rowBytes, rowBytes);
  }

  /**
   * {@code out[t * rows + r] = dot(r, x, t * cols)} for weight rows {@code [row, row + count)} and
   * activation rows {@code t < n} ({@code x} is {@code n × cols}, {@code out} is {@code n × rows}),
   * bit-identical to {@link #dot}. With four or more activation rows, types that can {@link
   * #decodeRow decode rows} take {@link PanelKernel}: a chunk of weight rows decoded once, then F32
   * register-blocked tiles of four weight rows against each cache-sized block of activation rows.
   * Otherwise (and for the last {@code count % 4} rows) {@link #dotTile} per row.
   */
  public void matmulRows(int row, int count, float[] x, int n, float[] out) {
    int r = row;
    if (n >= 4 && hasPanel()) {
      // weight rows decoded a chunk at a time, each chunk multiplied with all activation rows
      int quads = count / 4 * 4;
      int chunk = Math.min(quads, Math.max(4, PanelKernel.CHUNK_FLOATS / cols / 4 * 4));
      float[] panel = PanelKernel.panel(chunk * cols);
      for (int c0 = row; c0 < row + quads; c0 += chunk) {
        int c1 = Math.min(row + quads, c0 + chunk);
        for (int i = c0; i < c1; i++) {
          decodeRow(i, panel, (i - c0) * cols);
        }
        PanelKernel.chunk(panel, c1 - c0, cols, x, n, out, c0, rows);
      }
      r = row + quads;
    }
    for (; r < row + count; r++) {
      dotTile(r, x, 0, cols, n, out, r, rows);
    }
  }

  /**
   * Whether {@link #decodeRow} is implemented: this type's {@link #dot} accumulates {@code w.fma(x,
   * total)} over runs of {@code FL} elements in order into one lane-wise total and sums the lanes
   * with {@link Simd#sumLanes}, so the panel kernel reproduces it.
   */
  protected boolean hasPanel() {
    return false;
  }

  /**
   * Row {@code row}'s weights exactly as {@link #dot} multiplies them, into {@code out[off ..
   * off+cols)}. Only types whose {@link #hasPanel} is true implement it.
   */
  protected void decodeRow(int row, float[] out, int off) {
    throw new UnsupportedOperationException(type() + " has no panel decoding");
  }

  /** Wraps tensor bytes of the given type; fails with a clear message for unsupported types. */
  public static WeightMatrix of(GgmlType type, MemorySegment data, int rows, int cols) {
    return WeightMatrices.create(type, data, rows, cols);
  }
}
