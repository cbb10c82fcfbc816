package io.kvslim.server;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import io.kvslim.engine.Engine;
import io.kvslim.engine.Generator;
import io.kvslim.engine.KvSpecs;
import io.kvslim.engine.Sampler;
import io.kvslim.engine.SamplerConfig;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * {@code cache_chunks} (CacheBlend) through the HTTP API: with everything recomputed the greedy
 * tokens are those of the plain prompt, chunks are stored once and hit in any order, and bad fields
 * are a 400 with one sentence.
 */
class ServerBlendTest {
  private static final List<String> CHUNKS =
      List.of(
          "def add(a, b):\n    return a + b\n",
          "class Stack:\n    def __init__(self):\n        self.items = []\n",
          "import os\nimport sys\n");
  private static final String PROMPT = "def main():\n    s = Stack()\n";
  private static Model model;
  private static TestServer server;

  @BeforeAll
  static void start() {
    model = TestServer.loadModel();
    server = new TestServer(model, TestConfigs.tiny(64L << 20));
  }

  @AfterAll
  static void stop() {
    if (server != null) {
      server.close();
      assertThat(server.server.pool().usedBytes()).isZero();
    }
    if (model != null) {
      model.close();
    }
  }

  private static String body(List<String> chunks, String blend) {
    StringBuilder sb = new StringBuilder("{\"prompt\":").append(quote(PROMPT));
    sb.append(",\"max_tokens\":8,\"temperature\":0,\"ignore_eos\":true,\"return_token_ids\":true");
    sb.append(",\"cache_chunks\":[");
    for (int i = 0; i < chunks.size(); i++) {
      sb.append(i > 0 ? "," : "").append(quote(chunks.get(i)));
    }
    sb.append("]");
    if (blend != null) {
      sb.append(",\"cache_blend\":").append(quote(blend));
    }
    return sb.append("}").toString();
  }

  private static String quote(String s) {
    try {
      return TestServer.JSON.writeValueAsString(s);
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
  }

  private static int[] ids(JsonNode array) {
    int[] out = new int[array.size()];
    for (int i = 0; i < out.length; i++) {
      out[i] = array.get(i).asInt();
    }
    return out;
  }

  @Test
  void fullRecomputeGeneratesThePlainPromptsTokensAndChunksAreHit() {
    var tok = server.tokenizer;
    int[] bos = tok.addsBos() ? new int[] {tok.bos()} : new int[0];
    int[] prompt = bos;
    for (String c : CHUNKS) {
      prompt = concat(prompt, tok.encode(c, false, false));
    }
    prompt = concat(prompt, tok.encode(PROMPT, false, false));
    int[] expected;
    try (Engine engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
      int[] out =
          new Generator(engine)
              .generate(prompt, 8, new Sampler(SamplerConfig.GREEDY), t -> false, t -> true)
              .tokens();
      expected = Arrays.copyOfRange(out, prompt.length, out.length);
    }
    var store = server.server.scheduler().chunkStore();
    long hits = store.hits();
    long misses = store.misses();
    var r = server.post("/v1/completions", body(CHUNKS, "cacheblend:recompute=100%"));
    assertThat(r.status()).as(r.body().toString()).isEqualTo(200);
    assertThat(ids(r.body().at("/choices/0/token_ids"))).containsExactly(expected);
    assertThat(r.body().at("/usage/prompt_tokens").asInt()).isEqualTo(prompt.length);
    assertThat(store.misses() - misses).isEqualTo(3);
    var again =
        server.post(
            "/v1/completions",
            body(List.of(CHUNKS.get(2), CHUNKS.get(0), CHUNKS.get(1)), "cacheblend:recompute=15%"));
    assertThat(again.status()).isEqualTo(200);
    assertThat(store.hits() - hits).isEqualTo(3);
    assertThat(store.misses() - misses).isEqualTo(3);
  }

  private static int[] concat(int[] a, int[] b) {
    int[] out = Arrays.copyOf(a, a.length + b.length);
    System.arraycopy(b, 0, out, a.length, b.length);
    return out;
  }

  @Test
  void badFieldsAreOneSentence400s() {
    String[][] cases = {
      {"/v1/completions", "{\"prompt\":\"x\",\"cache_chunks\":\"abc\"}", "cache_chunks"},
      {"/v1/completions", "{\"prompt\":\"x\",\"cache_chunks\":[]}", "cache_chunks"},
      {"/v1/completions", "{\"prompt\":\"x\",\"cache_chunks\":[\"\"]}", "cache_chunks"},
      {"/v1/completions", "{\"prompt\":[5,6],\"cache_chunks\":[\"a\"]}", "cache_chunks"},
      {
        "/v1/chat/completions",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"cache_chunks\":[\"a\"]}",
        "cache_chunks"
      },
      {
        "/v1/completions",
        "{\"prompt\":\"x\",\"cache_chunks\":[\"a\"],\"cache_blend\":\"cacheblend:recompute=200%\"}",
        "cache_blend"
      },
      {"/v1/completions", "{\"prompt\":\"x\",\"cache_blend\":\"cacheblend\"}", "cache_blend"},
    };
    for (String[] c : cases) {
      var r = server.post(c[0], c[1]);
      assertThat(r.status()).as(c[1]).isEqualTo(400);
      String message = r.body().at("/error/message").asText();
      assertThat(message).as(c[1]).contains(c[2]).doesNotContain("\n");
      assertThat(message.split("(?<=[.!?])\\s+[A-Z]")).as(message).hasSize(1);
    }
  }
}
