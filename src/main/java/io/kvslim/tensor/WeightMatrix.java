package io.kvslim.tensor;

import io.kvslim.gguf.GgmlType;
import java.lang.foreign.MemorySegment;

/**
 * A weight matrix of {@code rows × cols} elements stored row-major in one GGML type ({@code cols}
 * contiguous, as ggml's {@code ne0}). Each type is one small final subclass holding its block
 * decoding next to its kernels: a scalar reference {@link #dotScalar} (the test oracle) and a
 * Vector API {@link #dot}.
 */
public abstract class WeightMatrix {
  protected final MemorySegment data;
  protected final int rows;
  protected final int cols;
  protected final long rowBytes;

  protected WeightMatrix(MemorySegment data, int rows, int cols, GgmlType type) {
    this.data = data;
    this.rows = rows;
    this.cols = cols;
    this.rowBytes = type.bytesFor(cols);
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

  /** Same as {@link #dot}, plain scalar Java: the reference the vector path is tested against. */
  public abstract float dotScalar(int row, float[] x, int xOffset);

  /** Writes row {@code row} as floats into {@code out[outOffset .. outOffset+cols)}. */
  public abstract void dequantizeRow(int row, float[] out, int outOffset);

  /** Wraps tensor bytes of the given type; fails with a clear message for unsupported types. */
  public static WeightMatrix of(GgmlType type, MemorySegment data, int rows, int cols) {
    return WeightMatrices.create(type, data, rows, cols);
  }
}
