package io.kvslim.server;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import io.kvslim.tokenizer.Tokenizer;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * A server on the tiny SPM test model on an ephemeral loopback port, with an HTTP client for it.
 * Each server has its own engine (2 threads); the model is shared.
 */
final class TestServer implements AutoCloseable {
  static final ObjectMapper JSON = new ObjectMapper();

  final Model model;
  final Tokenizer tokenizer;
  final Engine engine;
  final OpenAiServer server;
  final HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
  final String base;

  TestServer(Model model, ServerConfig config) {
    this.model = model;
    this.tokenizer = Tokenizer.fromGguf(model.file());
    this.engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()));
    this.server = new OpenAiServer(engine, tokenizer, null, config).start();
    this.base = "http://127.0.0.1:" + server.port();
  }

  static Model loadModel() {
    return Model.load(SharedData.model("llama-spm-f32.gguf"));
  }

  /** A parsed JSON response with its status and headers. */
  record Reply(int status, JsonNode body, HttpResponse<String> raw) {}

  Reply post(String path, String body) {
    return post(path, body, null);
  }

  Reply post(String path, String body, String apiKey) {
    HttpRequest.Builder b =
        HttpRequest.newBuilder(URI.create(base + path))
            .timeout(Duration.ofSeconds(60))
            .header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(body));
    if (apiKey != null) {
      b.header("Authorization", "Bearer " + apiKey);
    }
    return send(b.build());
  }

  Reply get(String path) {
    return send(HttpRequest.newBuilder(URI.create(base + path)).GET().build());
  }

  String metrics() {
    return get("/metrics").raw().body();
  }

  private Reply send(HttpRequest req) {
    try {
      HttpResponse<String> r = http.send(req, HttpResponse.BodyHandlers.ofString());
      JsonNode body = null;
      if (r.headers().firstValue("Content-Type").orElse("").startsWith("application/json")) {
        body = JSON.readTree(r.body());
      }
      return new Reply(r.statusCode(), body, r);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  /** The {@code data:} payloads of a streamed response, [DONE] included, in order. */
  List<String> stream(String path, String body) {
    Reply r = post(path, body);
    assertThat(r.status()).isEqualTo(200);
    assertThat(r.raw().headers().firstValue("Content-Type").orElse(""))
        .startsWith("text/event-stream");
    List<String> events = new ArrayList<>();
    for (String line : r.raw().body().split("\n")) {
      if (line.startsWith("data: ")) {
        events.add(line.substring(6));
      }
    }
    return events;
  }

  static JsonNode parse(String json) {
    try {
      return JSON.readTree(json);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  @Override
  public void close() {
    server.close();
    engine.close();
  }
}
