package io.kvslim.cli;

import static org.assertj.core.api.Assertions.assertThat;

import io.kvslim.SharedData;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import io.kvslim.server.OpenAiServer;
import io.kvslim.server.TestConfigs;
import io.kvslim.tokenizer.Tokenizer;
import org.junit.jupiter.api.Test;

class ServeCommandTest {
  private static String tiny() {
    return SharedData.model("llama-spm-f32.gguf").toString();
  }

  @Test
  void badOptionsFailWithOneLineBeforeServing() {
    CliResult badKv = CliResult.run("serve", "-m", tiny(), "--kv", "nosuch", "--port", "0");
    assertThat(badKv.exitCode()).isEqualTo(1);
    assertThat(badKv.err())
        .startsWith("kvslim: unknown KV method 'nosuch'")
        .doesNotContain("\tat ");
    CliResult badMemory = CliResult.run("serve", "-m", tiny(), "--kv-memory", "lots");
    assertThat(badMemory.exitCode()).isEqualTo(1);
    assertThat(badMemory.err()).startsWith("kvslim: --kv-memory must be a size");
    CliResult badBatch = CliResult.run("serve", "-m", tiny(), "--max-batch", "0");
    assertThat(badBatch.exitCode()).isEqualTo(1);
    assertThat(badBatch.err()).startsWith("kvslim: --max-batch must be at least 1");
    CliResult badWarmup = CliResult.run("serve", "-m", tiny(), "--warmup-steps", "-1");
    assertThat(badWarmup.exitCode()).isEqualTo(1);
    assertThat(badWarmup.err()).isEqualTo("kvslim: --warmup-steps must be >= 0, got -1\n");
    CliResult badLayers =
        CliResult.run("serve", "-m", tiny(), "--kv", "full;q8_0@layers=7-9", "--port", "0");
    assertThat(badLayers.exitCode()).isEqualTo(1);
    assertThat(badLayers.err()).startsWith("kvslim: --kv: ").contains("layer");
  }

  @Test
  void benchServeReportsEverySpecAgainstARunningServer() {
    try (Model model = Model.load(SharedData.model("llama-spm-f32.gguf"));
        Engine engine = new Engine(model, 2, KvSpecs.factory(KvSpec.FULL, new BlockPool()));
        OpenAiServer server =
            new OpenAiServer(
                    engine, Tokenizer.fromGguf(model.file()), null, TestConfigs.tiny(16L << 20))
                .start()) {
      CliResult r =
          CliResult.run(
              "bench",
              "serve",
              "--url",
              "http://127.0.0.1:" + server.port(),
              "--clients",
              "2",
              "--requests",
              "2",
              "--prompt",
              "8",
              "--gen",
              "2",
              "--kv",
              "full",
              "--kv",
              "q8_0",
              "--warmup",
              "3");
      assertThat(r.exitCode()).as(r.err()).isZero();
      assertThat(server.pool().usedBytes()).isZero();
      // two specs, each 3 warm-up requests and 2 measured ones, all answered; the warm-up's
      // staggered lengths are 1, 1 and 2 tokens (2·(i + 1)/3, at least 1), the measured ones 2 each
      String m = metrics(server.port());
      assertThat(m)
          .contains("kvslim_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 10.0")
          .contains("kvslim_generated_tokens_total 16.0");
      CliResult bad =
          CliResult.run(
              "bench",
              "serve",
              "--url",
              "http://127.0.0.1:" + server.port(),
              "--requests",
              "1",
              "--kv",
              "nosuch");
      assertThat(bad.exitCode()).isEqualTo(1);
      assertThat(bad.err())
          .startsWith("kvslim: the warm-up with kv nosuch failed")
          .doesNotContain("Exception");
    }
  }

  private static String metrics(int port) {
    try {
      return java.net.http.HttpClient.newHttpClient()
          .send(
              java.net.http.HttpRequest.newBuilder(
                      java.net.URI.create("http://127.0.0.1:" + port + "/metrics"))
                  .build(),
              java.net.http.HttpResponse.BodyHandlers.ofString())
          .body();
    } catch (java.io.IOException e) {
      throw new java.io.UncheckedIOException(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  @Test
  void benchServeRejectsANegativeWarmUp() {
    CliResult r = CliResult.run("bench", "serve", "--url", "http://127.0.0.1:1", "--warmup", "-1");
    assertThat(r.exitCode()).isNotZero();
    assertThat(r.err()).contains("--warmup must be >= 0, got -1");
  }

  @Test
  void benchServeWithoutAServerSaysSo() {
    CliResult r = CliResult.run("bench", "serve", "--url", "http://127.0.0.1:1", "--requests", "1");
    assertThat(r.exitCode()).isEqualTo(1);
    assertThat(r.err()).startsWith("kvslim: cannot reach a server at http://127.0.0.1:1");
  }
}
