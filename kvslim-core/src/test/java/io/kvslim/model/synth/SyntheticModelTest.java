package io.kvslim.model.synth;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.data.Percentage.withPercentage;

import io.kvslim.SharedData;
import io.kvslim.gguf.GgmlType;
import io.kvslim.gguf.GgufFile;
import io.kvslim.gguf.GgufValueType;
import io.kvslim.gguf.TensorInfo;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SyntheticModelTest {
  @TempDir Path dir;

  private static final SyntheticVocabulary GENERATED = SyntheticVocabulary.generated(8192);

  @Test
  void tinyModelHasLlamaCppMetadataAndTensorNames() throws Exception {
    Path out = dir.resolve("tiny.gguf");
    SyntheticShape s = SyntheticShape.TINY;
    SyntheticModel.Summary sum = SyntheticModel.write(s, GgmlType.Q4_0, 1, GENERATED, out);
    assertThat(sum.parameters()).isBetween(6_000_000L, 8_000_000L);
    try (GgufFile f = GgufFile.open(out)) {
      assertThat(f.getString("general.architecture")).isEqualTo("llama");
      assertThat(f.getInt("llama.embedding_length")).isEqualTo(256);
      assertThat(f.getInt("llama.block_count")).isEqualTo(4);
      assertThat(f.getInt("llama.feed_forward_length")).isEqualTo(768);
      assertThat(f.getInt("llama.attention.head_count")).isEqualTo(8);
      assertThat(f.getInt("llama.attention.head_count_kv")).isEqualTo(4);
      assertThat(f.getInt("llama.rope.dimension_count")).isEqualTo(32);
      assertThat(f.getInt("llama.context_length")).isEqualTo(2048);
      assertThat(f.getInt("llama.vocab_size")).isEqualTo(8192);
      assertThat(f.getDouble("llama.rope.freq_base")).isEqualTo(10000);
      assertThat(f.get("llama.attention.layer_norm_rms_epsilon").type())
          .isEqualTo(GgufValueType.FLOAT32);
      assertThat(f.get("llama.block_count").type()).isEqualTo(GgufValueType.UINT32);
      assertThat(f.getInt("general.file_type")).isEqualTo(2);
      assertThat(f.getString("tokenizer.ggml.model")).isEqualTo("llama");
      assertThat(f.getStringArray("tokenizer.ggml.tokens")).hasSize(8192);
      assertThat(f.getDoubleArray("tokenizer.ggml.scores")).hasSize(8192);
      assertThat(f.getLongArray("tokenizer.ggml.token_type")).hasSize(8192);
      assertThat(f.getInt("tokenizer.ggml.bos_token_id")).isEqualTo(1);
      assertThat(f.getInt("tokenizer.ggml.eos_token_id")).isEqualTo(2);
      assertThat(f.getInt("tokenizer.ggml.unknown_token_id")).isEqualTo(0);

      assertThat(f.tensors()).hasSize(2 + 4 * 9 + 1);
      assertThat(f.tensor("token_embd.weight").dims()).containsExactly(256, 8192);
      assertThat(f.tensor("token_embd.weight").type()).isEqualTo(GgmlType.Q4_0);
      assertThat(f.tensor("output.weight").dims()).containsExactly(256, 8192);
      assertThat(f.tensor("output_norm.weight").type()).isEqualTo(GgmlType.F32);
      for (int l = 0; l < 4; l++) {
        String p = "blk." + l + ".";
        assertThat(f.tensor(p + "attn_q.weight").dims()).containsExactly(256, 256);
        assertThat(f.tensor(p + "attn_k.weight").dims()).containsExactly(256, 128);
        assertThat(f.tensor(p + "attn_v.weight").dims()).containsExactly(256, 128);
        assertThat(f.tensor(p + "attn_output.weight").dims()).containsExactly(256, 256);
        assertThat(f.tensor(p + "ffn_gate.weight").dims()).containsExactly(256, 768);
        assertThat(f.tensor(p + "ffn_up.weight").dims()).containsExactly(256, 768);
        assertThat(f.tensor(p + "ffn_down.weight").dims()).containsExactly(768, 256);
        for (String norm : List.of("attn_norm.weight", "ffn_norm.weight")) {
          TensorInfo t = f.tensor(p + norm);
          assertThat(t.type()).isEqualTo(GgmlType.F32);
          assertThat(t.dims()).containsExactly(256);
          assertThat(GgufFile.f32(f.tensorData(t), 4 * 17)).isEqualTo(1f);
        }
      }
      long params = 0;
      for (TensorInfo t : f.tensors()) {
        params += t.elementCount();
      }
      assertThat(params).isEqualTo(sum.parameters());
      assertThat(Files.size(out)).isEqualTo(sum.bytes());
    }
  }

  @Test
  void sameSeedGivesIdenticalFilesAndOtherSeedsDiffer() throws Exception {
    Path a = dir.resolve("a.gguf");
    Path b = dir.resolve("b.gguf");
    Path c = dir.resolve("c.gguf");
    SyntheticModel.write(SyntheticShape.TINY, GgmlType.Q4_0, 7, GENERATED, a);
    SyntheticModel.write(SyntheticShape.TINY, GgmlType.Q4_0, 7, GENERATED, b);
    SyntheticModel.write(SyntheticShape.TINY, GgmlType.Q4_0, 8, GENERATED, c);
    assertThat(Files.mismatch(a, b)).isEqualTo(-1L);
    assertThat(Files.mismatch(a, c)).isNotEqualTo(-1L);
  }

  @Test
  void weightsHaveTheIntendedScale() {
    Path out = dir.resolve("f32.gguf");
    SyntheticModel.write(SyntheticShape.TINY, GgmlType.F32, 3, GENERATED, out);
    try (GgufFile f = GgufFile.open(out)) {
      assertStd(f.tensorData("blk.0.attn_q.weight"), 1 / Math.sqrt(256));
      assertStd(f.tensorData("blk.1.ffn_down.weight"), 1 / Math.sqrt(768));
      assertStd(f.tensorData("output.weight"), 2 / Math.sqrt(256));
    }
  }

  private static void assertStd(MemorySegment s, double expected) {
    float[] x = s.toArray(ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN));
    double sum = 0;
    double sq = 0;
    for (float v : x) {
      sum += v;
      sq += v * v;
    }
    double mean = sum / x.length;
    double std = Math.sqrt(sq / x.length - mean * mean);
    assertThat(Math.abs(mean)).isLessThan(expected * 0.05);
    assertThat(std).isCloseTo(expected, withPercentage(3));
  }

  @Test
  void vocabularyFromAFileKeepsItsFirstTokens() {
    Path file = SharedData.require().resolve("tokenizers/ggml-vocab-llama-spm.gguf");
    SyntheticVocabulary v = SyntheticVocabulary.fromFile(file, 8192);
    assertThat(v.size()).isEqualTo(8192);
    assertThat(v.description()).contains("first 8192 of 32000");
    try (GgufFile f = GgufFile.open(file)) {
      String[] all = f.getStringArray("tokenizer.ggml.tokens");
      String[] kept = (String[]) v.metadata().get("tokenizer.ggml.tokens").value();
      assertThat(kept).containsExactly(Arrays.copyOf(all, 8192));
      assertThat(v.metadata().get("tokenizer.ggml.token_type").elementType())
          .isEqualTo(f.get("tokenizer.ggml.token_type").elementType());
    }
  }

  @Test
  void generatedVocabularyHasSpecialsBytesAndUniquePieces() {
    String[] tokens = (String[]) GENERATED.metadata().get("tokenizer.ggml.tokens").value();
    long[] types = (long[]) GENERATED.metadata().get("tokenizer.ggml.token_type").value();
    assertThat(tokens[1]).isEqualTo("<s>");
    assertThat(tokens[3]).isEqualTo("<0x00>");
    assertThat(tokens[258]).isEqualTo("<0xFF>");
    assertThat(types[3]).isEqualTo(6);
    Set<String> unique = new HashSet<>(List.of(tokens));
    assertThat(unique).hasSize(8192);
  }

  @Test
  void badRequestsAreRejected() {
    assertThatThrownBy(() -> SyntheticShape.byName("huge"))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("tiny");
    assertThatThrownBy(
            () ->
                SyntheticModel.write(
                    SyntheticShape.LLAMA_1B, GgmlType.Q8_0, 1, GENERATED, dir.resolve("x.gguf")))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("32000");
    assertThatThrownBy(
            () ->
                SyntheticModel.write(
                    SyntheticShape.TINY, GgmlType.Q6_K, 1, GENERATED, dir.resolve("x.gguf")))
        .isInstanceOf(IllegalArgumentException.class);
  }
}
