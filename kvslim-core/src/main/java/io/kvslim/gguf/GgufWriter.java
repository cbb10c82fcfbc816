package io.kvslim.gguf;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Writes a GGUF file (version 3 by default, version 2 on request): metadata of every value type,
 * tensor infos, and tensor data padded to {@code general.alignment}.
 *
 * <p>Layout, all little-endian: magic {@code "GGUF"}, u32 version, u64 tensor count, u64 metadata
 * count; the metadata entries (string key, u32 value type, value); the tensor infos (string name,
 * u32 dimension count, u64 dimensions innermost first, u32 ggml type id, u64 offset into the data
 * section); zero padding to the alignment; then each tensor's bytes at its offset, every tensor
 * starting on an aligned offset. Versions 2 and 3 share this layout (v1 used 32-bit counts).
 *
 * <p>Tensor data is pulled from a {@link TensorSource} while the file is written, so a model of
 * many gigabytes streams through a small buffer. The file is written under a temporary name and
 * moved into place only when complete.
 */
public final class GgufWriter {

  /** Produces the bytes of one tensor: it must hand the sink exactly the tensor's byte size. */
  @FunctionalInterface
  public interface TensorSource {
    void writeTo(TensorSink sink) throws IOException;
  }

  /** Where a {@link TensorSource} writes its bytes (buffered, in order). */
  public interface TensorSink {
    void write(byte[] bytes, int offset, int length) throws IOException;

    default void write(byte[] bytes) throws IOException {
      write(bytes, 0, bytes.length);
    }

    void write(MemorySegment bytes) throws IOException;
  }

  private record PendingTensor(String name, long[] dims, GgmlType type, TensorSource source) {
    long byteSize() {
      long n = 1;
      for (long d : dims) {
        n = Math.multiplyExact(n, d);
      }
      return type.bytesFor(n);
    }
  }

  private static final int BUFFER_BYTES = 1 << 20;

  private int version = 3;
  private final Map<String, GgufValue> metadata = new LinkedHashMap<>();
  private final Map<String, PendingTensor> tensors = new LinkedHashMap<>();

  /** Selects GGUF version 2 or 3 (the default). */
  public GgufWriter version(int version) {
    if (version != 2 && version != 3) {
      throw new IllegalArgumentException("GGUF version must be 2 or 3, got " + version);
    }
    this.version = version;
    return this;
  }

  /** Sets {@code general.alignment} (a power of two) as a UINT32, as llama.cpp writes it. */
  public GgufWriter alignment(int alignment) {
    return put("general.alignment", GgufValue.scalar(GgufValueType.UINT32, (long) alignment));
  }

  /** Adds or replaces a metadata entry, keeping its value type; entries keep insertion order. */
  public GgufWriter put(String key, GgufValue value) {
    GgufValueChecks.checkValue(key, value, 0);
    if (key.equals("general.alignment")) {
      if (!(value.value() instanceof Long l) || l <= 0 || l > 1 << 20 || Long.bitCount(l) != 1) {
        throw new IllegalArgumentException(
            "general.alignment must be a power of two up to 2^20, got " + value);
      }
    }
    metadata.put(key, value);
    return this;
  }

  /** Copies every entry of {@code entries} (e.g. {@link GgufFile#metadata()}). */
  public GgufWriter putAll(Map<String, GgufValue> entries) {
    entries.forEach(this::put);
    return this;
  }

  public GgufWriter remove(String key) {
    metadata.remove(key);
    return this;
  }

  public GgufWriter putString(String key, String value) {
    return put(key, GgufValue.scalar(GgufValueType.STRING, value));
  }

  public GgufWriter putUInt32(String key, long value) {
    return put(key, GgufValue.scalar(GgufValueType.UINT32, value));
  }

  public GgufWriter putInt32(String key, long value) {
    return put(key, GgufValue.scalar(GgufValueType.INT32, value));
  }

  public GgufWriter putUInt64(String key, long value) {
    return put(key, GgufValue.scalar(GgufValueType.UINT64, value));
  }

  public GgufWriter putFloat32(String key, double value) {
    return put(key, GgufValue.scalar(GgufValueType.FLOAT32, value));
  }

  public GgufWriter putFloat64(String key, double value) {
    return put(key, GgufValue.scalar(GgufValueType.FLOAT64, value));
  }

  public GgufWriter putBool(String key, boolean value) {
    return put(key, GgufValue.scalar(GgufValueType.BOOL, value));
  }

  /**
   * Adds an array: {@code values} is a {@code long[]} (integer element types), {@code double[]}
   * (FLOAT32/FLOAT64), {@code boolean[]}, {@code String[]} or {@code GgufValue[]} (nested arrays).
   */
  public GgufWriter putArray(String key, GgufValueType elementType, Object values) {
    return put(key, GgufValue.array(elementType, values));
  }

  /** The metadata added so far, in order (read-only view). */
  public Map<String, GgufValue> metadata() {
    return Collections.unmodifiableMap(metadata);
  }

  /**
   * Adds a tensor whose bytes are produced by {@code source} while the file is written. {@code
   * dims} is innermost first, as in ggml and {@link TensorInfo}.
   */
  public GgufWriter addTensor(String name, GgmlType type, long[] dims, TensorSource source) {
    if (name == null || name.isEmpty()) {
      throw new IllegalArgumentException("tensor name must not be empty");
    }
    if (tensors.containsKey(name)) {
      throw new IllegalArgumentException("duplicate tensor name '" + name + "'");
    }
    if (dims.length < 1 || dims.length > GgufFile.MAX_DIMS) {
      throw new IllegalArgumentException(
          "tensor '" + name + "' has " + dims.length + " dimensions (1 to 4 allowed)");
    }
    for (long d : dims) {
      if (d <= 0) {
        throw new IllegalArgumentException("tensor '" + name + "' has dimension " + d);
      }
    }
    if (dims[0] % type.blockSize() != 0) {
      throw new IllegalArgumentException(
          "tensor '"
              + name
              + "' of type "
              + type
              + " needs a first dimension that is a multiple of "
              + type.blockSize()
              + ", got "
              + dims[0]);
    }
    tensors.put(name, new PendingTensor(name, dims.clone(), type, source));
    return this;
  }

  /** Adds a tensor from bytes already in memory (exactly the tensor's byte size). */
  public GgufWriter addTensor(String name, GgmlType type, long[] dims, byte[] data) {
    return addTensor(name, type, dims, sink -> sink.write(data));
  }

  /** Adds a tensor from a segment (e.g. {@link GgufFile#tensorData}); it must stay valid. */
  public GgufWriter addTensor(String name, GgmlType type, long[] dims, MemorySegment data) {
    return addTensor(name, type, dims, sink -> sink.write(data));
  }

  /** Names of the tensors added so far, in file order. */
  public Set<String> tensorNames() {
    return Collections.unmodifiableSet(new LinkedHashSet<>(tensors.keySet()));
  }

  /** The alignment the file will use: {@code general.alignment} if set, else 32. */
  public int effectiveAlignment() {
    GgufValue v = metadata.get("general.alignment");
    return v == null ? GgufFile.DEFAULT_ALIGNMENT : (int) (long) (Long) v.value();
  }

  /**
   * Writes the file. Tensor sources run in order, on this thread. On any failure the partial file
   * is deleted and {@code out} is left as it was.
   *
   * @throws UncheckedIOException when the file cannot be written
   * @throws IllegalStateException when a tensor source writes the wrong number of bytes
   */
  public void write(Path out) {
    Path tmp = out.resolveSibling(out.getFileName() + ".partial");
    try {
      try (FileChannel ch =
          FileChannel.open(
              tmp,
              StandardOpenOption.CREATE,
              StandardOpenOption.TRUNCATE_EXISTING,
              StandardOpenOption.WRITE)) {
        writeTo(ch);
      }
      Files.move(tmp, out, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    } catch (IOException e) {
      deleteQuietly(tmp);
      throw new UncheckedIOException(out + ": cannot write GGUF file (" + describe(e) + ")", e);
    } catch (RuntimeException | Error e) {
      deleteQuietly(tmp);
      throw e;
    }
  }

  private static String describe(IOException e) {
    return switch (e) {
      case java.nio.file.NoSuchFileException _ -> "its directory does not exist";
      case java.nio.file.AccessDeniedException _ -> "permission denied";
      case java.nio.file.FileSystemException f when f.getReason() != null -> f.getReason();
      default -> e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
    };
  }

  private static void deleteQuietly(Path p) {
    try {
      Files.deleteIfExists(p);
    } catch (IOException ignored) {
      // the original failure is the one worth reporting
    }
  }

  private void writeTo(FileChannel ch) throws IOException {
    int alignment = effectiveAlignment();
    Output o = new Output(ch);
    o.u32(GgufFile.MAGIC);
    o.u32(version);
    o.u64(tensors.size());
    o.u64(metadata.size());
    for (Map.Entry<String, GgufValue> e : metadata.entrySet()) {
      o.string(e.getKey());
      o.u32(e.getValue().type().id());
      writeValue(o, e.getValue());
    }
    List<Long> offsets = new ArrayList<>();
    long offset = 0;
    for (PendingTensor t : tensors.values()) {
      o.string(t.name());
      o.u32(t.dims().length);
      for (long d : t.dims()) {
        o.u64(d);
      }
      o.u32(t.type().id());
      o.u64(offset);
      offsets.add(offset);
      offset = alignUp(offset + t.byteSize(), alignment);
    }
    o.pad(alignment);
    long dataStart = o.position();
    int i = 0;
    for (PendingTensor t : tensors.values()) {
      long expectedStart = dataStart + offsets.get(i++);
      if (o.position() != expectedStart) {
        throw new IllegalStateException("tensor data out of place for '" + t.name() + "'");
      }
      long before = o.position();
      t.source().writeTo(o);
      long written = o.position() - before;
      if (written != t.byteSize()) {
        throw new IllegalStateException(
            "tensor '"
                + t.name()
                + "' source wrote "
                + written
                + " bytes, expected "
                + t.byteSize()
                + " ("
                + t.type()
                + " "
                + Arrays.toString(t.dims())
                + ")");
      }
      o.pad(alignment);
    }
    o.flush();
  }

  static long alignUp(long x, long alignment) {
    return (x + alignment - 1) / alignment * alignment;
  }

  private static void writeValue(Output o, GgufValue v) throws IOException {
    if (v.isArray()) {
      GgufValueType elem = v.elementType();
      o.u32(elem.id());
      switch (v.value()) {
        case long[] a -> {
          o.u64(a.length);
          for (long x : a) {
            writeScalar(o, elem, x);
          }
        }
        case double[] a -> {
          o.u64(a.length);
          for (double x : a) {
            writeScalar(o, elem, x);
          }
        }
        case boolean[] a -> {
          o.u64(a.length);
          for (boolean x : a) {
            writeScalar(o, elem, x);
          }
        }
        case String[] a -> {
          o.u64(a.length);
          for (String x : a) {
            o.string(x);
          }
        }
        case GgufValue[] a -> {
          o.u64(a.length);
          for (GgufValue x : a) {
            writeValue(o, x);
          }
        }
        default -> throw new IllegalStateException("not an array value: " + v.value());
      }
    } else {
      writeScalar(o, v.type(), v.value());
    }
  }

  private static void writeScalar(Output o, GgufValueType type, Object value) throws IOException {
    switch (type) {
      case UINT8, INT8 -> o.u8((int) (long) (Long) value);
      case UINT16, INT16 -> o.u16((int) (long) (Long) value);
      case UINT32, INT32 -> o.u32((int) (long) (Long) value);
      case UINT64, INT64 -> o.u64((Long) value);
      case FLOAT32 -> o.u32(Float.floatToRawIntBits((float) (double) (Double) value));
      case FLOAT64 -> o.u64(Double.doubleToRawLongBits((Double) value));
      case BOOL -> o.u8((Boolean) value ? 1 : 0);
      case STRING -> o.string((String) value);
      case ARRAY -> throw new IllegalStateException("arrays are written by writeValue");
    }
  }

  // ---- buffered little-endian output -------------------------------------------------------

  private static final class Output implements TensorSink {
    private final FileChannel ch;
    private final ByteBuffer buf = ByteBuffer.allocateDirect(BUFFER_BYTES);
    private final MemorySegment bufSeg = MemorySegment.ofBuffer(buf);
    private long flushed;

    Output(FileChannel ch) {
      this.ch = ch;
      buf.order(ByteOrder.LITTLE_ENDIAN);
    }

    long position() {
      return flushed + buf.position();
    }

    private void ensure(int n) throws IOException {
      if (buf.remaining() < n) {
        flush();
      }
    }

    void flush() throws IOException {
      buf.flip();
      while (buf.hasRemaining()) {
        flushed += ch.write(buf);
      }
      buf.clear();
    }

    void u8(int v) throws IOException {
      ensure(1);
      buf.put((byte) v);
    }

    void u16(int v) throws IOException {
      ensure(2);
      buf.putShort((short) v);
    }

    void u32(int v) throws IOException {
      ensure(4);
      buf.putInt(v);
    }

    void u64(long v) throws IOException {
      ensure(8);
      buf.putLong(v);
    }

    void string(String s) throws IOException {
      byte[] b = s.getBytes(StandardCharsets.UTF_8);
      u64(b.length);
      write(b, 0, b.length);
    }

    void pad(int alignment) throws IOException {
      long n = alignUp(position(), alignment) - position();
      for (long i = 0; i < n; i++) {
        u8(0);
      }
    }

    @Override
    public void write(byte[] bytes, int offset, int length) throws IOException {
      while (length > 0) {
        ensure(1);
        int n = Math.min(length, buf.remaining());
        buf.put(bytes, offset, n);
        offset += n;
        length -= n;
      }
    }

    @Override
    public void write(MemorySegment bytes) throws IOException {
      long off = 0;
      long size = bytes.byteSize();
      while (off < size) {
        ensure(1);
        int n = (int) Math.min(size - off, buf.remaining());
        MemorySegment.copy(bytes, off, bufSeg, buf.position(), n);
        buf.position(buf.position() + n);
        off += n;
      }
    }
  }
}
