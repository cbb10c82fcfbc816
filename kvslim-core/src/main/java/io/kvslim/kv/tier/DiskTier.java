package io.kvslim.kv.tier;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.channels.FileChannel;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.regex.Pattern;

/**
 * A KV tier on local disk ({@code --kv-tier disk:DIR}): one file per block, {@code DIR/KEY.kvb},
 * written and read through memory-mapped {@link MemorySegment}s (FFM, no {@code Unsafe}). A block
 * is written to a temporary file and renamed into place, so a reader never sees half a block;
 * several processes may share a directory. Writes are not synced (it is a cache: a block a crash
 * left torn fails its checksum and is recomputed).
 */
public final class DiskTier implements KvTier {
  private static final Pattern KEY = Pattern.compile("[A-Za-z0-9._-]{1,200}");

  private final Path dir;

  /**
   * A tier in {@code dir}, created if absent.
   *
   * @throws IllegalArgumentException if the directory cannot be created
   */
  public DiskTier(Path dir) {
    try {
      Files.createDirectories(dir);
    } catch (IOException e) {
      throw new IllegalArgumentException("cannot create the KV tier directory " + dir, e);
    }
    if (!Files.isDirectory(dir)) {
      throw new IllegalArgumentException("the KV tier path " + dir + " is not a directory");
    }
    this.dir = dir;
  }

  /** The tier's directory. */
  public Path dir() {
    return dir;
  }

  /** The file holding {@code key}'s block. */
  public Path file(String key) {
    if (!KEY.matcher(key).matches()) {
      throw new IllegalArgumentException("a disk tier key is 1..200 of [A-Za-z0-9._-]: " + key);
    }
    return dir.resolve(key + ".kvb");
  }

  @Override
  public String name() {
    return "disk:" + dir;
  }

  @Override
  public byte[] get(String key) {
    Path f = file(key);
    try (FileChannel ch = FileChannel.open(f, StandardOpenOption.READ);
        Arena arena = Arena.ofConfined()) {
      long size = ch.size();
      if (size > Integer.MAX_VALUE - 8) {
        return null; // not a block kvslim wrote: the caller finds it missing
      }
      MemorySegment map = ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
      return map.toArray(ValueLayout.JAVA_BYTE);
    } catch (NoSuchFileException e) {
      return null;
    } catch (IOException e) {
      throw new TierUnavailableException("cannot read " + f + ": " + e.getMessage(), e);
    }
  }

  @Override
  public boolean contains(String key) {
    return Files.isRegularFile(file(key));
  }

  @Override
  public void put(String key, byte[] value) {
    Path f = file(key);
    Path tmp = null;
    try {
      tmp = Files.createTempFile(dir, key, ".tmp");
      try (FileChannel ch =
              FileChannel.open(tmp, StandardOpenOption.READ, StandardOpenOption.WRITE);
          Arena arena = Arena.ofConfined()) {
        MemorySegment map = ch.map(FileChannel.MapMode.READ_WRITE, 0, value.length, arena);
        MemorySegment.copy(MemorySegment.ofArray(value), 0, map, 0, value.length);
      }
      try {
        Files.move(tmp, f, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
      } catch (AtomicMoveNotSupportedException e) {
        Files.move(tmp, f, StandardCopyOption.REPLACE_EXISTING);
      }
      tmp = null;
    } catch (IOException e) {
      throw new TierUnavailableException("cannot write " + f + ": " + e.getMessage(), e);
    } finally {
      if (tmp != null) {
        try {
          Files.deleteIfExists(tmp);
        } catch (IOException ignored) {
          // the temporary file stays; it is never read as a block
        }
      }
    }
  }

  @Override
  public void deleteAll(java.util.List<String> keys) {
    for (String k : keys) {
      Path f = file(k);
      try {
        Files.deleteIfExists(f);
      } catch (IOException e) {
        throw new TierUnavailableException("cannot delete " + f + ": " + e.getMessage(), e);
      }
    }
  }

  @Override
  public void close() {}
}
