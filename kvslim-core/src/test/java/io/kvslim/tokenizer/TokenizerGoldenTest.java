package io.kvslim.tokenizer;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.kvslim.SharedData;
import io.kvslim.gguf.GgufFile;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.StreamSupport;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The token ids (with BOS) that llama.cpp produced for the golden texts. */
class TokenizerGoldenTest {

  @ParameterizedTest(name = "{0}")
  @ValueSource(strings = {"models/llama-spm-f32.gguf", "models/qwen2-bpe-f32.gguf"})
  void reproducesGoldenTokenIds(String model) throws IOException {
    Path golden = SharedData.require().resolve("golden");
    JsonNode cases = new ObjectMapper().readTree(golden.resolve("cases.json").toFile());
    Map<String, int[]> expectedByText = new LinkedHashMap<>();
    for (JsonNode c : cases) {
      if (c.get("model").asText().equals(model)) {
        int[] ids =
            StreamSupport.stream(c.get("token_ids").spliterator(), false)
                .mapToInt(JsonNode::asInt)
                .toArray();
        expectedByText.putIfAbsent(c.get("text").asText(), ids);
      }
    }
    assertThat(expectedByText).as("golden cases for %s", model).isNotEmpty();
    try (GgufFile gguf = GgufFile.open(SharedData.require().resolve(model))) {
      Tokenizer tokenizer = Tokenizer.fromGguf(gguf);
      for (Map.Entry<String, int[]> e : expectedByText.entrySet()) {
        String text = Files.readString(golden.resolve(e.getKey()), StandardCharsets.UTF_8);
        int[] actual = tokenizer.encode(text, true, false);
        assertThat(actual).as("%s on %s", model, e.getKey()).containsExactly(e.getValue());
        assertThat(tokenizer.decode(actual)).as("round trip of %s", e.getKey()).isEqualTo(text);
      }
      System.out.printf(
          "%s: %d golden texts match (%s)%n",
          model, expectedByText.size(), List.copyOf(expectedByText.keySet()));
    }
  }
}
