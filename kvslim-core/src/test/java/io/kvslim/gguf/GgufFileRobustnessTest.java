package io.kvslim.gguf;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Malformed GGUF input of every kind must end in a {@link GgufFormatException} naming the file. */
class GgufFileRobustnessTest {
  @TempDir Path dir;

  /** A little-endian byte builder for hand-made headers. */
  private static final class Raw {
    private final ByteArrayOutputStream out = new ByteArrayOutputStream();

    Raw u32(long v) {
      ByteBuffer b = ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt((int) v);
      out.writeBytes(b.array());
      return this;
    }

    Raw u64(long v) {
      ByteBuffer b = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(v);
      out.writeBytes(b.array());
      return this;
    }

    Raw bytes(byte... b) {
      out.writeBytes(b);
      return this;
    }

    Raw str(String s) {
      byte[] b = s.getBytes(StandardCharsets.UTF_8);
      return u64(b.length).bytes(b);
    }

    Raw header(int version, long tensors, long kvs) {
      return u32(GgufFile.MAGIC).u32(version).u64(tensors).u64(kvs);
    }

    /** A one-dimension tensor info. */
    Raw tensor(String name, long dim, int type, long offset) {
      return str(name).u32(1).u64(dim).u32(type).u64(offset);
    }

    Raw padTo(int alignment) {
      while (out.size() % alignment != 0) {
        out.write(0);
      }
      return this;
    }

    Raw zeros(int n) {
      return bytes(new byte[n]);
    }

    byte[] toBytes() {
      return out.toByteArray();
    }
  }

  private Path file(String name, byte[] bytes) throws IOException {
    Path p = dir.resolve(name);
    Files.write(p, bytes);
    return p;
  }

  private void assertRejected(Path p, String... words) {
    var thrown =
        assertThatThrownBy(() -> GgufFile.open(p).close())
            .isInstanceOf(GgufFormatException.class)
            .hasMessageContaining(p.toString());
    for (String w : words) {
      thrown.hasMessageContaining(w);
    }
  }

  private void assertRejected(String name, Raw raw, String... words) throws IOException {
    assertRejected(file(name, raw.toBytes()), words);
  }

  @Test
  void aValidHandMadeFileOpens() throws IOException {
    Path p =
        file(
            "ok.gguf",
            new Raw()
                .header(3, 1, 1)
                .str("k")
                .u32(GgufValueType.UINT32.id())
                .u32(7)
                .tensor("t", 4, GgmlType.F32.id(), 0)
                .padTo(32)
                .zeros(16)
                .toBytes());
    try (GgufFile f = GgufFile.open(p)) {
      assertThat(f.getInt("k")).isEqualTo(7);
      assertThat(f.tensorData("t").byteSize()).isEqualTo(16);
    }
  }

  @Test
  void everyTruncationOfAValidFileIsRejected() throws IOException {
    Path full = dir.resolve("full.gguf");
    GgufTestFiles.writeSmallModel(full);
    byte[] bytes = Files.readAllBytes(full);
    long lastTensorEnd;
    try (GgufFile f = GgufFile.open(full)) {
      lastTensorEnd = 0;
      for (TensorInfo t : f.tensors()) {
        lastTensorEnd = Math.max(lastTensorEnd, f.dataOffset() + t.offset() + t.byteSize());
      }
    }
    Path cut = dir.resolve("cut.gguf");
    for (int len = 0; len < bytes.length; len++) {
      Files.write(cut, Arrays.copyOf(bytes, len));
      if (len < lastTensorEnd) {
        assertRejected(cut);
      } else {
        GgufFile.open(cut).close(); // only trailing padding is missing
      }
    }
  }

  @Test
  void emptyFileIsRejected() throws IOException {
    assertRejected(file("empty.gguf", new byte[0]), "truncated");
  }

  @Test
  void wrongMagicIsRejected() throws IOException {
    assertRejected(
        "magic.gguf", new Raw().bytes("GGML".getBytes()).u32(3).u64(0).u64(0), "not a GGUF file");
  }

  @Test
  void unsupportedVersionsAreRejected() throws IOException {
    assertRejected("v1.gguf", new Raw().header(1, 0, 0), "unsupported GGUF version 1");
    assertRejected("v4.gguf", new Raw().header(4, 0, 0), "unsupported GGUF version 4");
  }

  @Test
  void absurdCountsAreRejected() throws IOException {
    assertRejected("tensors.gguf", new Raw().header(3, 1L << 40, 0), "absurd number of tensors");
    assertRejected("kvs.gguf", new Raw().header(3, 0, -1L), "absurd number of metadata");
    assertRejected(
        "array.gguf",
        new Raw()
            .header(3, 0, 1)
            .str("a")
            .u32(GgufValueType.ARRAY.id())
            .u32(GgufValueType.UINT8.id())
            .u64(1L << 50),
        "absurd number of elements in array 'a'");
    assertRejected(
        "strarray.gguf",
        new Raw()
            .header(3, 0, 1)
            .str("a")
            .u32(GgufValueType.ARRAY.id())
            .u32(GgufValueType.STRING.id())
            .u64(-2L),
        "absurd number of elements");
  }

  @Test
  void absurdStringLengthsAreRejected() throws IOException {
    assertRejected(
        "key.gguf",
        new Raw().header(3, 0, 1).u64(1L << 62).bytes("k".getBytes()).zeros(16),
        "string length");
    assertRejected(
        "value.gguf",
        new Raw().header(3, 0, 1).str("k").u32(GgufValueType.STRING.id()).u64(-1L),
        "string length",
        "'k'");
  }

  @Test
  void absurdDimensionsAreRejected() throws IOException {
    assertRejected(
        "dim.gguf",
        new Raw().header(3, 1, 0).str("t").u32(1).u64(1L << 50).u32(0).u64(0),
        "absurd dimension");
    assertRejected(
        "ndims.gguf", new Raw().header(3, 1, 0).str("t").u32(5).zeros(64), "'t' has 5 dimensions");
    assertRejected(
        "zerodim.gguf", new Raw().header(3, 1, 0).str("t").u32(1).u64(0).u32(0).u64(0), "absurd");
    assertRejected(
        "overflow.gguf",
        new Raw().header(3, 1, 0).str("t").u32(2).u64(1L << 40).u64(1L << 40).u32(0).u64(0),
        "64 bits");
    assertRejected(
        "bytesoverflow.gguf",
        new Raw().header(3, 1, 0).str("t").u32(2).u64(1L << 40).u64(1L << 21).u32(0).u64(0),
        "64 bits");
  }

  @Test
  void tensorDataPastTheEndIsRejected() throws IOException {
    assertRejected(
        "past.gguf",
        new Raw().header(3, 1, 0).tensor("t", 8, GgmlType.F32.id(), 32).padTo(32).zeros(32),
        "'t'",
        "past the end");
    assertRejected(
        "hugeoffset.gguf",
        new Raw().header(3, 1, 0).tensor("t", 8, GgmlType.F32.id(), -32L).padTo(32).zeros(32),
        "offset");
  }

  @Test
  void misalignedOffsetIsRejected() throws IOException {
    assertRejected(
        "misaligned.gguf",
        new Raw().header(3, 1, 0).tensor("t", 1, GgmlType.F32.id(), 4).padTo(32).zeros(64),
        "not aligned to 32");
  }

  @Test
  void badAlignmentIsRejected() throws IOException {
    assertRejected(
        "align.gguf",
        new Raw().header(3, 0, 1).str("general.alignment").u32(GgufValueType.UINT32.id()).u32(24),
        "power of two");
  }

  @Test
  void invalidUtf8IsRejected() throws IOException {
    byte[] bad = {'a', (byte) 0xc3, 'b'};
    assertRejected(
        "utf8key.gguf",
        new Raw().header(3, 0, 1).u64(3).bytes(bad).u32(7).bytes((byte) 1),
        "UTF-8");
    assertRejected(
        "utf8value.gguf",
        new Raw().header(3, 0, 1).str("k").u32(GgufValueType.STRING.id()).u64(3).bytes(bad),
        "UTF-8");
    byte[] surrogate = {(byte) 0xed, (byte) 0xa0, (byte) 0x80};
    assertRejected(
        "utf8tensor.gguf",
        new Raw().header(3, 1, 0).u64(3).bytes(surrogate).u32(1).u64(1).u32(0).u64(0).zeros(32),
        "UTF-8");
  }

  @Test
  void unknownTypesAreRejected() throws IOException {
    assertRejected(
        "valuetype.gguf",
        new Raw().header(3, 0, 1).str("k").u32(99).u32(0),
        "'k' has unknown value type 99");
    assertRejected(
        "elemtype.gguf",
        new Raw().header(3, 0, 1).str("k").u32(GgufValueType.ARRAY.id()).u32(13).u64(0),
        "unknown element type 13");
    assertRejected(
        "tensortype.gguf",
        new Raw().header(3, 1, 0).tensor("t", 32, 99, 0).padTo(32).zeros(256),
        "'t' has unsupported type id 99");
    assertRejected(
        "bool.gguf",
        new Raw().header(3, 0, 1).str("k").u32(GgufValueType.BOOL.id()).bytes((byte) 2),
        "bool");
  }

  @Test
  void deeplyNestedArraysAreRejected() throws IOException {
    Raw r = new Raw().header(3, 0, 1).str("k").u32(GgufValueType.ARRAY.id());
    for (int i = 0; i < 20; i++) {
      r.u32(GgufValueType.ARRAY.id()).u64(1);
    }
    r.u32(GgufValueType.UINT8.id()).u64(0).zeros(64);
    assertRejected("nested.gguf", r, "nests arrays");
  }

  @Test
  void duplicatesAreRejected() throws IOException {
    assertRejected(
        "dupkey.gguf",
        new Raw()
            .header(3, 0, 2)
            .str("k")
            .u32(GgufValueType.UINT8.id())
            .bytes((byte) 1)
            .str("k")
            .u32(GgufValueType.UINT8.id())
            .bytes((byte) 2),
        "duplicate metadata key 'k'");
    assertRejected(
        "duptensor.gguf",
        new Raw().header(3, 2, 0).tensor("t", 1, 0, 0).tensor("t", 1, 0, 32).padTo(32).zeros(64),
        "duplicate tensor name 't'");
  }

  @Test
  void tensorDataMustFollowInOrderWithoutOverlapOrGap() throws IOException {
    int f32 = GgmlType.F32.id();
    // two tensors of 8 floats (32 bytes): the second must start at 32, as llama.cpp requires
    Path ok =
        file(
            "inorder.gguf",
            new Raw()
                .header(3, 2, 0)
                .tensor("a", 8, f32, 0)
                .tensor("b", 8, f32, 32)
                .padTo(32)
                .zeros(64)
                .toBytes());
    GgufFile.open(ok).close();
    assertRejected(
        "overlap.gguf",
        new Raw().header(3, 2, 0).tensor("a", 8, f32, 0).tensor("b", 8, f32, 0).padTo(32).zeros(64),
        "'b' data starts at offset 0, expected 32");
    assertRejected(
        "order.gguf",
        new Raw()
            .header(3, 2, 0)
            .tensor("a", 8, f32, 32)
            .tensor("b", 8, f32, 0)
            .padTo(32)
            .zeros(64),
        "'a' data starts at offset 32, expected 0");
    assertRejected(
        "gap.gguf",
        new Raw()
            .header(3, 2, 0)
            .tensor("a", 8, f32, 0)
            .tensor("b", 8, f32, 64)
            .padTo(32)
            .zeros(96),
        "'b' data starts at offset 64, expected 32");
  }

  @Test
  void unsigned32BitFieldsAreReportedUnsigned() throws IOException {
    assertRejected("v-1.gguf", new Raw().header(-1, 0, 0), "unsupported GGUF version 4294967295");
    assertRejected(
        "valuetype-2.gguf",
        new Raw().header(3, 0, 1).str("k").u32(-2).u32(0),
        "'k' has unknown value type 4294967294");
    assertRejected(
        "elemtype-1.gguf",
        new Raw().header(3, 0, 1).str("k").u32(GgufValueType.ARRAY.id()).u32(-1).u64(0),
        "unknown element type 4294967295");
    assertRejected(
        "ndims-1.gguf",
        new Raw().header(3, 1, 0).str("t").u32(-1).zeros(64),
        "'t' has 4294967295 dimensions");
    assertRejected(
        "tensortype-min.gguf",
        new Raw().header(3, 1, 0).tensor("t", 32, Integer.MIN_VALUE, 0).padTo(32).zeros(256),
        "'t' has unsupported type id 2147483648");
  }

  @Test
  void controlCharactersFromTheFileAreEscapedInMessages() throws IOException {
    String evil = "a\u0000b\u001b[2J\nc\u202e";
    Path tensors =
        file(
            "evilname.gguf",
            new Raw()
                .header(3, 2, 0)
                .tensor(evil, 1, 0, 0)
                .tensor(evil, 1, 0, 32)
                .padTo(32)
                .zeros(64)
                .toBytes());
    Path keys =
        file(
            "evilkey.gguf",
            new Raw()
                .header(3, 0, 2)
                .str(evil)
                .u32(GgufValueType.UINT8.id())
                .bytes((byte) 1)
                .str(evil)
                .u32(GgufValueType.UINT8.id())
                .bytes((byte) 2)
                .toBytes());
    for (Path p : new Path[] {tensors, keys}) {
      assertThatThrownBy(() -> GgufFile.open(p).close())
          .isInstanceOf(GgufFormatException.class)
          .hasMessageContaining("'a\\x00b\\x1b[2J\\x0ac\\u202e'")
          .satisfies(
              e ->
                  assertThat(e.getMessage().chars().filter(c -> c < 0x20 || c == 0x202e))
                      .isEmpty());
    }
  }

  @Test
  void missingPathAndDirectoryAreRejected() {
    assertRejected(dir.resolve("nope.gguf"), "no such file");
    assertRejected(dir, "directory");
  }

  @Test
  void wrongMetadataTypeIsReportedByTypedGetters() throws IOException {
    Path p =
        file(
            "typed.gguf",
            new Raw().header(3, 0, 1).str("k").u32(GgufValueType.STRING.id()).str("x").toBytes());
    try (GgufFile f = GgufFile.open(p)) {
      assertThatThrownBy(() -> f.getLong("k"))
          .isInstanceOf(GgufFormatException.class)
          .hasMessageContaining(p.toString())
          .hasMessageContaining("'k'");
      assertThatThrownBy(() -> f.getString("missing"))
          .isInstanceOf(GgufFormatException.class)
          .hasMessageContaining("missing");
    }
  }
}
