package io.kvslim.server;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.javalin.Javalin;
import io.javalin.compression.CompressionStrategy;
import io.javalin.http.Context;
import io.javalin.http.HttpResponseException;
import io.kvslim.chat.ChatTemplate;
import io.kvslim.chat.ChatTemplateException;
import io.kvslim.engine.Engine;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.tier.PrefixCache;
import io.kvslim.server.SequenceEvent.FinishReason;
import io.kvslim.tokenizer.Tokenizer;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Pattern;
import org.eclipse.jetty.server.AbstractConnector;

/**
 * The OpenAI-compatible HTTP API (DESIGN.md §5) on Javalin: {@code POST /v1/completions}, {@code
 * POST /v1/chat/completions} (both also streaming as server-sent events), {@code GET /v1/models},
 * {@code GET /health} and {@code GET /metrics} (Prometheus). Handlers only parse, check and write:
 * the {@link Scheduler} thread runs the model. Every error, Jetty's own included (headers too
 * large, a malformed request), is OpenAI's JSON error object, a client's with a 4xx status and
 * never logged as the server's. A client that closes its connection ends its sequence at once,
 * streaming or not ({@link ClientWatch}); a connection silent for the idle timeout is closed.
 */
public final class OpenAiServer implements AutoCloseable {
  /** Default {@code max_tokens} of {@code /v1/completions}, as in OpenAI's API. */
  public static final int DEFAULT_COMPLETION_TOKENS = 16;

  private static final long KEEP_ALIVE_MILLIS = 2000;

  /** HTTP status of a request whose client left before its answer (nginx's convention). */
  private static final int CLIENT_CLOSED = 499;

  /** Marks a response whose error body is written, so Javalin's 404 handler keeps it. */
  private static final String ERROR_WRITTEN = "kvslim.error";

  private static final Pattern PLAIN_MODEL_ID = Pattern.compile("[A-Za-z0-9._:/@+-]{1,64}");
  private static final Set<String> ENDPOINTS =
      Set.of("/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics");

  private final Engine engine;
  private final Tokenizer tokenizer;
  private final ServerConfig config;
  private final ChatTemplate template;
  private final BlockPool pool;
  private final ServerMetrics metrics;
  private final Scheduler scheduler;
  private final KvPlan defaultPlan;
  private final Map<String, KvPlan> plans;
  private final ObjectMapper json = new ObjectMapper();
  private final long created = System.currentTimeMillis() / 1000;
  private final Javalin app;
  private volatile boolean stopping;
  private final AtomicInteger inFlight = new AtomicInteger();
  private PrefixCache prefixCache;
  private io.kvslim.kv.store.ColdStorage coldStorage; // --kv-tier for spill=true methods

  /**
   * Builds the server over a loaded engine; {@link #start()} opens the port.
   *
   * @param chatTemplate the GGUF {@code tokenizer.chat_template} (run with Jinja), or null for the
   *     ChatML fallback
   * @throws ApiException if the default KV spec is bad (its message names the bad part)
   */
  public OpenAiServer(
      Engine engine, Tokenizer tokenizer, String chatTemplate, ServerConfig config) {
    this.engine = engine;
    this.tokenizer = tokenizer;
    this.config = config;
    this.template = ChatTemplate.of(chatTemplate, tokenizer);
    this.pool = new BlockPool(config.kvMemoryBytes());
    this.defaultPlan =
        KvPlan.resolve(config.defaultKv(), pool, engine.config(), config.prefillChunk());
    this.plans =
        new LinkedHashMap<>(16, 0.75f, true) {
          @Override
          protected boolean removeEldestEntry(Map.Entry<String, KvPlan> e) {
            return size() > 64;
          }
        };
    this.metrics = new ServerMetrics(pool);
    this.scheduler = new Scheduler(engine, tokenizer, pool, config, metrics);
    this.app =
        Javalin.create(
            cfg -> {
              cfg.startup.showJavalinBanner = false;
              cfg.startup.showOldJavalinVersionWarning = false;
              cfg.http.compressionStrategy = CompressionStrategy.NONE;
              cfg.http.maxRequestSize = RequestBody.MAX_BYTES;
              cfg.jetty.modifyServer(server -> server.setErrorHandler(new JsonErrorHandler()));
              cfg.concurrency.useVirtualThreads = true;
              cfg.requestLogger.http(
                  (ctx, ms) ->
                      metrics.request(
                          ENDPOINTS.contains(ctx.path()) ? ctx.path() : "other", ctx.statusCode()));
              cfg.routes.before("/v1/*", this::authorize);
              cfg.routes.before("/metrics", this::authorize);
              cfg.routes.post("/v1/completions", ctx -> completions(ctx, false));
              cfg.routes.post("/v1/chat/completions", ctx -> completions(ctx, true));
              cfg.routes.get("/v1/models", this::models);
              cfg.routes.get("/health", this::health);
              cfg.routes.get("/metrics", this::prometheus);
              cfg.routes.exception(ApiException.class, (e, ctx) -> error(ctx, e));
              cfg.routes.exception(
                  HttpResponseException.class,
                  (e, ctx) -> error(ctx, JsonErrorHandler.forStatus(e.getStatus())));
              cfg.routes.exception(
                  Exception.class,
                  (e, ctx) -> {
                    ApiException clients = RequestBody.failure(e, -1);
                    if (clients != null) {
                      error(ctx, clients);
                      return;
                    }
                    System.err.println("kvslim: internal error on " + ctx.path() + ": " + e);
                    error(
                        ctx,
                        new ApiException(500, "internal server error", "server_error", null, null));
                  });
              cfg.routes.error(
                  404,
                  ctx -> {
                    if (ctx.attribute(ERROR_WRITTEN) == null) {
                      error(
                          ctx,
                          new ApiException(
                              404,
                              "no endpoint " + ctx.method() + " " + ctx.path(),
                              ApiException.INVALID_REQUEST,
                              null,
                              "not_found"));
                    }
                  });
            });
  }

  /**
   * Makes every sequence's KV cache with {@code caches} (DistAttention on a cluster: {@code kvslim
   * serve --cluster}) instead of the default plan's; requests may then not name another kv spec. A
   * cluster member lost mid-request ends it with a 503 naming the member. Call before {@link
   * #start}.
   */
  public OpenAiServer useCaches(io.kvslim.engine.KvCacheFactory caches) {
    clustered = caches != null;
    scheduler.useCaches(caches);
    return this;
  }

  private volatile boolean clustered;

  /**
   * Opens the port; returns this.
   *
   * @throws java.io.UncheckedIOException saying in one sentence why the address cannot be bound
   */
  public OpenAiServer start() {
    try {
      app.start(config.host(), config.port());
    } catch (RuntimeException e) {
      scheduler.shutdown(0);
      throw ListenAddress.bindFailure(config.host(), config.port(), e);
    }
    // silent connections: idle between requests, or a head or body that stopped coming (a request
    // being generated is not cut by it: Jetty times out pending reads and writes, not handlers)
    for (var connector : app.jettyServer().server().getConnectors()) {
      if (connector instanceof AbstractConnector c) {
        c.setIdleTimeout(config.idleTimeoutMillis());
      }
    }
    return this;
  }

  /**
   * Serves with a prefix cache over KV tiers ({@code --kv-tier}): prompts restore their longest
   * stored prefix instead of prefilling it, and its counters are in {@code /metrics}. The cache's
   * tiers are closed with the server.
   */
  public OpenAiServer usePrefixCache(PrefixCache cache) {
    this.prefixCache = cache;
    metrics.bindTiers(cache);
    scheduler.usePrefixCache(cache);
    return this;
  }

  /**
   * Spilling caches ({@code spill=true} methods) put their cold blocks in {@code storage} ({@code
   * --kv-tier}) instead of temporary files. The storage is closed with the server.
   */
  public OpenAiServer useColdStorage(io.kvslim.kv.store.ColdStorage storage) {
    this.coldStorage = storage;
    pool.withColdStorage(storage);
    metrics.bindSpill(storage);
    return this;
  }

  /** The port listened on (the ephemeral one when started with port 0). */
  public int port() {
    return app.port();
  }

  public Scheduler scheduler() {
    return scheduler;
  }

  public BlockPool pool() {
    return pool;
  }

  public ServerMetrics metrics() {
    return metrics;
  }

  public ChatTemplate chatTemplate() {
    return template;
  }

  /**
   * Graceful shutdown: new requests get 503, running sequences may finish within {@code
   * graceMillis} (then they end with an error event), then the HTTP server stops. Every cache is
   * closed, so the pool is back to zero.
   */
  public void shutdown(long graceMillis) {
    stopping = true;
    scheduler.shutdown(graceMillis);
    // let handlers write the last events of the sequences that just ended
    long deadline = System.nanoTime() + 2_000_000_000L;
    while (inFlight.get() > 0 && System.nanoTime() < deadline) {
      try {
        Thread.sleep(5);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        break;
      }
    }
    app.stop();
    if (prefixCache != null) {
      prefixCache.close();
    }
    if (coldStorage != null) {
      coldStorage.close();
    }
  }

  @Override
  public void close() {
    shutdown(0);
  }

  private void authorize(Context ctx) {
    if (config.apiKey() == null) {
      return;
    }
    String header = ctx.header("Authorization");
    String given = header != null && header.startsWith("Bearer ") ? header.substring(7).trim() : "";
    if (!MessageDigest.isEqual(
        given.getBytes(StandardCharsets.UTF_8), config.apiKey().getBytes(StandardCharsets.UTF_8))) {
      metrics.rejected("unauthorized");
      throw new ApiException(
          401,
          header == null
              ? "missing API key: send 'Authorization: Bearer <key>'"
              : "invalid API key",
          ApiException.INVALID_REQUEST,
          null,
          "invalid_api_key");
    }
  }

  private void health(Context ctx) {
    ObjectNode body = json.createObjectNode();
    body.put("status", stopping ? "shutting down" : "ok");
    body.put("active_sequences", scheduler.activeSequences());
    body.put("queue_length", scheduler.queueLength());
    writeJson(ctx, stopping ? 503 : 200, body);
  }

  private void prometheus(Context ctx) {
    ctx.contentType("text/plain; version=0.0.4; charset=utf-8");
    ctx.result(metrics.scrape());
  }

  private void models(Context ctx) {
    ObjectNode model = json.createObjectNode();
    model.put("id", config.modelId());
    model.put("object", "model");
    model.put("created", created);
    model.put("owned_by", "kvslim");
    ObjectNode info = model.putObject("kvslim");
    info.put("context_length", engine.config().contextLength());
    info.put("vocab_size", engine.config().vocabSize());
    info.put("default_kv", defaultPlan.text());
    info.put("kv_memory_bytes", pool.limitBytes());
    info.put("chat_template", template.describe());
    ObjectNode body = json.createObjectNode();
    body.put("object", "list");
    body.putArray("data").add(model);
    writeJson(ctx, 200, body);
  }

  private void completions(Context ctx, boolean chat) throws IOException {
    inFlight.incrementAndGet();
    try {
      generate(ctx, chat);
    } finally {
      inFlight.decrementAndGet();
    }
  }

  private void generate(Context ctx, boolean chat) throws IOException {
    if (stopping) {
      throw new ApiException(503, "the server is shutting down", "server_error", null, null);
    }
    CompletionRequest req = CompletionRequest.parse(RequestBody.json(ctx, json), chat);
    checkModel(req.model());
    KvPlan plan = plan(req.kv());
    BlendPrompt blend = BlendPrompt.of(req, tokenizer);
    ChatTemplate.Segmented encoded =
        blend != null ? new ChatTemplate.Segmented(blend.tokens(), null) : promptTokens(req);
    int[] prompt = encoded.tokens();
    int context = engine.config().contextLength();
    int maxTokens;
    if (req.maxTokens() != null) {
      maxTokens = req.maxTokens();
    } else if (chat) {
      maxTokens = fittingMaxTokens(plan, prompt.length, Math.max(0, context - prompt.length));
    } else {
      maxTokens = Math.min(DEFAULT_COMPLETION_TOKENS, Math.max(0, context - prompt.length));
    }
    List<String> stops = new ArrayList<>(req.stop());
    if (chat) {
      stops.add(template.endOfTurn());
    }
    Sequence seq =
        scheduler.submit(
            prompt,
            encoded.segments(),
            maxTokens,
            req.sampling(),
            plan,
            req.ignoreEos(),
            stops,
            blend);
    CompletionResponse r =
        new CompletionResponse(
            json,
            req,
            chat,
            "%s-%d".formatted(chat ? "chatcmpl" : "cmpl", seq.id),
            config.modelId());
    boolean ended = false;
    try {
      ended = req.stream() ? stream(ctx, seq, r) : collect(ctx, seq, r);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } finally {
      if (!ended) {
        // the client left or this handler failed: nobody reads this sequence any more
        seq.cancel();
        scheduler.wakeUp();
      }
    }
  }

  /** A request naming another model than this server's is answered as OpenAI does: 404. */
  private void checkModel(String model) {
    if (model == null || model.equals(config.modelId())) {
      return;
    }
    // the name is echoed only when it is plainly a name, never arbitrary input
    String named =
        PLAIN_MODEL_ID.matcher(model).matches()
            ? "the model '" + model + "' does not exist"
            : "the requested model does not exist";
    throw new ApiException(
        404,
        named + "; this server serves '" + config.modelId() + "' (see GET /v1/models)",
        ApiException.INVALID_REQUEST,
        "model",
        "model_not_found");
  }

  /** The largest default generation limit whose KV estimate the scheduler could ever admit. */
  private int fittingMaxTokens(KvPlan plan, int prompt, int upTo) {
    int lo = 0;
    int hi = upTo;
    while (lo < hi) {
      int mid = (lo + hi + 1) >>> 1;
      if (scheduler.admission().fitsAlone(plan.estimateBytes(prompt, mid))) {
        lo = mid;
      } else {
        hi = mid - 1;
      }
    }
    return lo;
  }

  private KvPlan plan(String kv) {
    if (kv == null || kv.equals(defaultPlan.text())) {
      return defaultPlan;
    }
    if (clustered) {
      throw new ApiException(
          400,
          "this server keeps every KV cache on its cluster (--cluster), so a request cannot choose"
              + " another kv spec; leave kv out",
          ApiException.INVALID_REQUEST,
          "kv",
          "bad_kv_spec");
    }
    KvPlan.refuseProfile(kv);
    synchronized (plans) {
      KvPlan p = plans.get(kv);
      if (p == null) {
        p = KvPlan.resolve(kv, pool, engine.config(), config.prefillChunk());
        plans.put(kv, p);
      }
      return p;
    }
  }

  /** The request's prompt tokens; a chat's come with their segment labels (the others: null). */
  private ChatTemplate.Segmented promptTokens(CompletionRequest req) {
    if (req.promptTokens() != null) {
      return new ChatTemplate.Segmented(req.promptTokens(), null);
    }
    if (req.chat()) {
      try {
        return template.encodeSegmented(tokenizer, req.messages());
      } catch (ChatTemplateException e) {
        throw ApiException.of(e);
      }
    }
    return new ChatTemplate.Segmented(tokenizer.encode(req.prompt(), true, false), null);
  }

  /**
   * Waits for the whole completion, then answers with one JSON object; returns false when the
   * client closed its connection meanwhile (its sequence is cancelled then, not finished).
   */
  private boolean collect(Context ctx, Sequence seq, CompletionResponse r)
      throws InterruptedException {
    StringBuilder text = new StringBuilder();
    List<Integer> tokens = new ArrayList<>();
    try (ClientWatch watch =
        ClientWatch.start(
            ctx,
            () -> {
              seq.cancel();
              scheduler.wakeUp();
            })) {
      while (true) {
        SequenceEvent e = seq.poll(KEEP_ALIVE_MILLIS);
        if (e instanceof SequenceEvent.Delta d) {
          text.append(d.text());
          if (d.token() >= 0) {
            tokens.add(d.token());
          }
        } else if (e instanceof SequenceEvent.Done done) {
          watch.close();
          if (watch.gone() || done.reason() == FinishReason.CANCELLED) {
            ctx.status(CLIENT_CLOSED);
            return false;
          }
          if (watch.closeAfterAnswer()) {
            ctx.header("Connection", "close");
          }
          if (done.reason() == FinishReason.ERROR) {
            error(ctx, new ApiException(503, done.error(), "server_error", null, null));
          } else {
            writeJson(ctx, 200, r.complete(text.toString(), tokens, done));
          }
          return true;
        }
      }
    }
  }

  /**
   * Streams server-sent events as tokens come; returns false when a write failed (the client left).
   */
  private boolean stream(Context ctx, Sequence seq, CompletionResponse r)
      throws InterruptedException {
    ctx.res().setStatus(200);
    ctx.res().setContentType("text/event-stream; charset=utf-8");
    ctx.res().setHeader("Cache-Control", "no-cache");
    ctx.res().setHeader("X-Accel-Buffering", "no");
    try {
      OutputStream out = ctx.res().getOutputStream();
      if (r.chat) {
        send(out, r.chunk("", List.of(), null, true));
      }
      while (true) {
        SequenceEvent e = seq.poll(KEEP_ALIVE_MILLIS);
        if (e == null) {
          out.write(": keep-alive\n\n".getBytes(StandardCharsets.UTF_8));
          out.flush();
        } else if (e instanceof SequenceEvent.Delta d) {
          boolean ids = r.req.returnTokenIds() && d.token() >= 0;
          if (!d.text().isEmpty() || ids) {
            send(out, r.chunk(d.text(), ids ? List.of(d.token()) : List.of(), null, false));
          }
        } else if (e instanceof SequenceEvent.Done done) {
          if (done.reason() == FinishReason.ERROR) {
            send(out, new ApiException(503, done.error(), "server_error", null, null).toJson(json));
          } else {
            ObjectNode last = r.chunk("", List.of(), done.reason().openAiName(), false);
            last.set("kvslim_usage", r.kvUsage(done.usage()));
            send(out, last);
            if (r.req.includeUsage()) {
              ObjectNode usage = r.header();
              usage.putArray("choices");
              usage.set("usage", r.usage(done.usage()));
              usage.set("kvslim_usage", r.kvUsage(done.usage()));
              send(out, usage);
            }
          }
          out.write("data: [DONE]\n\n".getBytes(StandardCharsets.UTF_8));
          out.flush();
          return true;
        }
      }
    } catch (IOException clientGone) {
      return false;
    }
  }

  private void send(OutputStream out, ObjectNode event) throws IOException {
    out.write(
        ("data: " + json.writeValueAsString(event) + "\n\n").getBytes(StandardCharsets.UTF_8));
    out.flush();
  }

  private void error(Context ctx, ApiException e) {
    ctx.attribute(ERROR_WRITTEN, true);
    if (e.status() == 429) {
      ctx.header("Retry-After", "1");
    }
    writeJson(ctx, e.status(), e.toJson(json));
  }

  private void writeJson(Context ctx, int status, ObjectNode body) {
    ctx.status(status);
    ctx.contentType("application/json");
    try {
      ctx.result(json.writeValueAsBytes(body));
    } catch (IOException e) {
      throw new IllegalStateException("cannot serialize a response", e);
    }
  }
}
