package io.kvslim.gguf;

import static io.kvslim.gguf.GgufTestFiles.assertSameContent;
import static io.kvslim.gguf.GgufTestFiles.assertSameMetadata;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.SharedData;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class GgufWriterTest {
  @TempDir Path dir;

  private static GgufWriter everyValueType() {
    GgufWriter w = new GgufWriter();
    w.put("u8", GgufValue.scalar(GgufValueType.UINT8, 255L));
    w.put("i8", GgufValue.scalar(GgufValueType.INT8, -128L));
    w.put("u16", GgufValue.scalar(GgufValueType.UINT16, 65535L));
    w.put("i16", GgufValue.scalar(GgufValueType.INT16, -32768L));
    w.putUInt32("u32", 0xffffffffL);
    w.putInt32("i32", -7);
    w.putFloat32("f32", 0.1f);
    w.putBool("bool", true);
    w.putString("str", "h\u00e9llo \u2581 \ud83d\ude00");
    w.putString("empty", "");
    w.putUInt64("u64", -1L);
    w.put("i64", GgufValue.scalar(GgufValueType.INT64, Long.MIN_VALUE));
    w.putFloat64("f64", Math.PI);
    w.putArray("a.u8", GgufValueType.UINT8, new long[] {0, 1, 255});
    w.putArray("a.i8", GgufValueType.INT8, new long[] {-1, 127});
    w.putArray("a.u16", GgufValueType.UINT16, new long[] {65535});
    w.putArray("a.i16", GgufValueType.INT16, new long[] {-2, 3});
    w.putArray("a.u32", GgufValueType.UINT32, new long[] {4_000_000_000L, 1});
    w.putArray("a.i32", GgufValueType.INT32, new long[] {-5, 5});
    w.putArray("a.u64", GgufValueType.UINT64, new long[] {-1L});
    w.putArray("a.i64", GgufValueType.INT64, new long[] {Long.MAX_VALUE});
    w.putArray("a.f32", GgufValueType.FLOAT32, new double[] {1.5, -0.25, (double) 1e-7f});
    w.putArray("a.f64", GgufValueType.FLOAT64, new double[] {1e-300, Double.NaN});
    w.putArray("a.bool", GgufValueType.BOOL, new boolean[] {true, false});
    w.putArray("a.str", GgufValueType.STRING, new String[] {"a", "", "\u4e2d"});
    w.putArray("a.empty", GgufValueType.INT32, new long[0]);
    w.putArray(
        "a.nested",
        GgufValueType.ARRAY,
        new GgufValue[] {
          GgufValue.array(GgufValueType.UINT32, new long[] {1, 2}),
          GgufValue.array(
              GgufValueType.ARRAY,
              new GgufValue[] {GgufValue.array(GgufValueType.STRING, new String[] {"deep"})}),
          GgufValue.array(GgufValueType.FLOAT64, new double[0])
        });
    return w;
  }

  @ParameterizedTest
  @ValueSource(ints = {2, 3})
  void everyValueTypeRoundTripsWithItsType(int version) {
    GgufWriter w = everyValueType().version(version);
    Path out = dir.resolve("meta.gguf");
    w.write(out);
    try (GgufFile f = GgufFile.open(out)) {
      assertThat(f.version()).isEqualTo(version);
      assertSameMetadata(w.metadata(), f.metadata());
      assertThat(f.get("u32").type()).isEqualTo(GgufValueType.UINT32);
      assertThat(f.get("i32").type()).isEqualTo(GgufValueType.INT32);
      assertThat(f.get("f32").value()).isEqualTo((double) 0.1f);
      assertThat(f.tensors()).isEmpty();
    }
  }

  @Test
  void tensorsFromBytesSegmentsAndCallbacksRoundTripAligned() {
    GgufWriter w = new GgufWriter().alignment(64);
    byte[] a = new byte[4 * 3];
    a[0] = 1;
    a[11] = 2;
    byte[] b = new byte[34 * 2];
    for (int i = 0; i < b.length; i++) {
      b[i] = (byte) i;
    }
    try (Arena arena = Arena.ofConfined()) {
      MemorySegment seg = arena.allocate(2 * 40);
      for (int i = 0; i < 40; i++) {
        seg.setAtIndex(ValueLayout.JAVA_SHORT, i, (short) (i * 31));
      }
      w.addTensor("a", GgmlType.F32, new long[] {3}, a);
      w.addTensor("b", GgmlType.Q8_0, new long[] {32, 2}, b);
      w.addTensor("c", GgmlType.F16, new long[] {4, 5, 2}, seg);
      // a callback that writes in several small pieces
      w.addTensor(
          "d",
          GgmlType.I8,
          new long[] {100},
          sink -> {
            for (int i = 0; i < 10; i++) {
              byte[] piece = new byte[10];
              piece[0] = (byte) i;
              sink.write(piece);
            }
          });
      Path out = dir.resolve("t.gguf");
      w.write(out);
      try (GgufFile f = GgufFile.open(out)) {
        assertThat(f.alignment()).isEqualTo(64);
        assertThat(f.dataOffset() % 64).isZero();
        for (TensorInfo t : f.tensors()) {
          assertThat(t.offset() % 64).as(t.name()).isZero();
        }
        assertThat(f.tensor("b").offset()).isEqualTo(64);
        assertThat(f.tensorData("a").toArray(ValueLayout.JAVA_BYTE)).isEqualTo(a);
        assertThat(f.tensorData("b").toArray(ValueLayout.JAVA_BYTE)).isEqualTo(b);
        assertThat(f.tensorData("c").mismatch(seg)).isEqualTo(-1L);
        assertThat(f.tensor("c").dims()).containsExactly(4, 5, 2);
        assertThat(f.tensorData("d").get(ValueLayout.JAVA_BYTE, 90)).isEqualTo((byte) 9);
        assertThat(f.fileSize() % 64).isZero();
      }
    }
  }

  @Test
  void defaultAlignmentIs32AndNotWrittenAsMetadata() {
    Path out = dir.resolve("d.gguf");
    new GgufWriter()
        .addTensor("x", GgmlType.F32, new long[] {1}, new byte[4])
        .addTensor("y", GgmlType.F32, new long[] {1}, new byte[4])
        .write(out);
    try (GgufFile f = GgufFile.open(out)) {
      assertThat(f.has("general.alignment")).isFalse();
      assertThat(f.alignment()).isEqualTo(32);
      assertThat(f.tensor("y").offset()).isEqualTo(32);
    }
  }

  @Test
  void sourceWritingTheWrongSizeFailsAndLeavesNoFile() {
    Path out = dir.resolve("bad.gguf");
    GgufWriter w = new GgufWriter().addTensor("x", GgmlType.F32, new long[] {4}, new byte[12]);
    assertThatThrownBy(() -> w.write(out))
        .isInstanceOf(IllegalStateException.class)
        .hasMessageContaining("'x'")
        .hasMessageContaining("expected 16");
    assertThat(out).doesNotExist();
    assertThat(dir.resolve("bad.gguf.partial")).doesNotExist();
  }

  @Test
  void valuesThatDoNotFitTheirTypeAreRejected() {
    GgufWriter w = new GgufWriter();
    assertThatThrownBy(() -> w.put("k", GgufValue.scalar(GgufValueType.UINT8, 256L)))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("'k'");
    assertThatThrownBy(() -> w.putArray("k", GgufValueType.FLOAT32, new long[] {1}))
        .isInstanceOf(IllegalArgumentException.class);
    assertThatThrownBy(() -> w.alignment(48)).isInstanceOf(IllegalArgumentException.class);
    assertThatThrownBy(() -> w.addTensor("q", GgmlType.Q4_0, new long[] {30}, new byte[0]))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("multiple of 32");
    w.addTensor("t", GgmlType.F32, new long[] {1}, new byte[4]);
    assertThatThrownBy(() -> w.addTensor("t", GgmlType.F32, new long[] {1}, new byte[4]))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("duplicate");
  }

  @Test
  void rewritingASharedModelReadsBackIdentically() throws Exception {
    Path src = SharedData.model("llama-spm-q4_0.gguf");
    Path out = dir.resolve("copy.gguf");
    try (GgufFile f = GgufFile.open(src)) {
      GgufWriter w = new GgufWriter().version(f.version()).putAll(f.metadata());
      for (TensorInfo t : f.tensors()) {
        w.addTensor(t.name(), t.type(), t.dims(), f.tensorData(t));
      }
      w.write(out);
      try (GgufFile g = GgufFile.open(out)) {
        assertSameContent(f, g);
        assertThat(g.dataOffset()).isEqualTo(f.dataOffset());
        for (TensorInfo t : f.tensors()) {
          assertThat(g.tensor(t.name()).offset()).isEqualTo(t.offset());
        }
      }
    }
    // llama.cpp lays files out the same way, so the copy is byte-identical.
    assertThat(Files.mismatch(src, out)).isEqualTo(-1L);
  }

  @Test
  void smallModelHelperWritesAReadableFile() {
    Path out = dir.resolve("small.gguf");
    GgufTestFiles.writeSmallModel(out);
    try (GgufFile f = GgufFile.open(out)) {
      assertThat(f.tensors()).hasSize(3);
      assertThat(f.getStringArray("tokenizer.ggml.tokens")).hasSize(4);
      assertThat(Map.copyOf(f.metadata())).containsKey("test.nested");
    }
  }
}
