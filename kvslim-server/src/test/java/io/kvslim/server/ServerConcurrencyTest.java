package io.kvslim.server;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import io.kvslim.model.Model;
import java.io.BufferedReader;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.lang.management.ManagementFactory;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** Continuous batching over HTTP: concurrency, disconnects, admission, load and shutdown. */
class ServerConcurrencyTest {
  private static Model model;

  @BeforeAll
  static void load() {
    model = TestServer.loadModel();
  }

  @AfterAll
  static void unload() {
    if (model != null) {
      model.close();
    }
  }

  private static String greedy(String prompt, int maxTokens, boolean stream) {
    return "{\"prompt\":%s,\"max_tokens\":%d,\"temperature\":0,\"ignore_eos\":true,\"return_token_ids\":true,\"stream\":%s}"
        .formatted(TestServer.JSON.valueToTree(prompt), maxTokens, stream);
  }

  private static List<Integer> tokenIds(JsonNode body) {
    List<Integer> out = new ArrayList<>();
    body.at("/choices/0/token_ids").forEach(n -> out.add(n.asInt()));
    return out;
  }

  private static void awaitIdle(TestServer s) throws InterruptedException {
    long deadline = System.nanoTime() + 20_000_000_000L;
    while ((s.server.pool().usedBytes() > 0 || s.server.scheduler().activeSequences() > 0)
        && System.nanoTime() < deadline) {
      Thread.sleep(20);
    }
  }

  @Test
  void sixteenConcurrentRequestsEqualTheSamePromptsRunAlone() throws Exception {
    try (TestServer s = new TestServer(model, TestConfigs.tiny(32L << 20))) {
      int n = 16;
      List<String> prompts = new ArrayList<>();
      for (int i = 0; i < n; i++) {
        prompts.add("Story " + i + ": the " + "old ".repeat(i % 5) + "king said");
      }
      List<List<Integer>> alone = new ArrayList<>();
      for (String p : prompts) {
        var r = s.post("/v1/completions", greedy(p, 4, false));
        assertThat(r.status()).isEqualTo(200);
        alone.add(tokenIds(r.body()));
      }
      ExecutorService clients = Executors.newFixedThreadPool(n);
      try {
        List<Future<TestServer.Reply>> futures = new ArrayList<>();
        for (String p : prompts) {
          futures.add(clients.submit(() -> s.post("/v1/completions", greedy(p, 4, false))));
        }
        for (int i = 0; i < n; i++) {
          var r = futures.get(i).get();
          assertThat(r.status()).isEqualTo(200);
          assertThat(tokenIds(r.body())).as("prompt %d", i).isEqualTo(alone.get(i));
        }
      } finally {
        clients.shutdownNow();
      }
      // more than one sequence ran in a step
      assertThat(s.metrics()).contains("kvslim_step_seconds_count");
      awaitIdle(s);
      assertThat(s.server.pool().usedBytes()).isZero();
    }
  }

  @Test
  void disconnectMidStreamFreesTheSequence() throws Exception {
    try (TestServer s = new TestServer(model, TestConfigs.tiny(32L << 20))) {
      // a raw socket, reset on close, so the server's next write fails at once: the JDK client
      // may drain a closed stream in the background while a fast machine generates everything
      byte[] body = greedy("Tell a long story", 1500, true).getBytes(StandardCharsets.UTF_8);
      try (Socket socket = new Socket("127.0.0.1", s.server.port())) {
        socket.setSoTimeout(30_000);
        OutputStream out = socket.getOutputStream();
        out.write(
            ("POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    + "Content-Type: application/json\r\nContent-Length: "
                    + body.length
                    + "\r\n\r\n")
                .getBytes(StandardCharsets.US_ASCII));
        out.write(body);
        out.flush();
        BufferedReader in =
            new BufferedReader(
                new InputStreamReader(socket.getInputStream(), StandardCharsets.UTF_8));
        assertThat(in.readLine()).startsWith("HTTP/1.1 200");
        int data = 0;
        while (data < 3) {
          String line = in.readLine();
          assertThat(line).isNotNull();
          if (line.contains("data: ")) {
            data++;
          }
        }
        assertThat(s.server.pool().usedBytes()).isPositive();
        socket.setSoLinger(true, 0);
      }
      long t0 = System.nanoTime();
      awaitIdle(s);
      assertThat(s.server.pool().usedBytes()).isZero();
      assertThat(s.server.scheduler().activeSequences()).isZero();
      assertThat((System.nanoTime() - t0) / 1e9).isLessThan(15);
      assertThat(s.metrics()).contains("kvslim_sequences_finished_total{reason=\"cancelled\"}");
      assertThat(s.metrics()).containsPattern("kvslim_kv_bytes_used_bytes 0(\\.0)?\\n");
    }
  }

  @Test
  void admissionWaitsForKvMemoryAndNeverPassesTheLimit() throws Exception {
    // room for about two of these sequences' estimates at once
    long limit = 300_000;
    try (TestServer s = new TestServer(model, TestConfigs.tiny(limit))) {
      ExecutorService clients = Executors.newFixedThreadPool(5);
      try {
        List<Future<TestServer.Reply>> futures = new ArrayList<>();
        for (int i = 0; i < 5; i++) {
          String body = greedy("Request " + i + " asks", 6, i % 2 == 0);
          futures.add(clients.submit(() -> s.post("/v1/completions", body)));
        }
        for (var f : futures) {
          assertThat(f.get().status()).isEqualTo(200);
        }
      } finally {
        clients.shutdownNow();
      }
      awaitIdle(s);
      assertThat(s.server.pool().peakBytes()).isPositive().isLessThanOrEqualTo(limit);
      assertThat(s.server.pool().usedBytes()).isZero();
      var tooBig = s.post("/v1/completions", greedy("x", 1000, false));
      assertThat(tooBig.status()).isEqualTo(400);
      assertThat(tooBig.body().at("/error/code").asText()).isEqualTo("kv_memory_exceeded");
    }
  }

  @Test
  void boundedLoadHasOnlyExpected429sAndLeaksNothing() throws Exception {
    ServerConfig cfg = TestConfigs.tiny(8L << 20, 2, 1, null);
    try (TestServer s = new TestServer(model, cfg)) {
      int[] threadsAfter = new int[2];
      for (int round = 0; round < 2; round++) {
        Map<Integer, AtomicInteger> statuses = new ConcurrentHashMap<>();
        AtomicInteger missingRetryAfter = new AtomicInteger();
        ExecutorService clients = Executors.newFixedThreadPool(6);
        try {
          List<Future<?>> futures = new ArrayList<>();
          for (int c = 0; c < 6; c++) {
            int client = c;
            futures.add(
                clients.submit(
                    () -> {
                      for (int i = 0; i < 4; i++) {
                        String body = greedy("Load " + client + "-" + i, 3, (client + i) % 2 == 0);
                        var r = s.post("/v1/completions", body);
                        statuses
                            .computeIfAbsent(r.status(), k -> new AtomicInteger())
                            .incrementAndGet();
                        if (r.status() == 429
                            && r.raw().headers().firstValue("Retry-After").isEmpty()) {
                          missingRetryAfter.incrementAndGet();
                        }
                      }
                      return null;
                    }));
          }
          for (var f : futures) {
            f.get();
          }
        } finally {
          clients.shutdownNow();
        }
        assertThat(statuses.keySet()).isSubsetOf(200, 429);
        assertThat(statuses.get(200).get()).isPositive();
        assertThat(missingRetryAfter.get()).isZero();
        awaitIdle(s);
        assertThat(s.server.pool().usedBytes()).isZero();
        assertThat(s.server.scheduler().queueLength()).isZero();
        Thread.sleep(200);
        threadsAfter[round] = ManagementFactory.getThreadMXBean().getThreadCount();
      }
      assertThat(threadsAfter[1]).isLessThanOrEqualTo(threadsAfter[0] + 2);
    }
  }

  @Test
  void shutdownEndsRunningStreamsAndFreesTheirMemory() throws Exception {
    TestServer s = new TestServer(model, TestConfigs.tiny(32L << 20));
    try {
      HttpRequest req =
          HttpRequest.newBuilder(URI.create(s.base + "/v1/completions"))
              .timeout(Duration.ofSeconds(30))
              .POST(HttpRequest.BodyPublishers.ofString(greedy("Go on and on", 1500, true)))
              .build();
      HttpResponse<InputStream> r = s.http.send(req, HttpResponse.BodyHandlers.ofInputStream());
      List<String> lines = new ArrayList<>();
      try (BufferedReader in =
          new BufferedReader(new InputStreamReader(r.body(), StandardCharsets.UTF_8))) {
        String first = in.readLine();
        assertThat(first).startsWith("data: ");
        Thread stopper = Thread.ofPlatform().start(() -> s.server.shutdown(100));
        String line;
        while ((line = in.readLine()) != null) {
          lines.add(line);
        }
        stopper.join();
      }
      assertThat(lines).contains("data: [DONE]");
      assertThat(lines.stream().filter(l -> l.contains("\"error\"")).count()).isEqualTo(1);
      assertThat(s.server.pool().usedBytes()).isZero();
    } finally {
      s.close();
    }
  }
}
