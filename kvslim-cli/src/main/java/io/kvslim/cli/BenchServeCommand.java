package io.kvslim.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import io.kvslim.bench.ServeBenchmark;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code kvslim bench serve}: streams and tokens/s of a running server, per KV spec. */
@Command(
    name = "serve",
    mixinStandardHelpOptions = true,
    description = {
      "Load a running 'kvslim serve' with R streaming greedy completions of random-token prompts"
          + " from C client threads, once per --kv spec; report aggregate tokens/s, time to first"
          + " token and inter-token latency (p50/p95), the most sequences the server ran at once"
          + " and the most KV bytes its pool held."
    })
public final class BenchServeCommand implements Callable<Integer> {
  /** Tokens each warm-up request generates (at most --gen). */
  static final int WARMUP_TOKENS = 128;

  @Option(names = "--url", description = "Server base URL (default ${DEFAULT-VALUE}).")
  String url = "http://127.0.0.1:8080";

  @Option(
      names = "--kv",
      paramLabel = "SPEC",
      description = "KV spec per request; repeat to compare several (default: full).")
  List<String> specs = new ArrayList<>();

  @Option(names = "--clients", description = "Client threads (default ${DEFAULT-VALUE}).")
  int clients = 8;

  @Option(names = "--requests", description = "Requests per spec (default ${DEFAULT-VALUE}).")
  int requests = 16;

  @Option(names = "--prompt", description = "Prompt tokens (default ${DEFAULT-VALUE}).")
  int prompt = 128;

  @Option(names = "--gen", description = "Tokens generated per request (default ${DEFAULT-VALUE}).")
  int gen = 64;

  @Option(names = "--api-key", description = "Bearer key, if the server wants one.")
  String apiKey;

  @Option(names = "--seed", description = "Seed of the prompts (default ${DEFAULT-VALUE}).")
  long seed = 1;

  @Option(
      names = "--warmup",
      paramLabel = "N",
      description =
          "Requests per spec sent first and not counted, so the server's JIT has compiled the"
              + " spec's kernels at every batch size before the measured run: they start together"
              + " and generate staggered lengths up to 128 tokens, so the batch shrinks through"
              + " every size (default: as many as --clients; 0 for none).")
  Integer warmup;

  @Option(names = "--json", paramLabel = "FILE", description = "Write the results as JSON.")
  Path json;

  @Override
  public Integer call() throws IOException, InterruptedException {
    if (clients < 1 || requests < 1 || prompt < 1 || gen < 1) {
      throw new IllegalArgumentException("--clients, --requests, --prompt and --gen must be >= 1");
    }
    int warmups = warmup == null ? clients : warmup;
    if (warmups < 0) {
      throw new IllegalArgumentException("--warmup must be >= 0, got " + warmups);
    }
    if (specs.isEmpty()) {
      specs.add("full");
    }
    String base = url.replaceAll("/+$", "");
    ServeBenchmark bench =
        new ServeBenchmark(
            new ServeBenchmark.Settings(base, apiKey, clients, requests, prompt, gen, seed, false));
    // the warm-up: as many streams at once as the measured run, shorter generations of staggered
    // lengths, so the batch shrinks through every size and the JIT compiles each size's kernels
    ServeBenchmark warm =
        warmups == 0
            ? null
            : new ServeBenchmark(
                new ServeBenchmark.Settings(
                    base,
                    apiKey,
                    clients,
                    warmups,
                    prompt,
                    Math.min(gen, WARMUP_TOKENS),
                    seed + 1,
                    true));
    List<ServeBenchmark.Result> results = new ArrayList<>();
    System.out.printf(
        Locale.ROOT,
        "%d requests x (%d prompt + %d generated tokens), %d clients, %s%n",
        requests,
        prompt,
        gen,
        clients,
        url);
    if (warm != null) {
      System.out.printf(
          Locale.ROOT,
          "warm-up before each spec: %d requests of %d prompt + up to %d generated tokens"
              + " (staggered), not counted%n",
          warmups,
          prompt,
          Math.min(gen, WARMUP_TOKENS));
    }
    System.out.printf(
        Locale.ROOT,
        "%-34s %5s %4s %5s %8s %14s %9s %9s %9s %9s %7s %11s%n",
        "kv",
        "ok",
        "err",
        "429s",
        "tok/s",
        "at peak (s)",
        "ttft p50",
        "ttft p95",
        "itl p50",
        "itl p95",
        "streams",
        "max KV");
    for (String spec : specs) {
      if (warm != null) {
        ServeBenchmark.Result w = warm.run(spec);
        if (w.failed() > 0) {
          throw new CliErrors.UserError(
              "the warm-up with kv "
                  + spec
                  + " failed "
                  + w.failed()
                  + " of "
                  + warmups
                  + " requests (does the server accept this spec?)");
        }
      }
      ServeBenchmark.Result r = bench.run(spec);
      results.add(r);
      System.out.printf(
          Locale.ROOT,
          "%-34s %5d %4d %5d %8.1f %8.1f (%3.0f) %7.0fms %7.0fms %7.0fms %7.0fms %7d %11s%n",
          r.kv(),
          r.completed(),
          r.failed(),
          r.retried429(),
          r.tokensPerSecond(),
          r.peakTokensPerSecond(),
          r.peakSeconds(),
          r.ttftP50(),
          r.ttftP95(),
          r.itlP50(),
          r.itlP95(),
          r.maxActiveSequences(),
          Format.bytes(r.maxKvBytes()));
    }
    if (json != null) {
      new ObjectMapper()
          .enable(SerializationFeature.INDENT_OUTPUT)
          .writeValue(json.toFile(), results);
    }
    return results.stream().anyMatch(r -> r.failed() > 0) ? 1 : 0;
  }
}
