package io.kvslim.cluster;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import io.kvslim.server.OpenAiServer;
import io.kvslim.server.TestConfigs;
import io.kvslim.tokenizer.Tokenizer;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import org.junit.jupiter.api.Test;

/**
 * The server with every sequence's cache on a three-member cluster ({@code kvslim serve
 * --cluster}): a completion gives the text of the single-node server; a member killed while a
 * request decodes ends that request with a 503 JSON error naming the member, not a hang or text
 * computed from fewer tokens; a request naming another kv spec is refused.
 */
class ClusterServerTest {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final String PROMPT =
      "once upon a time there was a little model that kept its cache on three machines";

  @Test
  void completionsRunOnTheClusterAndALostMemberIsA503() throws Exception {
    try (Model model = Model.load(SharedData.model("llama-spm-f32.gguf"))) {
      Tokenizer tok = Tokenizer.fromGguf(model.file());
      String expected;
      try (Engine engine = new Engine(model, 1, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
        OpenAiServer single =
            new OpenAiServer(engine, tok, null, TestConfigs.tiny(64L << 20)).start();
        try {
          expected = text(post(single, 12));
        } finally {
          single.shutdown(0);
        }
      }
      String name = "kvslim-test-" + UUID.randomUUID();
      List<InetSocketAddress> seeds =
          List.of(new InetSocketAddress("127.0.0.1", DistAttentionTest.freePort()));
      List<KvCluster> members = new ArrayList<>();
      try (Engine engine = new Engine(model, 1, KvSpecs.factory(KvSpec.FULL, new BlockPool()))) {
        for (int i = 0; i < 3; i++) {
          members.add(KvCluster.join(name, seeds, Duration.ofSeconds(5)));
        }
        OpenAiServer server =
            new OpenAiServer(engine, tok, null, TestConfigs.tiny(64L << 20))
                .useCaches(members.get(0).cacheFactory(4))
                .start();
        try {
          HttpResponse<String> ok = post(server, 12);
          assertThat(ok.statusCode()).isEqualTo(200);
          assertThat(text(ok)).as("same greedy text as one node").isEqualTo(expected);

          HttpResponse<String> otherKv =
              send(server, "{\"prompt\":\"hi\",\"max_tokens\":2,\"kv\":\"q8_0\"}");
          assertThat(otherKv.statusCode()).isEqualTo(400);

          // kill the third member once it holds blocks of the next request, while it decodes
          KvCluster victim = members.get(2);
          Thread killer =
              Thread.ofPlatform()
                  .start(
                      () -> {
                        long end = System.nanoTime() + 60_000_000_000L;
                        while (victim.localSequences() == 0 && System.nanoTime() < end) {
                          Thread.onSpinWait();
                        }
                        victim.instance().getLifecycleService().terminate();
                      });
          HttpResponse<String> failed = post(server, 400);
          killer.join();
          assertThat(failed.statusCode()).isEqualTo(503);
          JsonNode error = JSON.readTree(failed.body()).path("error");
          assertThat(error.path("type").asText()).isEqualTo("server_error");
          assertThat(error.path("message").asText())
              .startsWith("cluster member 127.0.0.1:")
              .contains("left the cluster")
              .endsWith("so the sequence cannot go on");
        } finally {
          server.shutdown(0);
        }
      } finally {
        members.forEach(KvCluster::close);
      }
    }
  }

  private static HttpResponse<String> post(OpenAiServer server, int maxTokens) throws Exception {
    return send(
        server,
        "{\"prompt\":\""
            + PROMPT
            + "\",\"max_tokens\":"
            + maxTokens
            + ",\"temperature\":0,\"ignore_eos\":true}");
  }

  private static HttpResponse<String> send(OpenAiServer server, String body) throws Exception {
    HttpRequest r =
        HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.port() + "/v1/completions"))
            .timeout(Duration.ofSeconds(120))
            .header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(body))
            .build();
    try (HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build()) {
      return http.send(r, HttpResponse.BodyHandlers.ofString());
    }
  }

  private static String text(HttpResponse<String> r) throws Exception {
    assertThat(r.statusCode()).as(r.body()).isEqualTo(200);
    return JSON.readTree(r.body()).at("/choices/0/text").asText();
  }
}
