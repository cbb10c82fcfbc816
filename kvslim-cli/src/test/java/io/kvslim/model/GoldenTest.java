package io.kvslim.model;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.kvslim.SharedData;
import io.kvslim.bench.PerplexityEvaluator;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.gguf.GgmlType;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The forward pass against llama.cpp's goldens (F32 KV cache cases, one prefill of the whole text,
 * as llama.cpp's goldens were computed).
 *
 * <p>With llama.cpp's numerics ({@link Numerics#LLAMA_CPP}) kvslim computes what the goldens'
 * llama.cpp build (x86-64, AVX-512, no flash attention) computes, bit for bit, for every model and
 * text: activations converted to Q8_0/Q8_1/Q8_K blocks (F16 for F16 weights) with llama.cpp's block
 * dot products and accumulation order, F32 and F16 products in tinyBLAS's or {@code ggml_vec_dot}'s
 * order, attention in {@code KQ}/{@code soft_max}/{@code KQV}'s order, RoPE with glibc's {@code
 * sincosf}, SiLU with ggml's vector {@code expf}. So the logits equal the golden logits exactly,
 * and the per-token NLL equals the golden NLL up to the 6 decimals the NLL files keep. The issue's
 * bounds (mean |dNLL| <= 1e-2, same argmax at >= 99% of positions) are asserted too; argmax only
 * where golden logits exist (the short texts).
 *
 * <p>kvslim's default numerics (F32 activations, its own attention order) are checked on the
 * F32-weight models, within 1e-3 on NLL and logits. (With quantized weights the default path
 * differs from llama.cpp by its 8-bit activations, mean |dNLL| ~0.05 on these random-weight
 * models.)
 */
class GoldenTest {

  static Stream<Arguments> cases() throws IOException {
    if (!SharedData.present()) {
      return Stream.of(Arguments.of("shared-data-missing", null, true));
    }
    JsonNode all =
        new ObjectMapper().readTree(SharedData.root().resolve("golden/cases.json").toFile());
    List<Arguments> out = new ArrayList<>();
    for (JsonNode c : all) {
      if (c.get("kv_type_k").asText().equals("f32")) {
        String id = c.get("id").asText();
        out.add(Arguments.of(id + " (llama.cpp numerics)", c, true));
        if (c.get("model").asText().endsWith("-f32.gguf")) { // F32 weights
          out.add(Arguments.of(id + " (kvslim numerics)", c, false));
        }
      }
    }
    return out.stream();
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("cases")
  void matchesLlamaCpp(String name, JsonNode c, boolean llamaCppNumerics) throws IOException {
    Path shared = SharedData.require();
    Path golden = shared.resolve("golden");
    int[] tokens = new int[c.get("token_ids").size()];
    for (int i = 0; i < tokens.length; i++) {
      tokens[i] = c.get("token_ids").get(i).asInt();
    }
    List<String> lines = Files.readAllLines(golden.resolve(c.get("nll_file").asText()));
    try (Model m = Model.load(shared.resolve(c.get("model").asText()));
        Engine e =
            new Engine(
                m,
                2,
                KvSpecs.factory(KvSpec.FULL, new BlockPool()),
                llamaCppNumerics ? Numerics.LLAMA_CPP : Numerics.DEFAULT)) {
      int vocab = m.config().vocabSize();
      double[] maxLogitDiff = {0};
      int[] argmaxAgree = {0, 0};
      float[] goldLogits =
          c.hasNonNull("logits_file")
              ? readFloats(golden.resolve(c.get("logits_file").asText()))
              : null;
      PerplexityEvaluator.Result r =
          new PerplexityEvaluator(e)
              .run(
                  tokens,
                  tokens.length,
                  -1,
                  (i, logits, off, v, target) -> {
                    if (goldLogits != null) {
                      for (int j = 0; j < v; j++) {
                        maxLogitDiff[0] =
                            Math.max(
                                maxLogitDiff[0], Math.abs(logits[off + j] - goldLogits[i * v + j]));
                      }
                      argmaxAgree[1]++;
                      if (Ops.argmax(logits, off, v) == Ops.argmax(goldLogits, i * v, v)) {
                        argmaxAgree[0]++;
                      }
                    }
                  });
      assertThat(r.nll()).hasSize(tokens.length - 1);
      double max = 0;
      double sum = 0;
      for (int i = 0; i < r.nll().length; i++) {
        String[] parts = lines.get(i).trim().split("\\s+");
        assertThat(Integer.parseInt(parts[0])).isEqualTo(i);
        double d = Math.abs(r.nll()[i] - Double.parseDouble(parts[1]));
        max = Math.max(max, d);
        sum += d;
      }
      double mean = sum / r.nll().length;
      System.out.printf(
          "golden %s: tokens=%d max|dNLL|=%.3g mean|dNLL|=%.3g max|dlogit|=%s argmax=%s%n",
          name,
          tokens.length,
          max,
          mean,
          goldLogits == null ? "-" : String.format("%.3g", maxLogitDiff[0]),
          goldLogits == null
              ? "- (no golden logits)"
              : argmaxAgree[0] + "/" + argmaxAgree[1] + " positions");
      if (goldLogits != null) {
        assertThat(argmaxAgree[0])
            .as("positions with llama.cpp's argmax for %s", name)
            .isGreaterThanOrEqualTo((int) Math.ceil(0.99 * argmaxAgree[1]));
      }
      if (llamaCppNumerics) {
        assertThat(mean).as("mean |dNLL| for %s", name).isLessThanOrEqualTo(1e-2);
        // the same bits as llama.cpp: NLL to the golden files' 6 decimals, logits exactly
        assertThat(max).as("max |dNLL| for %s", name).isLessThanOrEqualTo(1e-5);
        if (goldLogits != null) {
          assertThat(maxLogitDiff[0]).as("max |dlogit| for %s", name).isZero();
        }
      } else {
        assertThat(m.output().type()).isEqualTo(GgmlType.F32);
        assertThat(max).as("max |dNLL| for %s", name).isLessThanOrEqualTo(1e-3);
        if (goldLogits != null) {
          assertThat(maxLogitDiff[0]).as("max |dlogit| for %s", name).isLessThanOrEqualTo(1e-3);
        }
      }
    }
  }

  static float[] readFloats(Path p) throws IOException {
    ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(p)).order(ByteOrder.LITTLE_ENDIAN);
    float[] f = new float[b.remaining() / 4];
    b.asFloatBuffer().get(f);
    return f;
  }
}
