package io.kvslim.cli;

import io.kvslim.bench.BenchOutput;
import io.kvslim.bench.Environment;
import io.kvslim.bench.Progress;
import io.kvslim.bench.ReportWriter;
import io.kvslim.bench.ResultStore;
import io.kvslim.bench.ThroughputRunner;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import io.kvslim.model.Numerics;
import io.kvslim.server.ServerConfig;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code kvslim bench throughput}: sequences that fit a KV byte budget, and their tokens/s. */
@Command(
    name = "throughput",
    mixinStandardHelpOptions = true,
    description = {
      "How many sequences of --length tokens fit in --kv-memory bytes of KV cache with each spec"
          + " (admitted as 'kvslim serve' admits requests of --length prompt tokens and --gen"
          + " max_tokens: while each one's estimated KV bytes fit beside the others' reservations),"
          + " and the aggregate decode tokens/s when they decode together; ratios to the full"
          + " cache."
    })
public final class BenchThroughputCommand implements Callable<Integer> {
  @Mixin ModelOptions modelOptions;
  @Mixin NumericsOptions numericsOptions;

  @Option(names = "--kv", paramLabel = "SPEC", description = "KV spec(s); 'full' is always run.")
  List<String> specs = new ArrayList<>();

  @Option(
      names = "--kv-memory",
      paramLabel = "BYTES",
      description = "KV byte budget, e.g. 512MiB, 64MB, 1GiB (default ${DEFAULT-VALUE}).")
  String kvMemory = "512MiB";

  @Option(names = "--length", paramLabel = "L", description = "Prompt tokens per sequence.")
  int length = 512;

  @Option(
      names = "--gen",
      paramLabel = "N",
      description = "Decode steps (default ${DEFAULT-VALUE}).")
  int gen = 16;

  @Option(
      names = "--max-batch",
      paramLabel = "N",
      description = "Admit at most N sequences (default ${DEFAULT-VALUE}).")
  int maxBatch = 256;

  @Option(
      names = "--prefill-chunk",
      paramLabel = "N",
      description =
          "Prompt tokens appended per step, as 'kvslim serve --prefill-chunk' (default"
              + " ${DEFAULT-VALUE}).")
  int prefillChunk = ServerConfig.DEFAULT_PREFILL_CHUNK;

  @Option(names = "--seed", description = "Seed of the random tokens (default ${DEFAULT-VALUE}).")
  long seed = 1;

  @Option(names = "--out", paramLabel = "DIR", description = "Add the results to DIR's report.")
  Path out;

  @Override
  public Integer call() throws IOException {
    Numerics numerics = numericsOptions.numerics();
    long limit = parseBytes(kvMemory);
    List<String> all = new ArrayList<>(List.of("full"));
    for (String s : specs) {
      String t = KvSpec.parse(s).text();
      if (!all.contains(t)) {
        all.add(t);
      }
    }
    ThroughputRunner.Settings settings =
        new ThroughputRunner.Settings(limit, length, gen, maxBatch, prefillChunk, seed);
    try (Model model = modelOptions.load();
        Engine engine =
            modelOptions.engine(model, KvSpecs.factory(KvSpec.FULL, new BlockPool()), numerics)) {
      ThroughputRunner runner = new ThroughputRunner(engine, settings);
      String name = modelOptions.modelPath().getFileName().toString();
      List<Map<String, Object>> records = new ArrayList<>();
      Progress progress = Progress.onStderr((long) all.size() * (length * 16L + gen * 16L));
      for (String s : all) {
        records.addAll(runner.run(name, s, progress));
      }
      progress.finish();
      ThroughputRunner.addRatios(records);
      System.out.printf(
          Locale.ROOT,
          "model %s | %d threads | numerics %s | KV budget %s | length %d + %d decode%n",
          name,
          engine.threads(),
          numerics,
          ReportWriter.bytes(limit),
          length,
          gen);
      System.out.printf(
          Locale.ROOT,
          "%-44s %10s %10s %8s %12s %10s %10s%n",
          "spec",
          "reserved",
          "peak/seq",
          "max seqs",
          "tok/s",
          "seqs/full",
          "tok/s/full");
      for (Map<String, Object> r : records) {
        if ("max".equals(r.get("variant"))) {
          System.out.printf(
              Locale.ROOT,
              "%-44s %10s %10s %8d %12.1f %10.2f %10.2f%n",
              r.get("spec"),
              ReportWriter.bytes(((Number) r.get("kv_bytes_reserved")).doubleValue()),
              ReportWriter.bytes(((Number) r.get("kv_bytes_peak")).doubleValue()),
              ((Number) r.get("max_sequences")).intValue(),
              ((Number) r.get("decode_tokens_per_second")).doubleValue(),
              ((Number) r.getOrDefault("sequences_vs_full", Double.NaN)).doubleValue(),
              ((Number) r.getOrDefault("tokens_per_second_vs_full", Double.NaN)).doubleValue());
        }
      }
      if (out != null) {
        Files.createDirectories(out);
        ResultStore store = ResultStore.open(out, true);
        store.setEnvironment(Environment.describe(engine.threads()));
        Map<String, Object> stamp =
            BenchOutput.stamp(
                modelOptions.modelPath(), engine.threads(), numerics, store.environment());
        for (Map<String, Object> r : records) {
          r.putAll(stamp);
        }
        store.add(records);
        BenchOutput.writeReports(out, store);
      }
    }
    return 0;
  }

  /** "512MiB", "64MB", "1GiB", "1000000" (bytes). */
  static long parseBytes(String s) {
    String t = s.strip().toLowerCase(Locale.ROOT);
    long mult = 1;
    String[][] units = {
      {"kib", "1024"},
      {"mib", "1048576"},
      {"gib", "1073741824"},
      {"kb", "1000"},
      {"mb", "1000000"},
      {"gb", "1000000000"},
      {"k", "1024"},
      {"m", "1048576"},
      {"g", "1073741824"},
      {"b", "1"}
    };
    for (String[] u : units) {
      if (t.endsWith(u[0])) {
        mult = Long.parseLong(u[1]);
        t = t.substring(0, t.length() - u[0].length()).strip();
        break;
      }
    }
    try {
      double v = Double.parseDouble(t);
      if (!(v > 0)) {
        throw new NumberFormatException();
      }
      return (long) (v * mult);
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException(
          "--kv-memory '" + s + "' is not a positive size (e.g. 512MiB, 64MB, 1GiB)");
    }
  }
}
