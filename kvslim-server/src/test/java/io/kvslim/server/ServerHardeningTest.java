package io.kvslim.server;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.net.URI;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * What a hostile or careless client does to the server, over real loopback HTTP: leaving while a
 * non-streaming request runs, flooding the queue while KV memory is the limit, truncated and slow
 * bodies, idle connections, oversized bodies and headers, trailing garbage, unknown models.
 */
class ServerHardeningTest {
  private static Model model;
  private static TestServer shared;

  @BeforeAll
  static void start() {
    model = TestServer.loadModel();
    shared = new TestServer(model, TestConfigs.tiny(64L << 20));
  }

  @AfterAll
  static void stop() {
    if (shared != null) {
      shared.close();
    }
    if (model != null) {
      model.close();
    }
  }

  private static String greedy(String prompt, int maxTokens, boolean stream) {
    return "{\"prompt\":%s,\"max_tokens\":%d,\"temperature\":0,\"ignore_eos\":true,\"stream\":%s}"
        .formatted(TestServer.JSON.valueToTree(prompt), maxTokens, stream);
  }

  /** The KV estimate the server reserves for a full-cache request of this prompt and limit. */
  private static long estimate(String prompt, int maxTokens) {
    int tokens = shared.tokenizer.encode(prompt, true, false).length;
    return KvPlan.resolve(
            "full", new BlockPool(), model.config(), ServerConfig.DEFAULT_PREFILL_CHUNK)
        .estimateBytes(tokens, maxTokens);
  }

  private static void assertOpenAiError(JsonNode body, String type) {
    assertThat(body).isNotNull();
    JsonNode err = body.get("error");
    assertThat(err).as("error object in %s", body).isNotNull();
    assertThat(err.get("message").asText()).isNotBlank().doesNotContain("Exception");
    assertThat(err.get("type").asText()).isEqualTo(type);
    assertThat(err.has("param")).isTrue();
    assertThat(err.has("code")).isTrue();
  }

  /**
   * A streaming request on a raw socket, returned once its first tokens arrived; the rest is read
   * in the background, as a client that keeps up (a stalled reader is timed out by the server).
   */
  private static Socket runningStream(TestServer s, String body) throws IOException {
    Socket socket = s.connect();
    TestServer.writePost(socket, "/v1/completions", body);
    InputStream in = socket.getInputStream();
    StringBuilder seen = new StringBuilder();
    while (seen.indexOf("data: ") < 0 || seen.indexOf("\n\n", seen.indexOf("data: ")) < 0) {
      int c = in.read();
      assertThat(c).as("stream ended early: %s", seen).isNotEqualTo(-1);
      seen.append((char) c);
    }
    assertThat(seen.toString()).startsWith("HTTP/1.1 200");
    Thread.ofVirtual()
        .start(
            () -> {
              try {
                in.transferTo(OutputStream.nullOutputStream());
              } catch (IOException closed) {
                // the test reset it
              }
            });
    return socket;
  }

  /** Closes with a reset, so the server's next write fails at once. */
  private static void reset(Socket socket) throws IOException {
    socket.setSoLinger(true, 0);
    socket.close();
  }

  @Test
  void aNonStreamingRequestWhoseClientLeftIsCancelled() throws Exception {
    try (TestServer s = new TestServer(model, TestConfigs.tiny(32L << 20))) {
      try (Socket socket = s.connect()) {
        TestServer.writePost(socket, "/v1/completions", greedy("Tell a long story", 1500, false));
        long deadline = System.nanoTime() + 30_000_000_000L;
        while (s.server.pool().usedBytes() == 0 && System.nanoTime() < deadline) {
          Thread.sleep(10);
        }
        assertThat(s.server.pool().usedBytes()).as("the sequence runs").isPositive();
        // an ordinary close: FIN, no reset, nothing read
      }
      s.awaitIdle();
      assertThat(s.server.pool().usedBytes()).isZero();
      assertThat(s.server.scheduler().activeSequences()).isZero();
      String m = s.metrics();
      assertThat(m).contains("kvslim_sequences_finished_total{reason=\"cancelled\"} 1.0");
      assertThat(m).doesNotContain("kvslim_sequences_finished_total{reason=\"length\"}");
    }
  }

  @Test
  void aKeptAliveConnectionServesRequestAfterRequest() throws Exception {
    try (Socket socket = shared.connect()) {
      for (int i = 0; i < 3; i++) {
        TestServer.writePost(socket, "/v1/completions", greedy("Again " + i, 3, false));
        TestServer.RawReply r = TestServer.readReply(socket);
        assertThat(r).as("reply %d", i).isNotNull();
        assertThat(r.status()).isEqualTo(200);
        assertThat(r.json().at("/usage/completion_tokens").asInt()).isEqualTo(3);
      }
    }
  }

  @Test
  void theQueueBoundHoldsWhenKvMemoryIsTheLimit() throws Exception {
    String hold = greedy("Hold the memory", 1500, true);
    int waiters = 6;
    long blocker = estimate("Hold the memory", 1500);
    long waiter = 0;
    for (int i = 0; i < waiters; i++) {
      waiter = Math.max(waiter, estimate("Wait " + i, 4));
    }
    assertThat(waiter).isLessThanOrEqualTo(blocker);
    // the blocker fits, a waiter never fits beside it: every waiter waits for KV memory, while
    // 15 of the 16 batch slots are free
    long limit = blocker + waiter / 2;
    try (TestServer s = new TestServer(model, TestConfigs.tiny(limit, 16, 2, null))) {
      Socket held = runningStream(s, hold);
      List<CompletableFuture<HttpResponse<String>>> replies = new ArrayList<>();
      try {
        for (int i = 0; i < waiters; i++) {
          replies.add(
              s.http.sendAsync(
                  HttpRequest.newBuilder(URI.create(s.base + "/v1/completions"))
                      .timeout(Duration.ofSeconds(60))
                      .POST(HttpRequest.BodyPublishers.ofString(greedy("Wait " + i, 4, false)))
                      .build(),
                  HttpResponse.BodyHandlers.ofString()));
        }
        long deadline = System.nanoTime() + 30_000_000_000L;
        while (replies.stream().filter(CompletableFuture::isDone).count() < waiters - 2
            && System.nanoTime() < deadline) {
          Thread.sleep(10);
        }
        List<HttpResponse<String>> rejected = new ArrayList<>();
        for (var f : replies) {
          if (f.isDone()) {
            rejected.add(f.get());
          }
        }
        assertThat(rejected).as("answered while the blocker runs").hasSize(waiters - 2);
        for (HttpResponse<String> r : rejected) {
          assertThat(r.statusCode()).isEqualTo(429);
          assertThat(r.headers().firstValue("Retry-After")).isPresent();
          JsonNode body = TestServer.parse(r.body());
          assertOpenAiError(body, "rate_limit_error");
          assertThat(body.at("/error/code").asText()).isEqualTo("queue_full");
        }
        assertThat(s.server.scheduler().queueLength()).isEqualTo(2);
      } finally {
        reset(held);
      }
      for (var f : replies) {
        assertThat(f.get().statusCode()).isIn(200, 429);
      }
      assertThat(replies.stream().filter(f -> f.join().statusCode() == 200).count()).isEqualTo(2);
      s.awaitIdle();
      assertThat(s.server.pool().usedBytes()).isZero();
    }
  }

  @Test
  void aBurstThatFitsTheFreeSlotsRunsEvenWithoutAQueue() throws Exception {
    try (TestServer s = new TestServer(model, TestConfigs.tiny(32L << 20, 4, 0, null))) {
      List<CompletableFuture<HttpResponse<String>>> replies = new ArrayList<>();
      for (int i = 0; i < 4; i++) {
        replies.add(
            s.http.sendAsync(
                HttpRequest.newBuilder(URI.create(s.base + "/v1/completions"))
                    .POST(HttpRequest.BodyPublishers.ofString(greedy("Burst " + i, 3, false)))
                    .build(),
                HttpResponse.BodyHandlers.ofString()));
      }
      for (var f : replies) {
        assertThat(f.get().statusCode()).as(f.get().body()).isEqualTo(200);
      }
    }
  }

  @Test
  void aTruncatedBodyIsTheClientsErrorNotAnInternalOne() throws Exception {
    try (Socket socket = shared.connect()) {
      byte[] part = "{\"prompt\":".getBytes(StandardCharsets.UTF_8);
      TestServer.writePost(socket, "/v1/completions", "", 100, part);
      socket.shutdownOutput();
      TestServer.RawReply r = TestServer.readReply(socket);
      assertThat(r).isNotNull();
      assertThat(r.status()).isEqualTo(400);
      assertOpenAiError(r.json(), "invalid_request_error");
    }
    assertThat(shared.metrics()).doesNotContain("status=\"500\"");
  }

  @Test
  void idleConnectionsAndSlowBodiesTimeOutWhileLongRequestsDoNot() throws Exception {
    ServerConfig cfg = TestConfigs.tiny(32L << 20).withIdleTimeoutMillis(1000);
    try (TestServer s = new TestServer(model, cfg)) {
      try (Socket idle = s.connect()) {
        assertThat(idle.getInputStream().read()).as("closed by the server").isEqualTo(-1);
      }
      try (Socket slow = s.connect()) {
        byte[] part = "{\"prompt\":".getBytes(StandardCharsets.UTF_8);
        TestServer.writePost(slow, "/v1/completions", "", 100, part);
        TestServer.RawReply r = TestServer.readReply(slow);
        assertThat(r).as("an answer before the server closes").isNotNull();
        assertThat(r.status()).isEqualTo(408);
        assertOpenAiError(r.json(), "invalid_request_error");
        assertThat(slow.getInputStream().read()).as("then closed").isEqualTo(-1);
      } catch (SocketTimeoutException e) {
        throw new AssertionError("a body that stopped coming was not timed out", e);
      }
      assertThat(s.metrics()).doesNotContain("status=\"500\"");
      // a request that waits three idle timeouts for its turn, silent all along, is answered
      long limit = estimate("Hold the memory", 1500) + estimate("Patience", 4) / 2;
      try (TestServer small =
          new TestServer(model, TestConfigs.tiny(limit).withIdleTimeoutMillis(1000))) {
        Socket held = runningStream(small, greedy("Hold the memory", 1500, true));
        try (Socket waiting = small.connect()) {
          TestServer.writePost(waiting, "/v1/completions", greedy("Patience", 4, false));
          // queued (the held stream has the memory): polled, as a loaded machine may take a while
          long deadline = System.nanoTime() + 30_000_000_000L;
          while (small.server.scheduler().queueLength() != 1 && System.nanoTime() < deadline) {
            Thread.sleep(20);
          }
          assertThat(small.server.scheduler().queueLength()).isEqualTo(1);
          Thread.sleep(3000); // three idle timeouts without a byte either way
          reset(held);
          TestServer.RawReply r = TestServer.readReply(waiting);
          assertThat(r).isNotNull();
          assertThat(r.status()).isEqualTo(200);
          assertThat(r.json().at("/usage/completion_tokens").asInt()).isEqualTo(4);
        }
      }
    }
  }

  @Test
  void oversizedBodiesAndHeadersGetOpenAiErrors() throws Exception {
    try (Socket socket = shared.connect()) {
      // a declared length too large even to drain: answered at once, nothing more read
      byte[] part = "{\"prompt\":\"".getBytes(StandardCharsets.UTF_8);
      TestServer.writePost(socket, "/v1/completions", "", 1L << 40, part);
      TestServer.RawReply r = TestServer.readReply(socket);
      assertThat(r.status()).isEqualTo(413);
      assertThat(r.headers().get("content-type")).startsWith("application/json");
      assertOpenAiError(r.json(), "invalid_request_error");
    }
    try (Socket socket = shared.connect()) {
      // a client waiting for 100 Continue is answered without being asked for its body
      TestServer.writePost(
          socket, "/v1/completions", "Expect: 100-continue\r\n", 10 << 20, new byte[0]);
      TestServer.RawReply r = TestServer.readReply(socket);
      assertThat(r.status()).isEqualTo(413);
      assertOpenAiError(r.json(), "invalid_request_error");
    }
    try (Socket socket = shared.connect()) {
      // the whole body sent before the answer is read: the server reads it, then answers
      byte[] whole = ("{\"prompt\":\"" + "a".repeat(5 << 20) + "\"}").getBytes();
      TestServer.writePost(socket, "/v1/completions", "", whole.length, whole);
      TestServer.RawReply r = TestServer.readReply(socket);
      assertThat(r.status()).isEqualTo(413);
      assertOpenAiError(r.json(), "invalid_request_error");
      assertThat(r.json().at("/error/code").asText()).isEqualTo("request_too_large");
    }
    try (Socket socket = shared.connect()) {
      String huge = "X-Padding: " + "a".repeat(64 * 1024) + "\r\n";
      TestServer.writePost(socket, "/v1/completions", huge, 2, "{}".getBytes());
      TestServer.RawReply r = TestServer.readReply(socket);
      assertThat(r.status()).isEqualTo(431);
      assertThat(r.headers().get("content-type")).startsWith("application/json");
      assertOpenAiError(r.json(), "invalid_request_error");
    }
    try (Socket socket = shared.connect()) {
      socket.getOutputStream().write("BREW /v1/completions HTTP/9.9\r\n\r\n".getBytes());
      TestServer.RawReply r = TestServer.readReply(socket);
      assertThat(r.status()).isBetween(400, 505);
      assertThat(r.headers().get("content-type")).startsWith("application/json");
      assertOpenAiError(r.json(), "invalid_request_error");
    }
  }

  @Test
  void trailingGarbageAfterTheJsonIsRejected() {
    var r = shared.post("/v1/completions", "{\"prompt\":\"Hi\",\"max_tokens\":1} xyz");
    assertThat(r.status()).isEqualTo(400);
    assertOpenAiError(r.body(), "invalid_request_error");
    assertThat(shared.post("/v1/completions", "{\"prompt\":\"Hi\",\"max_tokens\":1}{}").status())
        .isEqualTo(400);
    assertThat(shared.post("/v1/completions", " {\"prompt\":\"Hi\",\"max_tokens\":1}\n ").status())
        .isEqualTo(200);
  }

  @Test
  void anUnknownModelIsA404ModelNotFound() {
    var r = shared.post("/v1/completions", "{\"model\":\"gpt-4o\",\"prompt\":\"Hi\"}");
    assertThat(r.status()).isEqualTo(404);
    assertOpenAiError(r.body(), "invalid_request_error");
    assertThat(r.body().at("/error/code").asText()).isEqualTo("model_not_found");
    assertThat(r.body().at("/error/param").asText()).isEqualTo("model");
    assertThat(r.body().at("/error/message").asText()).contains("gpt-4o").contains("tiny");
    String hostile = "<script>alert(1)</script>\u0000" + "x".repeat(5000);
    var h =
        shared.post(
            "/v1/chat/completions",
            "{\"model\":%s,\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}"
                .formatted(TestServer.JSON.valueToTree(hostile)));
    assertThat(h.status()).isEqualTo(404);
    assertThat(h.body().at("/error/message").asText())
        .doesNotContain("<script>")
        .doesNotContain(
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
        .hasSizeLessThan(300);
    var ok =
        shared.post("/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"Hi\",\"max_tokens\":1}");
    assertThat(ok.status()).isEqualTo(200);
  }
}
