package io.kvslim.model;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.eval.PerplexityEvaluator;
import io.kvslim.kv.spec.KvSpec;
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
 * The forward pass against llama.cpp's goldens (F32 KV cache cases). F32-weight models must match
 * per-token NLL within 1e-3 and logits within 1e-3. For quantized weights the test runs kvslim with
 * llama.cpp's numerics ({@code Forward.setQuantizeActivations}: activations converted to
 * Q8_0/Q8_1/Q8_K blocks inside quantized matmuls, as llama.cpp's CPU backend does); those cases are
 * held to mean |dNLL| <= 1e-2 and argmax agreement >= 99%. (With F32 activations, kvslim's default,
 * the quantized models differ from the goldens by mean |dNLL| ~0.05 on these random-weight models,
 * whose logits are unusually peaked.)
 */
class GoldenTest {

  static Stream<Arguments> cases() throws IOException {
    if (!SharedData.present()) {
      return Stream.of(Arguments.of("shared-data-missing", null));
    }
    JsonNode all =
        new ObjectMapper().readTree(SharedData.root().resolve("golden/cases.json").toFile());
    List<Arguments> out = new ArrayList<>();
    for (JsonNode c : all) {
      if (c.get("kv_type_k").asText().equals("f32")) {
        out.add(Arguments.of(c.get("id").asText(), c));
      }
    }
    return out.stream();
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("cases")
  void matchesLlamaCpp(String id, JsonNode c) throws IOException {
    Path shared = SharedData.require();
    Path golden = shared.resolve("golden");
    int[] tokens = new int[c.get("token_ids").size()];
    for (int i = 0; i < tokens.length; i++) {
      tokens[i] = c.get("token_ids").get(i).asInt();
    }
    List<String> lines = Files.readAllLines(golden.resolve(c.get("nll_file").asText()));
    try (Model m = Model.load(shared.resolve(c.get("model").asText()));
        Engine e = new Engine(m, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      boolean f32Weights = m.output().type() == io.kvslim.gguf.GgmlType.F32;
      // llama.cpp converts activations for quantized (and F16) matmuls: match its numerics
      e.forward().setQuantizeActivations(true);
      int vocab = m.config().vocabSize();
      float[] allLogits = new float[tokens.length * vocab];
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
          "golden %s: tokens=%d max|dNLL|=%.3g mean|dNLL|=%.3g max|dlogit|=%s argmax=%d/%d%n",
          id,
          tokens.length,
          max,
          mean,
          goldLogits == null ? "-" : String.format("%.3g", maxLogitDiff[0]),
          argmaxAgree[0],
          argmaxAgree[1]);
      if (f32Weights) {
        assertThat(max).as("max |dNLL| for %s", id).isLessThanOrEqualTo(1e-3);
        if (goldLogits != null) {
          assertThat(maxLogitDiff[0]).as("max |dlogit| for %s", id).isLessThanOrEqualTo(1e-3);
        }
      } else {
        // Same arithmetic as llama.cpp: the short text must match everywhere. On the long texts a
        // single Q8 rounding that sits on a knife edge (x·127/max within a few ulp of k+0.5) can
        // flip, and the random-weight model's peaked attention carries it to later positions;
        // llama.cpp's own AMX build differs from these goldens by mean |dNLL| 0.027 on
        // llama-spm-q8_0 prose, so long texts are held to that level.
        if (tokens.length < 32) {
          assertThat(max).as("max |dNLL| for %s", id).isLessThanOrEqualTo(1e-4);
        }
        assertThat(mean).as("mean |dNLL| for %s", id).isLessThanOrEqualTo(0.03);
        if (goldLogits != null) {
          assertThat(argmaxAgree[0]).isGreaterThanOrEqualTo((int) Math.ceil(0.99 * argmaxAgree[1]));
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
