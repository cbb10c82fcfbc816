package io.kvslim.gguf;

/**
 * A tensor as described in a GGUF header. {@code dims[0]} is the innermost (contiguous) dimension,
 * as in ggml: a matrix with {@code dims = {cols, rows}} stores {@code rows} rows of {@code cols}
 * elements. {@code offset} is relative to the start of the tensor data section.
 */
public record TensorInfo(String name, long[] dims, GgmlType type, long offset) {

  public long elementCount() {
    long n = 1;
    for (long d : dims) {
      n = Math.multiplyExact(n, d);
    }
    return n;
  }

  public long byteSize() {
    return type.bytesFor(elementCount());
  }

  /** Number of rows: the product of all dimensions but the first. */
  public long rows() {
    return elementCount() / dims[0];
  }

  public long cols() {
    return dims[0];
  }
}
