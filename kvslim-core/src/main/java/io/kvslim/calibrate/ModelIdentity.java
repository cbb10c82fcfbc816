package io.kvslim.calibrate;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Which model a calibration profile belongs to: its GGUF file (name and SHA-256) and its attention
 * shape. A profile records the identity of the model it was measured on, and a method refuses to
 * apply it to another (METHODS.md M9: artifacts are keyed by the SHA-256 of the GGUF file).
 *
 * <p>The hash is computed when first asked for and remembered per file (path, size and modification
 * time), so checking a profile costs one read of the model file per process.
 */
public final class ModelIdentity {
  private static final Map<String, String> HASHES = new ConcurrentHashMap<>();

  private final Path file; // null: the model was not loaded from a file
  private final int layers;
  private final int heads;
  private final int kvHeads;
  private final int headDim;

  public ModelIdentity(Path file, int layers, int heads, int kvHeads, int headDim) {
    this.file = file;
    this.layers = layers;
    this.heads = heads;
    this.kvHeads = kvHeads;
    this.headDim = headDim;
  }

  /** The file, or null for a model built in memory. */
  public Path file() {
    return file;
  }

  /** The file's name, or "(in memory)". */
  public String fileName() {
    return file == null ? "(in memory)" : file.getFileName().toString();
  }

  public int layers() {
    return layers;
  }

  public int heads() {
    return heads;
  }

  public int kvHeads() {
    return kvHeads;
  }

  public int headDim() {
    return headDim;
  }

  /** The SHA-256 of the model file in lower-case hex, or null for a model built in memory. */
  public String sha256() {
    if (file == null) {
      return null;
    }
    try {
      String key =
          file.toAbsolutePath().normalize()
              + "|"
              + Files.size(file)
              + "|"
              + Files.getLastModifiedTime(file).toMillis();
      return HASHES.computeIfAbsent(key, k -> sha256Of(file));
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read model file " + file, e);
    }
  }

  /** The shape in words, e.g. "6 layers, 4 heads, 2 KV heads of 64". */
  public String shape() {
    return shape(layers, heads, kvHeads, headDim);
  }

  static String shape(int layers, int heads, int kvHeads, int headDim) {
    return layers + " layers, " + heads + " heads, " + kvHeads + " KV heads of " + headDim;
  }

  /** SHA-256 of a file's bytes, lower-case hex. */
  public static String sha256Of(Path path) {
    try (InputStream in = Files.newInputStream(path)) {
      MessageDigest md = MessageDigest.getInstance("SHA-256");
      byte[] buf = new byte[1 << 16];
      for (int r; (r = in.read(buf)) > 0; ) {
        md.update(buf, 0, r);
      }
      return HexFormat.of().formatHex(md.digest());
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read " + path, e);
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  /** SHA-256 of bytes, lower-case hex. */
  public static String sha256Of(byte[] bytes) {
    try {
      return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }
}
