package io.kvslim.gguf;

import static org.assertj.core.api.Assertions.assertThat;

import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Map;

/** Helpers shared by the GGUF tests: deep comparison of files and a small writer-made model. */
final class GgufTestFiles {
  private GgufTestFiles() {}

  /** True when two metadata values have the same type(s) and the same content, deeply. */
  static boolean sameValue(GgufValue a, GgufValue b) {
    if (a.type() != b.type() || a.elementType() != b.elementType()) {
      return false;
    }
    return switch (a.value()) {
      case long[] x -> b.value() instanceof long[] y && Arrays.equals(x, y);
      case double[] x -> b.value() instanceof double[] y && Arrays.equals(x, y);
      case boolean[] x -> b.value() instanceof boolean[] y && Arrays.equals(x, y);
      case String[] x -> b.value() instanceof String[] y && Arrays.equals(x, y);
      case GgufValue[] x -> {
        if (!(b.value() instanceof GgufValue[] y) || x.length != y.length) {
          yield false;
        }
        for (int i = 0; i < x.length; i++) {
          if (!sameValue(x[i], y[i])) {
            yield false;
          }
        }
        yield true;
      }
      default -> a.value().equals(b.value());
    };
  }

  static void assertSameMetadata(Map<String, GgufValue> expected, Map<String, GgufValue> actual) {
    assertThat(actual.keySet()).containsExactlyElementsOf(expected.keySet());
    for (String key : expected.keySet()) {
      assertThat(sameValue(expected.get(key), actual.get(key)))
          .as("metadata '%s': expected %s, got %s", key, expected.get(key), actual.get(key))
          .isTrue();
    }
  }

  /** Asserts that two open files hold the same metadata, tensor infos and tensor bytes. */
  static void assertSameContent(GgufFile expected, GgufFile actual) {
    assertSameMetadata(expected.metadata(), actual.metadata());
    assertThat(actual.tensors()).hasSameSizeAs(expected.tensors());
    for (int i = 0; i < expected.tensors().size(); i++) {
      TensorInfo e = expected.tensors().get(i);
      TensorInfo a = actual.tensors().get(i);
      assertThat(a.name()).isEqualTo(e.name());
      assertThat(a.type()).isEqualTo(e.type());
      assertThat(a.dims()).isEqualTo(e.dims());
      MemorySegment ed = expected.tensorData(e);
      MemorySegment ad = actual.tensorData(a);
      assertThat(ad.mismatch(ed)).as("bytes of tensor '%s'", e.name()).isEqualTo(-1L);
    }
  }

  /** Writes a small model with a few tensors of different types and a varied header. */
  static void writeSmallModel(Path out) {
    GgufWriter w = new GgufWriter();
    w.putString("general.architecture", "llama");
    w.putString("general.name", "kvslim test \u00e9\u4e2d");
    w.putUInt32("llama.block_count", 1);
    w.putFloat32("llama.attention.layer_norm_rms_epsilon", 1e-5);
    w.putArray(
        "tokenizer.ggml.tokens", GgufValueType.STRING, new String[] {"<unk>", "a", "b", "\u2581c"});
    w.putArray("tokenizer.ggml.scores", GgufValueType.FLOAT32, new double[] {0, -1, -2, -3});
    w.putArray("tokenizer.ggml.token_type", GgufValueType.INT32, new long[] {2, 1, 1, 1});
    w.putArray(
        "test.nested",
        GgufValueType.ARRAY,
        new GgufValue[] {
          GgufValue.array(GgufValueType.UINT16, new long[] {1, 2, 65535}),
          GgufValue.array(GgufValueType.STRING, new String[] {"x", ""})
        });
    byte[] f32 = new byte[4 * 8 * 3];
    for (int i = 0; i < f32.length; i++) {
      f32[i] = (byte) (i * 7);
    }
    w.addTensor("a.weight", GgmlType.F32, new long[] {8, 3}, f32);
    byte[] q8 = new byte[34 * 2 * 2];
    for (int i = 0; i < q8.length; i++) {
      q8[i] = (byte) (i * 13 + 1);
    }
    w.addTensor("b.weight", GgmlType.Q8_0, new long[] {64, 2}, q8);
    byte[] f16 = new byte[2 * 5];
    w.addTensor("c.bias", GgmlType.F16, new long[] {5}, f16);
    w.write(out);
  }
}
