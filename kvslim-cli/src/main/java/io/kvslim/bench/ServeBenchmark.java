package io.kvslim.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;

/**
 * Load against a running {@code kvslim serve}: a fixed number of streaming greedy completions of
 * random-token prompts, from a fixed number of client threads, with a given KV spec per request.
 * Measures aggregate generated tokens/s, time to first token and inter-token latency (p50, p95),
 * and samples {@code /metrics} for the most sequences the server ran at once and the most KV bytes
 * its pool held. A 429 is retried after its {@code Retry-After} and counted.
 */
public final class ServeBenchmark {
  /**
   * What to send. With {@code staggered}, request {@code i} of {@code n} generates {@code max(1,
   * maxTokens·(i + 1)/n)} tokens instead of {@code maxTokens}, so that the streams end one after
   * another and the server's batch passes through every size (a warm-up for the JIT).
   */
  public record Settings(
      String baseUrl,
      String apiKey,
      int clients,
      int requests,
      int promptTokens,
      int maxTokens,
      long seed,
      boolean staggered) {
    /** Tokens request {@code index} generates. */
    public int maxTokens(int index) {
      return staggered ? (int) Math.max(1, (long) maxTokens * (index + 1) / requests) : maxTokens;
    }
  }

  /** What one spec's run measured; latencies in milliseconds. */
  public record Result(
      String kv,
      int completed,
      int failed,
      int retried429,
      long generatedTokens,
      double wallSeconds,
      double tokensPerSecond,
      double peakTokensPerSecond,
      double peakSeconds,
      int peakStreams,
      double ttftP50,
      double ttftP95,
      double itlP50,
      double itlP95,
      int maxActiveSequences,
      long maxKvBytes,
      long kvBytesPeakPerRequest) {}

  private final Settings settings;
  private final HttpClient http =
      HttpClient.newBuilder()
          .version(HttpClient.Version.HTTP_1_1)
          .connectTimeout(Duration.ofSeconds(10))
          .build();
  private final ObjectMapper json = new ObjectMapper();
  private final int vocab;

  public ServeBenchmark(Settings settings) throws IOException, InterruptedException {
    this.settings = settings;
    HttpResponse<String> models;
    try {
      models = http.send(get("/v1/models"), HttpResponse.BodyHandlers.ofString());
    } catch (IOException e) {
      throw new IllegalArgumentException(
          "cannot reach a server at " + settings.baseUrl() + " (" + e + "); start 'kvslim serve'");
    }
    if (models.statusCode() != 200) {
      throw new IllegalArgumentException(
          "GET " + settings.baseUrl() + "/v1/models answered " + models.statusCode());
    }
    this.vocab = json.readTree(models.body()).at("/data/0/kvslim/vocab_size").asInt(32000);
  }

  private HttpRequest get(String path) {
    HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(settings.baseUrl() + path)).GET();
    if (settings.apiKey() != null) {
      b.header("Authorization", "Bearer " + settings.apiKey());
    }
    return b.build();
  }

  /** Runs every request with {@code kv} and returns the measurements. */
  public Result run(String kv) throws InterruptedException {
    List<Double> ttft = java.util.Collections.synchronizedList(new ArrayList<>());
    List<Double> itl = java.util.Collections.synchronizedList(new ArrayList<>());
    List<long[]> arrivals = java.util.Collections.synchronizedList(new ArrayList<>());
    AtomicLong tokens = new AtomicLong();
    AtomicLong peakPerRequest = new AtomicLong();
    AtomicInteger failed = new AtomicInteger();
    AtomicInteger retried = new AtomicInteger();
    AtomicInteger next = new AtomicInteger();
    AtomicBoolean running = new AtomicBoolean(true);
    long[] serverMax = new long[2];
    Thread sampler = Thread.ofPlatform().daemon().start(() -> sampleMetrics(running, serverMax));
    ExecutorService clients = Executors.newFixedThreadPool(settings.clients());
    long t0 = System.nanoTime();
    try {
      List<Future<?>> futures = new ArrayList<>();
      for (int c = 0; c < settings.clients(); c++) {
        futures.add(
            clients.submit(
                () -> {
                  int i;
                  while ((i = next.getAndIncrement()) < settings.requests()) {
                    try {
                      one(kv, i, ttft, itl, arrivals, tokens, peakPerRequest, retried);
                    } catch (IOException | RuntimeException e) {
                      failed.incrementAndGet();
                    }
                  }
                  return null;
                }));
      }
      for (Future<?> f : futures) {
        try {
          f.get();
        } catch (java.util.concurrent.ExecutionException e) {
          failed.incrementAndGet();
        }
      }
    } finally {
      clients.shutdownNow();
      running.set(false);
      sampler.join();
    }
    double wall = (System.nanoTime() - t0) / 1e9;
    Peak peak = peak(arrivals);
    return new Result(
        kv,
        settings.requests() - failed.get(),
        failed.get(),
        retried.get(),
        tokens.get(),
        wall,
        tokens.get() / wall,
        peak.tokensPerSecond(),
        peak.seconds(),
        peak.streams(),
        percentile(ttft, 50),
        percentile(ttft, 95),
        percentile(itl, 50),
        percentile(itl, 95),
        (int) serverMax[0],
        serverMax[1],
        peakPerRequest.get());
  }

  private void one(
      String kv,
      int index,
      List<Double> ttft,
      List<Double> itl,
      List<long[]> arrivals,
      AtomicLong tokens,
      AtomicLong peakPerRequest,
      AtomicInteger retried)
      throws IOException, InterruptedException {
    SplittableRandom random = new SplittableRandom(settings.seed() * 1_000_003L + index);
    ObjectNode body = json.createObjectNode();
    ArrayNode prompt = body.putArray("prompt");
    for (int i = 0; i < settings.promptTokens(); i++) {
      prompt.add(random.nextInt(3, vocab));
    }
    body.put("max_tokens", settings.maxTokens(index));
    body.put("temperature", 0);
    body.put("ignore_eos", true);
    body.put("stream", true);
    body.put("kv", kv);
    body.putObject("stream_options").put("include_usage", true);
    HttpRequest.Builder b =
        HttpRequest.newBuilder(URI.create(settings.baseUrl() + "/v1/completions"))
            .header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(json.writeValueAsString(body)));
    if (settings.apiKey() != null) {
      b.header("Authorization", "Bearer " + settings.apiKey());
    }
    HttpRequest req = b.build();
    while (true) {
      long start = System.nanoTime();
      HttpResponse<Stream<String>> r = http.send(req, HttpResponse.BodyHandlers.ofLines());
      if (r.statusCode() == 429) {
        r.body().close();
        retried.incrementAndGet();
        long wait = r.headers().firstValueAsLong("Retry-After").orElse(1);
        Thread.sleep(wait * 1000);
        continue;
      }
      if (r.statusCode() != 200) {
        r.body().close();
        throw new IOException("status " + r.statusCode());
      }
      long last = -1;
      long[] times = new long[Math.max(16, settings.maxTokens() + 1)];
      int count = 0;
      try (Stream<String> lines = r.body()) {
        Iterator<String> it = lines.iterator();
        while (it.hasNext()) {
          String line = it.next();
          if (!line.startsWith("data: ") || line.equals("data: [DONE]")) {
            continue;
          }
          long now = System.nanoTime();
          JsonNode event = json.readTree(line.substring(6));
          if (event.has("error")) {
            throw new IOException(event.at("/error/message").asText());
          }
          JsonNode choices = event.get("choices");
          if (choices != null
              && !choices.isEmpty()
              && !choices.get(0).get("text").asText().isEmpty()) {
            if (last < 0) {
              ttft.add((now - start) / 1e6);
            } else {
              itl.add((now - last) / 1e6);
            }
            last = now;
            if (count == times.length) {
              times = Arrays.copyOf(times, 2 * count);
            }
            times[count++] = now;
          }
          if (event.has("usage")) {
            tokens.addAndGet(event.at("/usage/completion_tokens").asLong());
            peakPerRequest.accumulateAndGet(
                event.at("/kvslim_usage/kv_bytes_peak").asLong(), Math::max);
          }
        }
      }
      if (count > 1) {
        arrivals.add(Arrays.copyOf(times, count));
      }
      return;
    }
  }

  /** Polls {@code /metrics} for the most active sequences and KV bytes seen. */
  private void sampleMetrics(AtomicBoolean running, long[] max) {
    while (running.get()) {
      try {
        String text = http.send(get("/metrics"), HttpResponse.BodyHandlers.ofString()).body();
        for (String line : text.split("\n")) {
          if (line.startsWith("kvslim_active_sequences ")) {
            max[0] = Math.max(max[0], (long) Double.parseDouble(line.substring(24).trim()));
          } else if (line.startsWith("kvslim_kv_bytes_used_bytes ")) {
            max[1] = Math.max(max[1], (long) Double.parseDouble(line.substring(27).trim()));
          }
        }
        Thread.sleep(100);
      } catch (IOException | NumberFormatException e) {
        // a missed sample only lowers the maxima
      } catch (InterruptedException e) {
        return;
      }
    }
  }

  /**
   * Decode throughput while the most streams were generating at once: a stream generates from its
   * first token to its last; over the times when the number of generating streams is at its
   * maximum, the tokens that arrived divided by that time. It leaves out the ramp up and down of a
   * finite run (the first prefills, a last wave with fewer streams), which the end-to-end figure
   * includes.
   */
  record Peak(double tokensPerSecond, double seconds, int streams) {}

  static Peak peak(List<long[]> arrivals) {
    List<long[]> runs;
    synchronized (arrivals) {
      runs = new ArrayList<>(arrivals);
    }
    if (runs.isEmpty()) {
      return new Peak(Double.NaN, 0, 0);
    }
    // +1 at a stream's first token, -1 just after its last; ties: ends first
    long[][] events = new long[2 * runs.size()][];
    int e = 0;
    for (long[] t : runs) {
      events[e++] = new long[] {t[0], +1};
      events[e++] = new long[] {t[t.length - 1], -1};
    }
    Arrays.sort(
        events, (a, b) -> a[0] != b[0] ? Long.compare(a[0], b[0]) : Long.compare(a[1], b[1]));
    int max = 0;
    int active = 0;
    for (long[] ev : events) {
      active += (int) ev[1];
      max = Math.max(max, active);
    }
    List<long[]> windows = new ArrayList<>();
    active = 0;
    long from = -1;
    for (long[] ev : events) {
      active += (int) ev[1];
      if (active == max && from < 0) {
        from = ev[0];
      } else if (active < max && from >= 0) {
        if (ev[0] > from) {
          windows.add(new long[] {from, ev[0]});
        }
        from = -1;
      }
    }
    long nanos = 0;
    long tokens = 0;
    for (long[] w : windows) {
      nanos += w[1] - w[0];
      for (long[] t : runs) {
        // tokens strictly after the window opens (the opening token closes the interval before)
        int lo = upper(t, w[0]);
        int hi = upper(t, w[1]);
        tokens += hi - lo;
      }
    }
    if (nanos == 0) {
      return new Peak(Double.NaN, 0, max);
    }
    return new Peak(tokens / (nanos / 1e9), nanos / 1e9, max);
  }

  /** Index of the first element greater than {@code key} in the sorted {@code a}. */
  private static int upper(long[] a, long key) {
    int lo = 0;
    int hi = a.length;
    while (lo < hi) {
      int mid = (lo + hi) >>> 1;
      if (a[mid] <= key) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    return lo;
  }

  static double percentile(List<Double> values, double p) {
    if (values.isEmpty()) {
      return Double.NaN;
    }
    double[] v;
    synchronized (values) {
      v = values.stream().mapToDouble(Double::doubleValue).toArray();
    }
    Arrays.sort(v);
    int i = (int) Math.ceil(p / 100 * v.length) - 1;
    return v[Math.max(0, Math.min(v.length - 1, i))];
  }
}
