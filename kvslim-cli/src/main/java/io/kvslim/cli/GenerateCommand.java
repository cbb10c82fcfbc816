package io.kvslim.cli;

import io.kvslim.engine.Engine;
import io.kvslim.engine.Generator;
import io.kvslim.engine.Sampler;
import io.kvslim.engine.SamplerConfig;
import io.kvslim.model.Model;
import io.kvslim.tokenizer.Tokenizer;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code kvslim generate}: streams a completion of a prompt, then prints speeds. */
@Command(
    name = "generate",
    mixinStandardHelpOptions = true,
    description = "Generate text from a prompt, streaming tokens as they come.")
public final class GenerateCommand implements Callable<Integer> {
  @Mixin ModelOptions modelOptions;
  @Mixin KvOptions kvOptions;
  @Mixin NumericsOptions numericsOptions;
  @Mixin ClusterOptions clusterOptions;
  @Mixin KvTierOptions tierOptions;

  @Option(
      names = {"-p", "--prompt"},
      required = true,
      description = "The prompt text.")
  String prompt;

  @Option(
      names = {"-n", "--n-predict"},
      description = "Tokens to generate (default ${DEFAULT-VALUE}).")
  int maxTokens = 128;

  @Option(names = "--temp", description = "Temperature; 0 = greedy (default ${DEFAULT-VALUE}).")
  float temperature = 0.8f;

  @Option(names = "--top-k", description = "Top-k, 0 = off (default ${DEFAULT-VALUE}).")
  int topK = 40;

  @Option(names = "--top-p", description = "Top-p, 1 = off (default ${DEFAULT-VALUE}).")
  float topP = 0.95f;

  @Option(names = "--min-p", description = "Min-p, 0 = off (default ${DEFAULT-VALUE}).")
  float minP = 0.05f;

  @Option(
      names = "--repeat-penalty",
      description = "Repetition penalty, 1 = off (default ${DEFAULT-VALUE}).")
  float repeatPenalty = 1.0f;

  @Option(
      names = "--repeat-last-n",
      description = "Tokens the penalty looks back over (default ${DEFAULT-VALUE}).")
  int repeatLastN = 64;

  @Option(names = "--seed", description = "Random seed (default ${DEFAULT-VALUE}).")
  long seed = 42;

  @Option(names = "--no-bos", description = "Do not add the BOS token.")
  boolean noBos;

  @Option(
      names = "--parse-special",
      description = "Map special-token text (e.g. <|im_start|>) to ids.")
  boolean parseSpecial;

  @Option(
      names = "--explain",
      description =
          "After generating, print per layer and KV head what the cache holds: tokens, bytes and"
              + " tokens per format (auto's plan as carried out).")
  boolean explain;

  @Override
  public Integer call() {
    if (maxTokens < 0) {
      throw new IllegalArgumentException("--n-predict must be >= 0, got " + maxTokens);
    }
    SamplerConfig sc =
        new SamplerConfig(temperature, topK, topP, minP, repeatPenalty, repeatLastN, seed);
    kvOptions.calibrate(modelOptions); // --calib: the profile a spec needs and names none
    clusterOptions.check(kvOptions);
    tierOptions.check();
    if (clusterOptions.enabled() && !tierOptions.tiers.isEmpty()) {
      throw new IllegalArgumentException(
          "--kv-tier cannot be combined with --cluster: the cluster's members hold the blocks");
    }
    var spill = tierOptions.spillStorage(); // spill=true methods' cold blocks, with --kv-tier
    var kvPool = new io.kvslim.kv.store.BlockPool().withColdStorage(spill);
    var specFactory = io.kvslim.engine.KvSpecs.factory(kvOptions.parsed(), kvPool);
    io.kvslim.kv.cache.ManagedKvCache[] held = new io.kvslim.kv.cache.ManagedKvCache[1];
    String[] table = {null};
    io.kvslim.engine.KvCacheFactory kvFactory =
        cfg -> {
          var c = specFactory.create(cfg);
          held[0] = c instanceof io.kvslim.kv.cache.ManagedKvCache m ? m : null;
          return c;
        };
    var numerics = numericsOptions.numerics();
    try (var spillStorage = spill;
        var cluster = clusterOptions.enabled() ? clusterOptions.join(kvOptions) : null;
        Model model = modelOptions.load();
        Engine engine =
            modelOptions.engine(
                model,
                cluster != null ? cluster.cacheFactory(clusterOptions.blockTokens) : kvFactory,
                numerics)) {
      Tokenizer tok = Tokenizer.fromGguf(model.file());
      int[] ids = tok.encode(prompt, !noBos, parseSpecial);
      PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
      out.print(prompt);
      out.flush();
      var dec = tok.streamingDecoder(false);
      var prefix = tierOptions.open(model.config(), numerics);
      Generator generator = new Generator(engine);
      if (prefix != null) {
        generator.withPrefixCache(prefix, kvOptions.spec());
      }
      Generator.Result r =
          generator.generate(
              ids,
              maxTokens,
              new Sampler(sc),
              tok::isEog,
              t -> {
                if (explain && held[0] != null) {
                  table[0] = io.kvslim.kv.cache.HeadTable.of(held[0]);
                }
                out.print(dec.feed(t));
                out.flush();
                return true;
              });
      out.print(dec.flush());
      out.println();
      System.err.printf(
          "prompt: %d tokens, %.1f tokens/s | generation: %d tokens, %.1f tokens/s | stop: %s"
              + " | KV %s (%s), %d threads%n",
          r.promptTokens(),
          r.prefillTokensPerSecond(),
          r.generatedTokens(),
          r.decodeTokensPerSecond(),
          r.stopReason().name().toLowerCase(),
          Format.bytes(r.kvBytesFinal()),
          kvOptions.spec(),
          engine.threads());
      if (explain) {
        System.err.print(table[0] != null ? table[0] : "--explain: no token was generated\n");
      }
      var cfg = model.config();
      long tokens = r.promptTokens() + r.generatedTokens();
      long f16 = tokens * cfg.layers() * cfg.kvHeads() * cfg.headDim() * 2L * 2L;
      System.err.printf(
          "KV cache: holds %s (peak %s) for %d tokens; a full F16 cache would hold %s: %.2fx"
              + " smaller%n",
          Format.bytes(r.kvBytesFinal()),
          Format.bytes(r.kvBytesPeak()),
          tokens,
          Format.bytes(f16),
          f16 / (double) Math.max(1, r.kvBytesFinal()));
      if (held[0] != null && held[0].bytesFetched() >= 0) { // a policy spills
        System.err.printf("KV RAM peak, inside steps too: %s%n", Format.bytes(kvPool.peakBytes()));
      }
      if (spill != null && spill.stats().blocksSpilled.get() > 0) {
        var st = spill.stats();
        System.err.printf(
            "KV spill (%s): %d blocks, %s spilled; %d blocks, %s fetched back (%s per generated"
                + " token)%s%n",
            spill.name(),
            st.blocksSpilled.get(),
            Format.bytes(st.bytesSpilled.get()),
            st.blocksFetched.get(),
            Format.bytes(st.bytesFetched.get()),
            Format.bytes(st.bytesFetched.get() / Math.max(1, r.generatedTokens())),
            (st.fallbacks.get() > 0 ? "; " + st.fallbacks.get() + " fallbacks to a local file" : "")
                + (st.recomputes.get() > 0
                    ? "; " + st.recomputes.get() + " sequence(s) recomputed after a lost block"
                    : ""));
      }
      if (prefix != null) {
        var st = prefix.stats();
        System.err.printf(
            "KV tiers: %d of %d prompt tokens restored instead of prefilled; %s read, %s written"
                + " (%d blocks stored, %d rejected)%n",
            generator.restoredTokens(),
            r.promptTokens(),
            Format.bytes(st.bytesRead.get()),
            Format.bytes(st.bytesWritten.get()),
            st.stored.get(),
            st.rejected.get());
        prefix.close();
      }
      return 0;
    }
  }
}
