package io.kvslim.kv;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.kvslim.SharedData;
import io.kvslim.bench.PerplexityEvaluator;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import io.kvslim.model.Numerics;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The paged cache with f16, q8_0 and q4_0 keys and values against llama.cpp's goldens for the same
 * KV types ({@code golden/cases.json} for the random-weight model, {@code
 * golden/kv-cases-pycoder.json} for the trained pycoder-6m), computed with llama.cpp's numerics
 * ({@link Numerics#LLAMA_CPP}): f16 caches in the order of llama.cpp's attention without flash
 * attention (query and probabilities rounded to F16, tinyBLAS for the scores, see {@code
 * LlamaCppTileAttention}), q8_0 and q4_0 in the order of its CPU flash attention, which the goldens
 * ran with ({@code LlamaCppFlashAttention}), rows written with its x86 quantizer.
 *
 * <p>Bound: the mean |ΔNLL| to the golden of the same KV type is at most 5% of the mean |ΔNLL| that
 * the quantization itself causes in llama.cpp (golden of the type vs golden of f32), and at most
 * 5e-3. Measured (2 threads): every f16 and q4_0 case and the q8_0 cases of the random-weight model
 * within the goldens' 6 decimals (mean 2.4e-7..5e-6) but one q4_0 token (llama-spm code, 1.6e-3);
 * pycoder q8_0 2.4e-7 (short), 7e-6 (py-b) and 2.9e-5 (py-a) against an effect of 2.6e-3..4.4e-3:
 * one token (py-a 340, py-b 553) differs first and the F16 activations of the F16-weight model
 * carry it on. Attention in kvslim's own order instead moves pycoder's NLL by 1.1e-4 even with an
 * F32 cache, which is why these cases were out of bounds before.
 */
class QuantizedKvGoldenTest {
  private static final Set<String> TYPES = Set.of("f16", "q8_0", "q4_0");

  static Stream<Arguments> cases() throws IOException {
    if (!SharedData.present()) {
      return Stream.of(Arguments.of("shared-data-missing", null, null));
    }
    ObjectMapper json = new ObjectMapper();
    List<JsonNode> all = new ArrayList<>();
    json.readTree(SharedData.root().resolve("golden/cases.json").toFile()).forEach(all::add);
    Path pycoder = SharedData.root().resolve("golden/kv-cases-pycoder.json");
    if (Files.exists(pycoder)) {
      json.readTree(pycoder.toFile()).forEach(all::add);
    }
    List<Arguments> out = new ArrayList<>();
    for (JsonNode c : all) {
      if (!TYPES.contains(c.get("kv_type_k").asText())) {
        continue;
      }
      JsonNode f32 = null;
      for (JsonNode other : all) {
        if (other.get("model").equals(c.get("model"))
            && other.get("text").equals(c.get("text"))
            && other.get("kv_type_k").asText().equals("f32")) {
          f32 = other;
        }
      }
      out.add(Arguments.of(c.get("id").asText(), c, f32));
    }
    return out.stream();
  }

  static double[] goldenNll(Path golden, JsonNode c) throws IOException {
    List<String> lines = Files.readAllLines(golden.resolve(c.get("nll_file").asText()));
    double[] nll = new double[lines.size()];
    for (int i = 0; i < nll.length; i++) {
      String[] parts = lines.get(i).trim().split("\\s+");
      assertThat(Integer.parseInt(parts[0])).isEqualTo(i);
      nll[i] = Double.parseDouble(parts[1]);
    }
    return nll;
  }

  /** Mean and max of |a − b| over the first {@code n} entries. */
  static double[] meanMax(double[] a, double[] b, int n) {
    double sum = 0;
    double max = 0;
    for (int i = 0; i < n; i++) {
      double d = Math.abs(a[i] - b[i]);
      sum += d;
      max = Math.max(max, d);
    }
    return new double[] {sum / n, max};
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("cases")
  void quantizedCacheMatchesLlamaCppWithTheSameKvType(String id, JsonNode c, JsonNode f32)
      throws IOException {
    Path shared = SharedData.require();
    Path golden = shared.resolve("golden");
    assertThat(c.get("kv_type_v").asText()).isEqualTo(c.get("kv_type_k").asText());
    int[] tokens = new int[c.get("token_ids").size()];
    for (int i = 0; i < tokens.length; i++) {
      tokens[i] = c.get("token_ids").get(i).asInt();
    }
    String spec = c.get("kv_type_k").asText();
    double[] nll;
    try (Model m = Model.load(shared.resolve(c.get("model").asText()));
        Engine e =
            new Engine(
                m, 2, KvSpecs.factory(KvSpec.parse(spec), new BlockPool()), Numerics.LLAMA_CPP)) {
      nll = new PerplexityEvaluator(e).run(tokens, tokens.length, -1, null).nll();
    }
    double[] expected = goldenNll(golden, c);
    double[] reference = goldenNll(golden, f32);
    int n = nll.length;
    assertThat(expected).hasSize(n);
    double[] toSameType = meanMax(nll, expected, n);
    double[] toF32 = meanMax(nll, reference, n);
    double[] quantizationEffect = meanMax(expected, reference, n);
    System.out.printf(
        "kv golden %s: tokens=%d vs %s golden mean|dNLL|=%.3g max=%.3g | vs f32 golden mean=%.3g"
            + " max=%.3g | llama.cpp %s vs f32 mean=%.3g max=%.3g%n",
        id,
        tokens.length,
        spec,
        toSameType[0],
        toSameType[1],
        toF32[0],
        toF32[1],
        spec,
        quantizationEffect[0],
        quantizationEffect[1]);
    assertThat(toSameType[0])
        .as("mean |dNLL| to the %s golden of %s", spec, id)
        .isLessThanOrEqualTo(Math.min(5e-3, 0.05 * quantizationEffect[0]));
  }
}
