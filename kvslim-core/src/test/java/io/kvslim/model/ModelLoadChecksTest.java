package io.kvslim.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.TinyModel;
import io.kvslim.gguf.GgmlType;
import io.kvslim.gguf.GgufFile;
import io.kvslim.gguf.GgufFormatException;
import io.kvslim.gguf.GgufValue;
import io.kvslim.gguf.GgufValueType;
import io.kvslim.gguf.GgufWriter;
import io.kvslim.gguf.TensorInfo;
import io.kvslim.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * What the loader refuses (values that can only give NaN or a crash later) and what it loads with
 * one warning line per tensor (NaN weights, out-of-range special tokens).
 */
class ModelLoadChecksTest {
  @TempDir Path dir;

  private Path write(String name, Consumer<GgufWriter> change) {
    GgufWriter w = TinyModel.writer(GgmlType.F32, 32, Map.of());
    change.accept(w);
    Path p = dir.resolve(name);
    w.write(p);
    return p;
  }

  @Test
  void theTinyModelLoadsWithoutWarnings() {
    List<String> warnings = new ArrayList<>();
    try (Model m = Model.of(GgufFile.open(write("ok.gguf", w -> {}), warnings::add))) {
      Tokenizer.fromGguf(m.file());
      assertThat(m.config().ropeDims()).isEqualTo(TinyModel.HEAD_DIM);
    }
    assertThat(warnings).isEmpty();
  }

  @Test
  void negativeRopeDimensionCountIsRefused() {
    Path p =
        write(
            "rope.gguf",
            w -> w.put("llama.rope.dimension_count", GgufValue.scalar(GgufValueType.INT32, -2L)));
    assertThatThrownBy(() -> Model.load(p).close())
        .isInstanceOf(GgufFormatException.class)
        .hasMessageContaining("rope.dimension_count -2");
  }

  @Test
  void nanInfiniteZeroOrNegativeEpsilonAndFreqBaseAreRefused() {
    int i = 0;
    for (String key : List.of("attention.layer_norm_rms_epsilon", "rope.freq_base")) {
      for (double v : new double[] {Double.NaN, Double.POSITIVE_INFINITY, 0, -1, 1e-60}) {
        Path p = write("f" + i++ + ".gguf", w -> w.putFloat32("llama." + key, v));
        assertThatThrownBy(() -> Model.load(p).close())
            .as("%s = %s", key, v)
            .isInstanceOf(GgufFormatException.class)
            .hasMessageContaining("'llama." + key + "'")
            .hasMessageContaining("must be a positive finite number");
      }
    }
  }

  @Test
  void nanNormWeightsGiveOneWarningPerTensor() {
    float[] norm = new float[TinyModel.DIM];
    java.util.Arrays.fill(norm, 1f);
    norm[3] = Float.NaN;
    norm[7] = Float.POSITIVE_INFINITY;
    GgufWriter w =
        TinyModel.writer(GgmlType.F32, 32, Map.of("blk.0.ffn_norm.weight", norm.clone()));
    Path p = dir.resolve("nan-norm.gguf");
    w.write(p);
    List<String> warnings = new ArrayList<>();
    try (Model m = Model.of(GgufFile.open(p, warnings::add))) {
      assertThat(m.config().dim()).isEqualTo(TinyModel.DIM);
    }
    assertThat(warnings)
        .singleElement()
        .asString()
        .contains(p.toString())
        .contains("'blk.0.ffn_norm.weight' has 2 of 32 values NaN or infinite");
  }

  @Test
  void nanOrInfiniteBlockScalesGiveOneWarningPerTensor() throws IOException {
    Path p = dir.resolve("nan-scale.gguf");
    TinyModel.writer(GgmlType.Q8_0, 32, Map.of()).write(p);
    long start;
    long blocks;
    try (GgufFile f = GgufFile.open(p)) {
      TensorInfo t = f.requireTensor("blk.0.ffn_up.weight");
      start = f.dataOffset() + t.offset();
      blocks = t.byteSize() / GgmlType.Q8_0.typeSize();
    }
    byte[] bytes = Files.readAllBytes(p);
    ByteBuffer b = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
    b.putShort((int) start, (short) 0x7e00); // d of block 0: NaN
    b.putShort((int) start + 3 * GgmlType.Q8_0.typeSize(), (short) 0x7c00); // block 3: +inf
    Files.write(p, bytes);
    List<String> warnings = new ArrayList<>();
    try (Model m = Model.of(GgufFile.open(p, warnings::add))) {
      assertThat(m.layer(0).up().rows()).isEqualTo(TinyModel.FFN);
    }
    assertThat(warnings)
        .singleElement()
        .asString()
        .contains("'blk.0.ffn_up.weight' (Q8_0) has 2 of " + blocks + " block scales NaN");
  }

  @Test
  void outOfRangeSpecialTokenIdsWarnAndFallBackToTheDefault() {
    Path p =
        write(
            "bos.gguf",
            w -> {
              w.putUInt32("tokenizer.ggml.bos_token_id", 999);
              w.putUInt32("tokenizer.ggml.eos_token_id", 4_000_000_000L);
            });
    List<String> warnings = new ArrayList<>();
    try (GgufFile f = GgufFile.open(p, warnings::add)) {
      Tokenizer tok = Tokenizer.fromGguf(f);
      assertThat(tok.bos()).isEqualTo(1);
      assertThat(tok.eos()).isEqualTo(2);
    }
    assertThat(warnings)
        .containsExactly(
            p
                + ": metadata 'tokenizer.ggml.bos_token_id' = 999 is outside the vocabulary of 56"
                + " tokens; using the default id 1",
            p
                + ": metadata 'tokenizer.ggml.eos_token_id' = 4000000000 is outside the"
                + " vocabulary of 56 tokens; using the default id 2");
  }
}
