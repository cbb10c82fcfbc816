package io.kvslim.gguf;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Consumer;

/**
 * A GGUF file (versions 2 and 3) opened read-only through a memory map: the header is parsed into
 * metadata and tensor infos, and tensor data is handed out as {@link MemorySegment} slices of the
 * map, so weights cost no heap. Every malformed input raises {@link GgufFormatException} with a
 * message naming the file and the problem.
 */
public final class GgufFile implements AutoCloseable {
  public static final int MAGIC = 0x46554747; // "GGUF" little-endian
  public static final int DEFAULT_ALIGNMENT = 32;
  static final int MAX_DIMS = 4;

  private final Path path;
  private final Arena arena;
  private final MemorySegment file;
  private final int version;
  private final Map<String, GgufValue> metadata;
  private final List<TensorInfo> tensors;
  private final Map<String, TensorInfo> tensorsByName;
  private final int alignment;
  private final long dataOffset;
  private final Consumer<String> warningSink;
  private final Set<String> warnings = new LinkedHashSet<>();

  /** Where {@link #open(Path)} sends warnings: one {@code kvslim: warning: } line on stderr. */
  public static final Consumer<String> STDERR_WARNINGS =
      m -> System.err.println("kvslim: warning: " + SafeText.escape(m));

  private GgufFile(Path path, Arena arena, MemorySegment file, Consumer<String> warningSink) {
    this.path = path;
    this.arena = arena;
    this.file = file;
    this.warningSink = warningSink;
    GgufParser p = new GgufParser(path, file);
    int magic = p.u32("magic");
    if (magic != MAGIC) {
      throw p.error(String.format("not a GGUF file (magic 0x%08x, expected \"GGUF\")", magic));
    }
    this.version = p.u32("version");
    if (version != 2 && version != 3) {
      throw p.error(
          "unsupported GGUF version "
              + Integer.toUnsignedString(version)
              + " (kvslim reads versions 2 and 3)");
    }
    long tensorCount = p.u64("tensor count");
    long kvCount = p.u64("metadata count");
    // Each metadata entry takes at least 8+4+1 bytes, each tensor info at least 8+4+8+4+8.
    p.checkCount(kvCount, 13, "metadata entries");
    p.checkCount(tensorCount, 32, "tensors");
    Map<String, GgufValue> meta = new LinkedHashMap<>();
    for (long i = 0; i < kvCount; i++) {
      String key = p.string("metadata key #" + i);
      GgufValue value = p.value(SafeText.of(key));
      if (meta.put(key, value) != null) {
        throw p.error("duplicate metadata key '" + SafeText.of(key) + "'");
      }
    }
    this.metadata = Collections.unmodifiableMap(meta);
    GgufValue align = meta.get("general.alignment");
    int al = DEFAULT_ALIGNMENT;
    if (align != null) {
      if (!(align.value() instanceof Long l) || l <= 0 || l > 1 << 20 || Long.bitCount(l) != 1) {
        throw p.error("general.alignment must be a power of two, got " + SafeText.of("" + align));
      }
      al = (int) (long) align.value();
    }
    this.alignment = al;
    List<TensorInfo> infos = new ArrayList<>((int) tensorCount);
    Map<String, TensorInfo> byName = new LinkedHashMap<>();
    for (long i = 0; i < tensorCount; i++) {
      TensorInfo t = p.tensorInfo(i);
      if (byName.put(t.name(), t) != null) {
        throw p.error("duplicate tensor name '" + SafeText.of(t.name()) + "'");
      }
      infos.add(t);
    }
    long afterHeader = p.position();
    this.dataOffset = (afterHeader + al - 1) / al * al;
    long dataSize = file.byteSize() - dataOffset;
    // As llama.cpp's gguf_init_from_reader (ggml/src/gguf.cpp, "tensor '%s' has offset %" PRIu64
    // ", expected %zu"): tensor data follow each other in the order of the infos, each at the
    // running offset padded to the alignment, so no two overlap and none is out of order.
    long expected = 0;
    for (TensorInfo t : infos) {
      String name = SafeText.of(t.name());
      if (t.offset() % al != 0) {
        throw p.error("tensor '" + name + "' offset " + t.offset() + " is not aligned to " + al);
      }
      long size = t.byteSize();
      if (t.offset() < 0 || dataSize < 0 || t.offset() > dataSize - size) {
        throw p.error(
            "tensor '"
                + name
                + "' data ("
                + size
                + " bytes at offset "
                + t.offset()
                + ") lies past the end of the file (data section holds "
                + Math.max(0, dataSize)
                + " bytes; the file may be truncated)");
      }
      if (t.offset() != expected) {
        throw p.error(
            "tensor '"
                + name
                + "' data starts at offset "
                + t.offset()
                + ", expected "
                + expected
                + " (tensor data must follow each other in order, each aligned to "
                + al
                + " bytes, without overlap)");
      }
      expected = t.offset() + (size + al - 1) / al * al; // in the file, so no overflow
    }
    this.tensors = Collections.unmodifiableList(infos);
    this.tensorsByName = Collections.unmodifiableMap(byName);
  }

  /**
   * Opens and parses {@code path}; the file stays mapped until {@link #close()}. Warnings about its
   * content ({@link #warn}) go to stderr.
   */
  public static GgufFile open(Path path) {
    return open(path, STDERR_WARNINGS);
  }

  /**
   * Parses GGUF bytes already in memory (tests and fuzzing); {@code name} stands for the file in
   * messages, and {@link #close()} leaves {@code bytes} alone.
   */
  public static GgufFile read(Path name, MemorySegment bytes, Consumer<String> warningSink) {
    return new GgufFile(name, null, bytes, warningSink);
  }

  /** As {@link #open(Path)}, sending warnings to {@code warningSink}. */
  public static GgufFile open(Path path, Consumer<String> warningSink) {
    if (!Files.exists(path)) {
      throw new GgufFormatException(path + ": no such file");
    }
    if (Files.isDirectory(path)) {
      throw new GgufFormatException(path + ": is a directory, expected a GGUF file");
    }
    Arena arena = Arena.ofShared();
    try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
      long size = ch.size();
      MemorySegment seg = ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
      return new GgufFile(path, arena, seg, warningSink);
    } catch (NoSuchFileException e) {
      arena.close();
      throw new GgufFormatException(path + ": no such file", e);
    } catch (IOException e) {
      arena.close();
      throw new GgufFormatException(path + ": cannot read (" + e.getMessage() + ")", e);
    } catch (RuntimeException e) {
      arena.close();
      throw e;
    }
  }

  public Path path() {
    return path;
  }

  /**
   * Reports something wrong in the file that does not stop it from loading (a NaN weight, an
   * out-of-range token id). Each distinct message is reported once, prefixed by the path.
   */
  public void warn(String message) {
    String m = path + ": " + message;
    synchronized (warnings) {
      if (!warnings.add(m)) {
        return;
      }
    }
    warningSink.accept(m);
  }

  /** The warnings reported so far, in order. */
  public List<String> warnings() {
    synchronized (warnings) {
      return List.copyOf(warnings);
    }
  }

  public int version() {
    return version;
  }

  public int alignment() {
    return alignment;
  }

  /** Offset of the tensor data section from the start of the file. */
  public long dataOffset() {
    return dataOffset;
  }

  public long fileSize() {
    return file.byteSize();
  }

  public Map<String, GgufValue> metadata() {
    return metadata;
  }

  public List<TensorInfo> tensors() {
    return tensors;
  }

  public TensorInfo tensor(String name) {
    return tensorsByName.get(name);
  }

  public boolean hasTensor(String name) {
    return tensorsByName.containsKey(name);
  }

  /** The bytes of a tensor, a slice of the file's memory map. */
  public MemorySegment tensorData(TensorInfo t) {
    return file.asSlice(dataOffset + t.offset(), t.byteSize());
  }

  /** The bytes of the tensor called {@code name}, failing with a clear message if it is absent. */
  public MemorySegment tensorData(String name) {
    return tensorData(requireTensor(name));
  }

  public TensorInfo requireTensor(String name) {
    TensorInfo t = tensorsByName.get(name);
    if (t == null) {
      throw new GgufFormatException(
          path + ": required tensor '" + SafeText.of(name) + "' is missing");
    }
    return t;
  }

  // ---- typed metadata access -------------------------------------------------------------

  public boolean has(String key) {
    return metadata.containsKey(key);
  }

  public GgufValue get(String key) {
    return metadata.get(key);
  }

  private GgufValue require(String key) {
    GgufValue v = metadata.get(key);
    if (v == null) {
      throw new GgufFormatException(path + ": required metadata key '" + key + "' is missing");
    }
    return v;
  }

  public String getString(String key) {
    GgufValue v = require(key);
    if (v.value() instanceof String s) {
      return s;
    }
    throw wrongType(key, "a string", v);
  }

  public String getString(String key, String defaultValue) {
    return has(key) ? getString(key) : defaultValue;
  }

  public long getLong(String key) {
    GgufValue v = require(key);
    if (v.value() instanceof Long l) {
      return l;
    }
    throw wrongType(key, "an integer", v);
  }

  public long getLong(String key, long defaultValue) {
    return has(key) ? getLong(key) : defaultValue;
  }

  public int getInt(String key) {
    long l = getLong(key);
    if (l < Integer.MIN_VALUE || l > Integer.MAX_VALUE) {
      String shown = get(key).type() == GgufValueType.UINT64 ? Long.toUnsignedString(l) : "" + l;
      throw new GgufFormatException(
          path + ": metadata '" + SafeText.of(key) + "' = " + shown + " is out of range");
    }
    return (int) l;
  }

  public int getInt(String key, int defaultValue) {
    return has(key) ? getInt(key) : defaultValue;
  }

  public double getDouble(String key) {
    GgufValue v = require(key);
    return switch (v.value()) {
      case Double d -> d;
      case Long l -> l;
      default -> throw wrongType(key, "a number", v);
    };
  }

  public double getDouble(String key, double defaultValue) {
    return has(key) ? getDouble(key) : defaultValue;
  }

  public boolean getBool(String key, boolean defaultValue) {
    if (!has(key)) {
      return defaultValue;
    }
    GgufValue v = require(key);
    if (v.value() instanceof Boolean b) {
      return b;
    }
    throw wrongType(key, "a boolean", v);
  }

  public String[] getStringArray(String key) {
    GgufValue v = require(key);
    if (v.value() instanceof String[] a) {
      return a;
    }
    throw wrongType(key, "an array of strings", v);
  }

  public long[] getLongArray(String key) {
    GgufValue v = require(key);
    if (v.value() instanceof long[] a) {
      return a;
    }
    throw wrongType(key, "an array of integers", v);
  }

  public double[] getDoubleArray(String key) {
    GgufValue v = require(key);
    if (v.value() instanceof double[] a) {
      return a;
    }
    throw wrongType(key, "an array of numbers", v);
  }

  private GgufFormatException wrongType(String key, String expected, GgufValue v) {
    return new GgufFormatException(
        path
            + ": metadata '"
            + SafeText.of(key)
            + "' should be "
            + expected
            + ", found "
            + v.type());
  }

  /** Reads a little-endian float at a byte offset of a segment (helper for kernels and tests). */
  public static float f32(MemorySegment s, long offset) {
    return s.get(LE_FLOAT, offset);
  }

  static final ValueLayout.OfFloat LE_FLOAT =
      ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

  @Override
  public void close() {
    if (arena != null) {
      arena.close();
    }
  }

  @Override
  public String toString() {
    return "GGUF v" + version + " " + path + " (" + tensors.size() + " tensors)";
  }
}
