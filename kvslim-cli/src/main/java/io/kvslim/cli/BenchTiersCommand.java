package io.kvslim.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.tier.PrefixCache;
import io.kvslim.kv.tier.TierStats;
import io.kvslim.model.Model;
import io.kvslim.server.OpenAiServer;
import io.kvslim.server.ServerConfig;
import io.kvslim.tokenizer.Tokenizer;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * The prefix cache across servers (issue 19): per KV spec, three servers in this process on the
 * same model, two of them over the given KV tiers. Each round, a fresh random prefix of P tokens
 * plus a distinct 16-token suffix goes to the server without tiers (the prefill), to the first
 * tiered server (prefill and store) and to the second (restore the prefix, prefill the suffix); the
 * time to first token of each (server-side, from arrival to the first token) and the bytes moved.
 */
@Command(
    name = "tiers",
    mixinStandardHelpOptions = true,
    description = {
      "Time to first token for a shared prompt prefix on a second server over KV tiers vs"
          + " prefilling it, and the bytes moved per block, per --kv spec."
    })
public final class BenchTiersCommand implements Callable<Integer> {
  private static final int SUFFIX = 16;

  @Mixin ModelOptions modelOptions;
  @Mixin KvTierOptions tierOptions;

  @Option(
      names = "--kv",
      paramLabel = "SPEC",
      description = "KV spec(s) to measure (default: f16, KIVI-2 with residual 128, q4_0).")
  List<String> specs = new ArrayList<>();

  @Option(
      names = "--prefix",
      description =
          "Shared prefix tokens (default ${DEFAULT-VALUE}; cut to what the context holds).")
  int prefix = 1500;

  @Option(names = "--repeat", description = "Measured rounds (default ${DEFAULT-VALUE}).")
  int repeat = 5;

  @Option(names = "--out", paramLabel = "DIR", description = "Write results.json and report.md.")
  Path out;

  private final HttpClient http =
      HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();

  @Override
  public Integer call() throws Exception {
    tierOptions.check();
    if (tierOptions.tiers.isEmpty()) {
      throw new IllegalArgumentException("bench tiers needs at least one --kv-tier");
    }
    if (repeat < 1) {
      throw new IllegalArgumentException("--repeat must be >= 1, got " + repeat);
    }
    List<String> texts = new ArrayList<>();
    for (String s :
        specs.isEmpty()
            ? List.of("f16", "kivi:kbits=2,vbits=2,group=32,residual=128", "q4_0")
            : specs) {
      texts.add(KvSpec.parse(s).text());
    }
    List<Map<String, Object>> results = new ArrayList<>();
    try (Model model = modelOptions.load()) {
      int ctx = model.config().contextLength();
      int p = Math.min(prefix, ctx - SUFFIX - 2);
      if (p < 64) {
        throw new IllegalArgumentException("the model's context (" + ctx + ") is too short");
      }
      if (p < prefix) {
        System.err.printf(
            "kvslim: a prefix of %d tokens does not fit the context of %d with a %d-token suffix"
                + " and one generated token; using %d%n",
            prefix, ctx, SUFFIX, p);
      }
      Tokenizer tok = Tokenizer.fromGguf(model.file());
      for (String spec : texts) {
        results.add(measure(model, tok, spec, p));
      }
    }
    if (out != null) {
      Files.createDirectories(out);
      new ObjectMapper()
          .enable(SerializationFeature.INDENT_OUTPUT)
          .writeValue(out.resolve("results.json").toFile(), results);
      Files.writeString(out.resolve("report.md"), report(results));
    }
    return 0;
  }

  private Map<String, Object> measure(Model model, Tokenizer tok, String spec, int p)
      throws IOException, InterruptedException {
    ServerConfig cfg =
        new ServerConfig(
            "127.0.0.1",
            0,
            spec,
            1L << 32,
            4,
            16,
            ServerConfig.DEFAULT_PREFILL_CHUNK,
            null,
            "bench");
    List<Engine> engines = new ArrayList<>();
    List<OpenAiServer> servers = new ArrayList<>();
    List<PrefixCache> caches = new ArrayList<>();
    try {
      for (int i = 0; i < 3; i++) {
        Engine e = modelOptions.engine(model, KvSpecs.factory(KvSpec.parse(spec), new BlockPool()));
        engines.add(e);
        OpenAiServer s = new OpenAiServer(e, tok, null, cfg);
        if (i > 0) {
          PrefixCache c = tierOptions.open(model.config(), e.numerics());
          caches.add(c);
          s.usePrefixCache(c);
        }
        servers.add(s.start());
      }
      Random r = new Random(spec.hashCode());
      int vocab = model.config().vocabSize();
      // warm-up (the JIT): two rounds on prefixes no later round shares
      for (int w = 0; w < 2; w++) {
        int[] shared = prompt(r, vocab, p, null);
        for (OpenAiServer s : servers) {
          complete(s, prompt(r, vocab, SUFFIX, shared));
        }
      }
      TierStats first = caches.get(0).stats();
      TierStats second = caches.get(1).stats();
      long stored0 = first.stored.get();
      long written0 = first.bytesWritten.get();
      long read0 = second.bytesRead.get();
      long restored0 = second.restoredTokens.get();
      double[] plain = new double[repeat];
      double[] storing = new double[repeat];
      double[] restoring = new double[repeat];
      for (int i = 0; i < repeat; i++) {
        int[] shared = prompt(r, vocab, p, null);
        plain[i] = ttft(servers.get(0), prompt(r, vocab, SUFFIX, shared));
        storing[i] = ttft(servers.get(1), prompt(r, vocab, SUFFIX, shared));
        restoring[i] = ttft(servers.get(2), prompt(r, vocab, SUFFIX, shared));
      }
      long blocks = first.stored.get() - stored0;
      Map<String, Object> m = new LinkedHashMap<>();
      m.put("kv", spec);
      m.put("prefix_tokens", p);
      m.put("suffix_tokens", SUFFIX);
      m.put("rounds", repeat);
      m.put("threads", engines.get(0).threads());
      m.put("tiers", tierOptions.tiers);
      m.put("ttft_prefill_ms", median(plain));
      m.put("ttft_first_server_ms", median(storing));
      m.put("ttft_second_server_ms", median(restoring));
      m.put("speedup", median(plain) / median(restoring));
      m.put("restored_tokens_per_request", (second.restoredTokens.get() - restored0) / repeat);
      m.put("blocks_stored", blocks);
      m.put("bytes_per_block", blocks == 0 ? 0 : (first.bytesWritten.get() - written0) / blocks);
      m.put("bytes_read_per_request", (second.bytesRead.get() - read0) / repeat);
      System.out.printf(
          Locale.ROOT,
          "%-45s prefix %d: TTFT prefill %.1f ms, first server %.1f ms, second server %.1f ms"
              + " (%.1fx); %d tokens restored; %d bytes/block, %d bytes read/request%n",
          spec,
          p,
          median(plain),
          median(storing),
          median(restoring),
          median(plain) / median(restoring),
          (Long) m.get("restored_tokens_per_request"),
          (Long) m.get("bytes_per_block"),
          (Long) m.get("bytes_read_per_request"));
      return m;
    } finally {
      for (OpenAiServer s : servers) {
        s.close();
      }
      for (Engine e : engines) {
        e.close();
      }
    }
  }

  /** {@code n} random tokens after {@code head} (or after BOS when null). */
  private static int[] prompt(Random r, int vocab, int n, int[] head) {
    int[] base = head == null ? new int[] {1} : head;
    int[] t = Arrays.copyOf(base, base.length + n);
    for (int i = base.length; i < t.length; i++) {
      t[i] = 3 + r.nextInt(vocab - 3);
    }
    return t;
  }

  /** The server-side time to first token of one request, in ms (its metric's increase). */
  private double ttft(OpenAiServer s, int[] prompt) throws IOException, InterruptedException {
    double[] before = ttftSum(s);
    complete(s, prompt);
    double[] after = ttftSum(s);
    if (after[1] != before[1] + 1) {
      throw new IllegalStateException("the server recorded no first token");
    }
    return (after[0] - before[0]) * 1000;
  }

  private static double[] ttftSum(OpenAiServer s) {
    double sum = 0;
    double count = 0;
    for (String line : s.metrics().scrape().split("\n")) {
      if (line.startsWith("kvslim_time_to_first_token_seconds_sum")) {
        sum = Double.parseDouble(line.substring(line.lastIndexOf(' ') + 1));
      } else if (line.startsWith("kvslim_time_to_first_token_seconds_count")) {
        count = Double.parseDouble(line.substring(line.lastIndexOf(' ') + 1));
      }
    }
    return new double[] {sum, count};
  }

  private void complete(OpenAiServer s, int[] prompt) throws IOException, InterruptedException {
    String body =
        "{\"prompt\":"
            + Arrays.toString(prompt).replace(" ", "")
            + ",\"max_tokens\":1,\"temperature\":0,\"ignore_eos\":true}";
    HttpResponse<String> resp =
        http.send(
            HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + s.port() + "/v1/completions"))
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body))
                .build(),
            HttpResponse.BodyHandlers.ofString());
    if (resp.statusCode() != 200) {
      throw new IllegalStateException(
          "the server answered " + resp.statusCode() + ": " + resp.body());
    }
  }

  private static double median(double[] v) {
    double[] s = v.clone();
    Arrays.sort(s);
    return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  }

  private String report(List<Map<String, Object>> results) {
    StringBuilder b = new StringBuilder();
    b.append("# Prefix cache across servers over KV tiers\n\n");
    b.append("Model `")
        .append(modelOptions.modelPath().getFileName())
        .append("`, tiers ")
        .append(String.join(", ", tierOptions.tiers))
        .append(", ")
        .append(repeat)
        .append(" rounds (medians), server-side time to first token (arrival to first token).")
        .append(" Each round: a fresh random prefix plus a distinct ")
        .append(SUFFIX)
        .append("-token suffix per server.\n\n");
    b.append(
        "| KV spec | prefix | TTFT prefill (no tiers) | TTFT first server (prefill + store) |"
            + " TTFT second server (restore) | speedup | tokens restored | bytes per block |"
            + " bytes read per request |\n");
    b.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (Map<String, Object> m : results) {
      b.append(
          String.format(
              Locale.ROOT,
              "| `%s` | %d | %.1f ms | %.1f ms | %.1f ms | %.1fx | %d | %,d | %,d |%n",
              m.get("kv"),
              (Integer) m.get("prefix_tokens"),
              (Double) m.get("ttft_prefill_ms"),
              (Double) m.get("ttft_first_server_ms"),
              (Double) m.get("ttft_second_server_ms"),
              (Double) m.get("speedup"),
              (Long) m.get("restored_tokens_per_request"),
              (Long) m.get("bytes_per_block"),
              (Long) m.get("bytes_read_per_request")));
    }
    return b.toString();
  }
}
