package io.kvslim.tokenizer;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/** Writes small metadata-only GGUF files (no tensors) for tokenizer tests. */
final class TinyGguf {
  private final Map<String, Object> metadata = new LinkedHashMap<>();

  /** Values: String, String[], Integer (uint32), Boolean, float[] or int[] (int32 array). */
  TinyGguf put(String key, Object value) {
    metadata.put(key, value);
    return this;
  }

  Path write(Path dir, String name) throws IOException {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    out.writeBytes("GGUF".getBytes(StandardCharsets.US_ASCII));
    u32(out, 3);
    u64(out, 0);
    u64(out, metadata.size());
    for (Map.Entry<String, Object> e : metadata.entrySet()) {
      string(out, e.getKey());
      switch (e.getValue()) {
        case String s -> {
          u32(out, 8);
          string(out, s);
        }
        case Integer i -> {
          u32(out, 4);
          u32(out, i);
        }
        case Boolean b -> {
          u32(out, 7);
          out.write(b ? 1 : 0);
        }
        case String[] a -> {
          u32(out, 9);
          u32(out, 8);
          u64(out, a.length);
          for (String s : a) {
            string(out, s);
          }
        }
        case float[] a -> {
          u32(out, 9);
          u32(out, 6);
          u64(out, a.length);
          for (float f : a) {
            u32(out, Float.floatToIntBits(f));
          }
        }
        case int[] a -> {
          u32(out, 9);
          u32(out, 5);
          u64(out, a.length);
          for (int v : a) {
            u32(out, v);
          }
        }
        default -> throw new IllegalArgumentException("unsupported value " + e.getValue());
      }
    }
    Path file = dir.resolve(name);
    Files.write(file, out.toByteArray());
    return file;
  }

  private static void u32(ByteArrayOutputStream out, int v) {
    out.writeBytes(ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(v).array());
  }

  private static void u64(ByteArrayOutputStream out, long v) {
    out.writeBytes(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(v).array());
  }

  private static void string(ByteArrayOutputStream out, String s) {
    byte[] b = s.getBytes(StandardCharsets.UTF_8);
    u64(out, b.length);
    out.writeBytes(b);
  }
}
