package io.kvslim.kv.store;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.CRC32C;

/**
 * The cold store of one cache's spilled blocks ({@link HeadStore#spill}): one temporary file,
 * written and read through memory-mapped {@link MemorySegment}s (FFM), grown a region at a time and
 * deleted by {@link #close}. Each block's key and value bytes are appended once, with a CRC32C of
 * them; {@link #read} copies them back into RAM and checks the checksum on the copy, so a byte the
 * file lost or changed is detected ({@link ColdStore.Corrupt}), never attended over.
 *
 * <p>Used from one thread at a time (the decode step's calling thread).
 */
public final class SpillFile implements ColdStore {
  /** Bytes mapped at a time (a block larger than this gets a region of its own). */
  static final long REGION_BYTES = 4L << 20;

  /** A slot's id: the region in the high bits, the offset in it in the low {@value} bits. */
  private static final int OFFSET_BITS = 40;

  private final Path file;
  private final FileChannel channel;
  private final Arena arena = Arena.ofShared();
  private final List<MemorySegment> regions = new ArrayList<>();
  private long fileBytes; // bytes of the file mapped so far
  private long used; // bytes written into the last region
  private long written;
  private boolean closed;

  /**
   * A new, empty spill file in {@code dir} (the system's temporary directory when null).
   *
   * @throws UncheckedIOException if the file cannot be created
   */
  public SpillFile(Path dir) {
    try {
      this.file =
          dir == null
              ? Files.createTempFile("kvslim-spill-", ".kvs")
              : Files.createTempFile(Files.createDirectories(dir), "kvslim-spill-", ".kvs");
      file.toFile().deleteOnExit(); // in case the cache is never closed
      this.channel =
          FileChannel.open(
              file, StandardOpenOption.READ, StandardOpenOption.WRITE, StandardOpenOption.SPARSE);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot create a KV spill file: " + e.getMessage(), e);
    }
  }

  /** The file (for tests and diagnostics). */
  public Path path() {
    return file;
  }

  @Override
  public String where() {
    return file.toString();
  }

  @Override
  public long bytesWritten() {
    return written;
  }

  /** Appends {@code keys} then {@code values}; returns where they are. */
  @Override
  public Slot write(MemorySegment keys, MemorySegment values) {
    check();
    long n = keys.byteSize() + values.byteSize();
    if (regions.isEmpty() || used + n > regions.getLast().byteSize()) {
      long size = Math.max(REGION_BYTES, n);
      try {
        regions.add(channel.map(FileChannel.MapMode.READ_WRITE, fileBytes, size, arena));
      } catch (IOException e) {
        throw new UncheckedIOException("cannot grow the KV spill file " + file, e);
      }
      fileBytes += size;
      used = 0;
    }
    MemorySegment region = regions.getLast();
    MemorySegment.copy(keys, 0, region, used, keys.byteSize());
    MemorySegment.copy(values, 0, region, used + keys.byteSize(), values.byteSize());
    CRC32C crc = new CRC32C();
    crc.update(region.asSlice(used, n).asByteBuffer());
    Slot s =
        new Slot(
            ((long) (regions.size() - 1) << OFFSET_BITS) | used,
            keys.byteSize(),
            values.byteSize(),
            (int) crc.getValue());
    used += n;
    written += n;
    return s;
  }

  /**
   * Copies the bytes at {@code s} into {@code keys} and {@code values} (of the slot's sizes) and
   * checks them against the checksum written with them.
   *
   * @throws ColdStore.Corrupt if they do not match (the copies then hold the bytes read, not to be
   *     used)
   */
  @Override
  public void read(Slot s, MemorySegment keys, MemorySegment values) {
    check();
    MemorySegment region = regions.get(region(s));
    MemorySegment.copy(region, offset(s), keys, 0, s.keyBytes());
    MemorySegment.copy(region, offset(s) + s.keyBytes(), values, 0, s.valueBytes());
    CRC32C crc = new CRC32C();
    update(crc, keys);
    update(crc, values);
    if ((int) crc.getValue() != s.crc()) {
      throw new Corrupt(
          "a spilled KV block failed its checksum ("
              + s.bytes()
              + " bytes at "
              + offsetInFile(s)
              + " of "
              + file
              + "): the spill file was changed; the sequence must be recomputed");
    }
  }

  @Override
  public boolean readsParts() {
    return true;
  }

  /** Copies bytes {@code [from, from + count)} of {@code s} into {@code dst}, unchecked. */
  @Override
  public void readPart(Slot s, long from, MemorySegment dst, long dstOffset, long count) {
    check();
    if (from < 0 || count < 0 || from + count > s.bytes()) {
      throw new IndexOutOfBoundsException(
          "bytes " + from + ".." + (from + count) + " of a spilled block of " + s.bytes());
    }
    MemorySegment.copy(regions.get(region(s)), offset(s) + from, dst, dstOffset, count);
  }

  private static int region(Slot s) {
    return (int) (s.id() >>> OFFSET_BITS);
  }

  private static long offset(Slot s) {
    return s.id() & ((1L << OFFSET_BITS) - 1);
  }

  private long offsetInFile(Slot s) {
    long at = 0;
    for (int r = 0; r < region(s); r++) {
      at += regions.get(r).byteSize();
    }
    return at + offset(s);
  }

  private static void update(CRC32C crc, MemorySegment m) {
    crc.update(m.asByteBuffer());
  }

  private void check() {
    if (closed) {
      throw new IllegalStateException("the KV spill file " + file + " is closed");
    }
  }

  /** Unmaps and deletes the file; later reads and writes fail. Closing twice does nothing. */
  @Override
  public void close() {
    if (closed) {
      return;
    }
    closed = true;
    regions.clear();
    try {
      arena.close();
      channel.close();
      Files.deleteIfExists(file);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot delete the KV spill file " + file, e);
    }
  }
}
