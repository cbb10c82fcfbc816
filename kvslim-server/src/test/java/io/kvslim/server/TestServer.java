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
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

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
    this(model, config, null);
  }

  /** A server whose model's chat template is {@code chatTemplate} (Jinja), or none if null. */
  TestServer(Model model, ServerConfig config, String chatTemplate) {
    this.model = model;
    this.tokenizer = Tokenizer.fromGguf(model.file());
    this.engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()));
    this.server = new OpenAiServer(engine, tokenizer, chatTemplate, config).start();
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

  /**
   * A raw loopback connection, for what the JDK client cannot do: half-sent bodies, closing while a
   * request runs, huge headers. Reads time out after 30 s.
   */
  Socket connect() {
    try {
      Socket s = new Socket("127.0.0.1", server.port());
      s.setSoTimeout(30_000);
      return s;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /**
   * Writes a POST's head, declaring {@code contentLength} bytes, and then {@code body} (which may
   * be shorter); {@code extraHeaders} are whole lines ending in CRLF.
   */
  static void writePost(
      Socket s, String path, String extraHeaders, long contentLength, byte[] body) {
    try {
      var out = s.getOutputStream();
      out.write(
          ("POST "
                  + path
                  + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  + extraHeaders
                  + "Content-Length: "
                  + contentLength
                  + "\r\n\r\n")
              .getBytes(StandardCharsets.ISO_8859_1));
      out.write(body);
      out.flush();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  static void writePost(Socket s, String path, String body) {
    byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
    writePost(s, path, "", bytes.length, bytes);
  }

  /** A response read off a raw connection: status, headers (lower-case names), body. */
  record RawReply(int status, Map<String, String> headers, String body) {
    JsonNode json() {
      return parse(body);
    }
  }

  /** Reads one response with a {@code Content-Length} body; null if the server closed first. */
  static RawReply readReply(Socket s) {
    try {
      InputStream in = s.getInputStream();
      String status = line(in);
      if (status == null) {
        return null;
      }
      Map<String, String> headers = new LinkedHashMap<>();
      for (String h = line(in); h != null && !h.isEmpty(); h = line(in)) {
        int colon = h.indexOf(':');
        headers.put(
            h.substring(0, colon).trim().toLowerCase(Locale.ROOT), h.substring(colon + 1).trim());
      }
      int length = Integer.parseInt(headers.getOrDefault("content-length", "0"));
      byte[] body = in.readNBytes(length);
      return new RawReply(
          Integer.parseInt(status.split(" ")[1]),
          headers,
          new String(body, StandardCharsets.UTF_8));
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  private static String line(InputStream in) throws IOException {
    ByteArrayOutputStream b = new ByteArrayOutputStream();
    int c;
    while ((c = in.read()) != -1 && c != '\n') {
      if (c != '\r') {
        b.write(c);
      }
    }
    return c == -1 && b.size() == 0 ? null : b.toString(StandardCharsets.ISO_8859_1);
  }

  /** Waits (at most 30 s) until no sequence runs and the pool holds no bytes. */
  void awaitIdle() {
    long deadline = System.nanoTime() + 30_000_000_000L;
    while ((server.pool().usedBytes() > 0 || server.scheduler().activeSequences() > 0)
        && System.nanoTime() < deadline) {
      sleep(20);
    }
  }

  static void sleep(long millis) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
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
