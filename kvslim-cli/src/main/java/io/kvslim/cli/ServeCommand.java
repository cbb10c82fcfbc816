package io.kvslim.cli;

import io.kvslim.engine.Engine;
import io.kvslim.engine.JitWarmup;
import io.kvslim.kv.method.Budget;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import io.kvslim.model.ModelConfig;
import io.kvslim.server.ApiException;
import io.kvslim.server.KvPlan;
import io.kvslim.server.ListenAddress;
import io.kvslim.server.OpenAiServer;
import io.kvslim.server.ServerConfig;
import io.kvslim.tokenizer.Tokenizer;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code kvslim serve}: the OpenAI-compatible HTTP server with continuous batching. */
@Command(
    name = "serve",
    mixinStandardHelpOptions = true,
    description = {
      "Serve a model over an OpenAI-compatible HTTP API: POST /v1/completions,"
          + " POST /v1/chat/completions (stream: true for server-sent events), GET /v1/models,"
          + " GET /health, GET /metrics (Prometheus). A request may carry 'kv' (a KV spec) to"
          + " override --kv. Requests are batched continuously under --kv-memory; a full queue"
          + " answers 429. Ctrl-C stops gracefully."
    })
public final class ServeCommand implements Callable<Integer> {
  /** The environment variable read for the API key when no option gives one. */
  static final String API_KEY_ENV = "KVSLIM_API_KEY";

  @Spec CommandSpec spec;
  @Mixin ModelOptions modelOptions;
  @Mixin KvOptions kvOptions;
  @Mixin ClusterOptions clusterOptions;
  @Mixin KvTierOptions tierOptions;

  @Option(names = "--host", description = "Address to listen on (default ${DEFAULT-VALUE}).")
  String host = "127.0.0.1";

  @Option(names = "--port", description = "Port (default ${DEFAULT-VALUE}; 0 = any free).")
  int port = 8080;

  @Option(
      names = "--kv-memory",
      paramLabel = "BYTES",
      description =
          "KV cache memory shared by all sequences, e.g. 512MiB (default ${DEFAULT-VALUE}).")
  String kvMemory = "2GiB";

  @Option(
      names = "--max-batch",
      paramLabel = "N",
      description = "Most sequences running at once (default ${DEFAULT-VALUE}).")
  int maxBatch = 32;

  @Option(
      names = "--queue",
      paramLabel = "N",
      description =
          "Requests that may wait for a batch slot or KV memory; one more is answered 429"
              + " (default ${DEFAULT-VALUE}).")
  int queue = 64;

  @Option(
      names = "--prefill-chunk",
      paramLabel = "N",
      description =
          "Prompt tokens prefilled per step, between decode steps (default ${DEFAULT-VALUE}).")
  int prefillChunk = ServerConfig.DEFAULT_PREFILL_CHUNK;

  @Option(
      names = "--api-key",
      paramLabel = "KEY",
      description =
          "Require 'Authorization: Bearer KEY' on /v1/* and /metrics. Visible to other users in"
              + " the process list: prefer --api-key-file or the environment variable "
              + API_KEY_ENV
              + ".")
  String apiKey;

  @Option(
      names = "--api-key-file",
      paramLabel = "FILE",
      description =
          "Read the API key from FILE (its one line; surrounding whitespace is ignored). Without"
              + " --api-key and --api-key-file, the key is the environment variable "
              + API_KEY_ENV
              + " if set.")
  Path apiKeyFile;

  @Option(
      names = "--idle-timeout",
      paramLabel = "SECONDS",
      description =
          "Close a connection silent this long: idle between requests, or sending its request"
              + " too slowly; a request being generated is not cut (default ${DEFAULT-VALUE}).")
  int idleTimeout = (int) (ServerConfig.DEFAULT_IDLE_TIMEOUT_MILLIS / 1000);

  @Option(
      names = "--shutdown-grace",
      paramLabel = "SECONDS",
      description = "On stop, how long running requests may finish (default ${DEFAULT-VALUE}).")
  int shutdownGrace = 10;

  @Option(
      names = "--warmup-steps",
      paramLabel = "N",
      description =
          "Before serving, decode N steps at every batch size up to --max-batch (at most 16) on"
              + " throwaway caches, so the JIT has compiled each size's kernels before the first"
              + " request (default ${DEFAULT-VALUE}; 0 for none).")
  int warmupSteps = 4;

  @Override
  public Integer call() throws InterruptedException {
    if (warmupSteps < 0) {
      throw new IllegalArgumentException("--warmup-steps must be >= 0, got " + warmupSteps);
    }
    if (idleTimeout < 1) {
      throw new IllegalArgumentException(
          "--idle-timeout must be at least 1 second, got " + idleTimeout);
    }
    checkShutdownGrace(shutdownGrace);
    long memory = kvMemoryBytes(kvMemory);
    kvOptions.calibrate(modelOptions); // --calib: the profile a spec needs and names none
    kvOptions.parsed(); // a bad --kv fails before the model loads
    clusterOptions.check(kvOptions); // and so does a bad --cluster
    String key = apiKey(apiKey, apiKeyFile, System.getenv());
    // a bad --host or --port fails before the model loads too
    if (port < 0 || port > 65535) {
      throw new IllegalArgumentException("--port must be 0..65535, got " + port);
    }
    InetAddress address = ListenAddress.resolve(host);
    ListenAddress.probe(address, port);
    if (key == null && !ListenAddress.isLoopback(address)) {
      spec.commandLine()
          .getErr()
          .printf(
              "kvslim: warning: listening on %s without an API key: anyone who can reach this"
                  + " port can use the server; set --api-key-file FILE or %s%n",
              address.getHostAddress(), API_KEY_ENV);
      spec.commandLine().getErr().flush();
    }
    String id = modelOptions.modelPath().getFileName().toString().replaceFirst("\\.gguf$", "");
    ServerConfig cfg =
        new ServerConfig(
            address.getHostAddress(),
            port,
            kvOptions.spec(),
            memory,
            maxBatch,
            queue,
            prefillChunk,
            key,
            id,
            idleTimeout * 1000L);
    tierOptions.check();
    if (clusterOptions.enabled() && !tierOptions.tiers.isEmpty()) {
      throw new IllegalArgumentException(
          "--kv-tier cannot be combined with --cluster: the cluster's members hold the blocks");
    }
    try (var cluster = clusterOptions.enabled() ? clusterOptions.join(kvOptions) : null;
        Model model = modelOptions.load();
        Engine engine = modelOptions.engine(model, kvOptions.factory())) {
      Tokenizer tok = Tokenizer.fromGguf(model.file());
      String template = model.file().getString("tokenizer.chat_template", null);
      requireRoomForOneRequest(kvMemory, kvOptions.parsed(), model.config(), prefillChunk);
      OpenAiServer server;
      try {
        server = new OpenAiServer(engine, tok, template, cfg);
        if (cluster != null) {
          server.useCaches(cluster.cacheFactory(clusterOptions.blockTokens));
        }
      } catch (ApiException e) {
        throw new IllegalArgumentException("--kv: " + e.getMessage());
      }
      var spill = tierOptions.spillStorage();
      if (spill != null) {
        server.useColdStorage(spill);
      }
      var prefix = tierOptions.open(model.config(), engine.numerics());
      if (prefix != null) {
        server.usePrefixCache(prefix);
        System.err.println(
            "kvslim: prefix cache over the KV tiers " + String.join(", ", tierOptions.tiers));
      }
      if (warmupSteps > 0) {
        JitWarmup.Report w =
            JitWarmup.run(engine, kvOptions.parsed(), maxBatch, prefillChunk, warmupSteps);
        System.err.printf(
            Locale.ROOT,
            "kvslim: warmed up batches of 1..%d (%d steps each) in %.1f s%n",
            w.batchSizes(),
            w.stepsPerSize(),
            w.seconds());
      }
      server.start();
      System.err.printf(
          "kvslim: serving %s on http://%s:%d (KV %s, --kv-memory %s, %d threads, chat template %s)%n",
          id,
          host,
          server.port(),
          cfg.defaultKv(),
          Format.bytes(memory),
          engine.threads(),
          server.chatTemplate().fromModel() ? "from the GGUF" : "chatml (none in the GGUF)");
      String problem = server.chatTemplate().probe();
      if (problem != null) {
        System.err.println(
            "kvslim: warning: chat completions will fail with this error: " + problem);
      }
      CountDownLatch stopped = new CountDownLatch(1);
      Thread hook =
          new Thread(
              () -> {
                System.err.println("kvslim: stopping");
                server.shutdown(shutdownGrace * 1000L);
                stopped.countDown();
              });
      Runtime.getRuntime().addShutdownHook(hook);
      stopped.await();
      return 0;
    }
  }

  /**
   * The API key: {@code --api-key}, else the one line of {@code --api-key-file}, else {@code
   * KVSLIM_API_KEY} from {@code env}; null for none.
   *
   * @throws IllegalArgumentException if both options are given, or the file is missing, unreadable,
   *     empty or holds more than one line, or the variable is set but blank
   */
  static String apiKey(String option, Path file, Map<String, String> env) {
    if (option != null && file != null) {
      throw new IllegalArgumentException("give one of --api-key and --api-key-file, not both");
    }
    if (option != null) {
      return option;
    }
    if (file != null) {
      String text;
      try {
        text = Files.readString(file, StandardCharsets.UTF_8).strip();
      } catch (NoSuchFileException e) {
        throw new IllegalArgumentException("--api-key-file " + file + ": no such file");
      } catch (CharacterCodingException e) {
        throw new IllegalArgumentException("--api-key-file " + file + " is not UTF-8 text");
      } catch (IOException e) {
        throw new UncheckedIOException(
            "--api-key-file "
                + file
                + (Files.isDirectory(file)
                    ? " is a directory"
                    : " cannot be read: " + e.getMessage()),
            e);
      }
      if (text.isEmpty()) {
        throw new IllegalArgumentException("--api-key-file " + file + " is empty");
      }
      if (text.lines().count() > 1) {
        throw new IllegalArgumentException(
            "--api-key-file " + file + " holds more than one line; write the key alone");
      }
      return text;
    }
    String fromEnv = env.get(API_KEY_ENV);
    if (fromEnv != null && fromEnv.isBlank()) {
      throw new IllegalArgumentException(
          API_KEY_ENV + " is set but empty; unset it to serve without a key, or set the key");
    }
    return fromEnv == null ? null : fromEnv.strip();
  }

  static void checkShutdownGrace(int seconds) {
    if (seconds < 0) {
      throw new IllegalArgumentException("--shutdown-grace must be >= 0 seconds, got " + seconds);
    }
  }

  /**
   * Refuses a {@code --kv-memory} too small for the smallest request (one prompt token, one
   * generated) under the default spec: such a server could never admit anything. A spec that does
   * not fit the model is left to the server, which names the bad part.
   */
  static void requireRoomForOneRequest(
      String kvMemory, KvSpec spec, ModelConfig config, int prefillChunk) {
    long memory = kvMemoryBytes(kvMemory);
    long need;
    try {
      need = KvPlan.of(spec, new BlockPool(), config, prefillChunk).estimateBytes(1, 1);
    } catch (IllegalArgumentException e) {
      return;
    }
    if (memory < need) {
      throw new IllegalArgumentException(
          "--kv-memory "
              + kvMemory.strip()
              + " cannot hold the KV cache of even a one-token request with --kv '"
              + spec.text()
              + "' on this model (at least "
              + need
              + " bytes, e.g. "
              + Format.bytes(need)
              + ")");
    }
  }

  static long kvMemoryBytes(String text) {
    Budget b;
    try {
      b = Budget.parse(text);
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException(
          "--kv-memory must be a size like 512MiB, 2GiB or 1TiB, got '" + text + "'");
    }
    if (b.kind() != Budget.Kind.BYTES) {
      throw new IllegalArgumentException(
          "--kv-memory must be a size like 512MiB or 2GiB, got '" + text + "'");
    }
    return (long) b.value();
  }
}
