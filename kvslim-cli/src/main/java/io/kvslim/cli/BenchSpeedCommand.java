package io.kvslim.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import io.kvslim.bench.BenchOutput;
import io.kvslim.bench.Environment;
import io.kvslim.bench.ProfileRun;
import io.kvslim.bench.ResultStore;
import io.kvslim.bench.SpeedBenchmark;
import io.kvslim.bench.SpeedFork;
import io.kvslim.bench.SpeedSuite;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.model.Model;
import io.kvslim.model.Numerics;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code kvslim bench speed}: prefill and decode tokens/s, like llama-bench. */
@Command(
    name = "speed",
    mixinStandardHelpOptions = true,
    description = {
      "Prefill tokens/s for a prompt of P random tokens and decode tokens/s for N steps after a"
          + " prefill of D tokens, for B sequences decoding together; median and spread of R runs"
          + " after --warmup runs. Several --kv specs and --depths are measured in one command,"
          + " the full cache first, each spec in a JVM of its own (--no-fork: all in this one),"
          + " with the time spent in the policies (method overhead)."
    })
public final class BenchSpeedCommand implements Callable<Integer> {
  @Mixin ModelOptions modelOptions;
  @Mixin NumericsOptions numericsOptions;

  @Option(
      names = "--kv",
      paramLabel = "SPEC",
      description =
          "KV cache method(s), e.g. 'snapkv:budget=512 + q8_0' (default: full); see"
              + " 'kvslim kv-methods'. With several, the full cache is measured first.")
  List<String> specs = new ArrayList<>();

  @Option(
      names = "--calib",
      paramLabel = "TEXT",
      description =
          "UTF-8 text to calibrate the model on, before any timing, for the specs that need a"
              + " calibration profile and name none (the profile 'kvslim calibrate -f TEXT' would"
              + " write).")
  Path calib;

  @Option(names = "--prompt", description = "Prompt tokens for prefill (default ${DEFAULT-VALUE}).")
  int prompt = 512;

  @Option(names = "--gen", description = "Decode steps (default ${DEFAULT-VALUE}).")
  int gen = 128;

  @Option(
      names = {"--depth", "--depths"},
      split = ",",
      paramLabel = "D",
      description = "Context depth(s) before decoding, e.g. 512,2048 (default 0).")
  List<Integer> depths = new ArrayList<>();

  @Option(
      names = "--batch",
      description = "Sequences decoding together (default ${DEFAULT-VALUE}).")
  int batch = 1;

  @Option(names = "--repeat", description = "Measured runs (default ${DEFAULT-VALUE}).")
  int repeat = 5;

  @Option(
      names = "--warmup",
      description =
          "Unmeasured runs before them, for the JIT (default ${DEFAULT-VALUE}; llama-bench"
              + " makes one).")
  int warmup = SpeedBenchmark.DEFAULT_WARMUP;

  @Option(names = "--seed", description = "Seed of the random tokens (default ${DEFAULT-VALUE}).")
  long seed = 1;

  @Option(names = "--json", paramLabel = "FILE", description = "Write the results as JSON.")
  Path json;

  @Option(names = "--out", paramLabel = "DIR", description = "Add the results to DIR's report.")
  Path out;

  @Option(
      names = "--fork",
      negatable = true,
      defaultValue = "true",
      fallbackValue = "true",
      description =
          "With several specs, measure each in a JVM of its own, as JMH forks (default; in one"
              + " process the JIT compiles the kernels that formats share with every format's"
              + " type profile, which can slow the later specs down); --no-fork measures all in"
              + " this process.")
  boolean fork = true;

  @Option(
      names = "--forks",
      paramLabel = "N",
      description =
          "JVMs per spec with --fork, their runs pooled (median and spread over all of them, so"
              + " the spread covers the differences between JVM launches; default"
              + " ${DEFAULT-VALUE}).")
  int forks = 1;

  /** A child of --fork: write the runs here instead of printing them. */
  @Option(names = "--run-file", hidden = true)
  Path runFile;

  @Override
  public Integer call() throws IOException {
    Numerics numerics = numericsOptions.numerics(); // a bad name fails before the model loads
    if (forks < 1) {
      throw new IllegalArgumentException("--forks must be >= 1, got " + forks);
    }
    List<String> given = specs.isEmpty() ? List.of("full") : specs;
    for (String s : given) {
      if (calib == null || !KvSpec.lacksProfile(s)) {
        KvSpec.parse(s); // a bad spec fails before the model loads
      }
    }
    boolean calibrates = calib != null && given.stream().anyMatch(KvSpec::lacksProfile);
    if (calibrates) {
      ModelOptions.requireFile(calib, "--calib text");
    }
    List<Integer> ds = depths.isEmpty() ? List.of(0) : depths;
    List<Map<String, Object>> jsonRuns = new ArrayList<>();
    List<Map<String, Object>> records = new ArrayList<>();
    try (Model model = modelOptions.load()) {
      if (calibrates) { // once, before any timing
        Path profile =
            ProfileRun.onTheFly(model, modelOptions.modelPath(), modelOptions.threads, calib);
        given = ProfileRun.withProfile(given, profile);
      }
      List<String> texts = new ArrayList<>();
      for (String s : given) {
        String t = KvSpec.parse(s).text();
        if (!texts.contains(t)) {
          texts.add(t);
        }
      }
      if ((texts.size() > 1 || out != null) && !texts.contains("full")) {
        texts.add(0, "full"); // ratios are to the full cache
      } else if (texts.remove("full")) {
        texts.add(0, "full");
      }
      String name = modelOptions.modelPath().getFileName().toString();
      List<SpeedSuite.Run> all = new ArrayList<>();
      if (fork && runFile == null && texts.size() > 1) {
        // spec by spec, each in its own JVM, all depths there; the full cache comes first
        List<SpeedSuite.Run> full = null;
        for (String spec : texts) {
          List<SpeedSuite.Run> runs = forked(spec, ds, numerics);
          if (spec.equals("full")) {
            full = runs;
          }
          for (int i = 0; i < ds.size(); i++) {
            SpeedSuite.Run run = runs.get(i);
            print(run, ds.get(i));
            jsonRuns.add(json(run, ds.get(i)));
            records.add(SpeedSuite.record(name, run, full == null ? null : full.get(i)));
          }
        }
      } else {
        for (int depth : ds) {
          SpeedBenchmark.Settings s =
              new SpeedBenchmark.Settings(prompt, gen, depth, batch, repeat, warmup, seed);
          SpeedSuite.Run full = null;
          for (String spec : texts) {
            SpeedSuite.Run run = SpeedSuite.measure(model, modelOptions.threads, numerics, spec, s);
            if (spec.equals("full")) {
              full = run;
            }
            all.add(run);
            if (runFile == null) {
              print(run, depth);
            }
            jsonRuns.add(json(run, depth));
            records.add(SpeedSuite.record(name, run, full));
          }
        }
      }
      if (runFile != null) {
        SpeedFork.write(runFile, all);
        return 0;
      }
    }
    if (json != null) {
      Object value = jsonRuns.size() == 1 ? jsonRuns.get(0) : jsonRuns;
      new ObjectMapper()
          .enable(SerializationFeature.INDENT_OUTPUT)
          .writeValue(json.toFile(), value);
    }
    if (out != null) {
      Files.createDirectories(out);
      ResultStore store = ResultStore.open(out, true);
      store.setEnvironment(Environment.describe(modelOptions.threads));
      Map<String, Object> stamp =
          BenchOutput.stamp(
              modelOptions.modelPath(), modelOptions.threads, numerics, store.environment());
      for (Map<String, Object> r : records) {
        r.putAll(stamp);
      }
      store.add(records);
      BenchOutput.writeReports(out, store);
    }
    return 0;
  }

  /** {@code spec} at every depth, measured by this command in a JVM of its own. */
  private List<SpeedSuite.Run> forked(String spec, List<Integer> ds, Numerics numerics)
      throws IOException {
    List<List<SpeedSuite.Run>> all = new ArrayList<>();
    for (int f = 0; f < forks; f++) {
      all.add(forkOnce(spec, ds, numerics));
    }
    List<SpeedSuite.Run> pooled = new ArrayList<>();
    for (int i = 0; i < ds.size(); i++) {
      List<SpeedSuite.Run> atDepth = new ArrayList<>();
      for (List<SpeedSuite.Run> runs : all) {
        atDepth.add(runs.get(i));
      }
      pooled.add(SpeedFork.pool(atDepth));
    }
    return pooled;
  }

  private List<SpeedSuite.Run> forkOnce(String spec, List<Integer> ds, Numerics numerics)
      throws IOException {
    Path file = Files.createTempFile("kvslim-speed-", ".json");
    try {
      List<String> args = new ArrayList<>();
      args.addAll(List.of("bench", "speed", "-m", modelOptions.modelPath().toString()));
      args.addAll(List.of("-t", String.valueOf(modelOptions.threads)));
      args.addAll(List.of("--numerics", numerics.name(), "--kv", spec));
      args.addAll(List.of("--prompt", String.valueOf(prompt), "--gen", String.valueOf(gen)));
      args.add("--depths=" + String.join(",", ds.stream().map(String::valueOf).toList()));
      args.addAll(List.of("--batch", String.valueOf(batch), "--repeat", String.valueOf(repeat)));
      args.addAll(List.of("--warmup", String.valueOf(warmup), "--seed", String.valueOf(seed)));
      args.addAll(List.of("--no-fork", "--run-file", file.toString()));
      SpeedFork.run(args, "'" + spec + "'");
      List<SpeedSuite.Run> runs = SpeedFork.read(file);
      if (runs.size() != ds.size()) {
        throw new IOException(
            "the measurement of '" + spec + "' in its own JVM returned " + runs.size() + " runs");
      }
      return runs;
    } finally {
      Files.deleteIfExists(file);
    }
  }

  private void print(SpeedSuite.Run run, int depth) {
    SpeedBenchmark.Result r = run.result();
    var p = r.prefillTokensPerSecond();
    var d = r.decodeTokensPerSecond();
    System.out.printf(
        Locale.ROOT,
        "model %s | %d threads | numerics %s | KV %s%n"
            + "prefill  pp%-5d %9.1f tokens/s  (min %.1f, max %.1f, ±%.1f%%)%n"
            + "decode   tg%-5d %9.1f tokens/s  (min %.1f, max %.1f, ±%.1f%%) depth %d, batch %d%n"
            + "bandwidth: weights %.2f GB/s + KV %.2f GB/s; KV bytes after decode %s;"
            + " policy %.3f ms/step%n",
        modelOptions.modelPath().getFileName(),
        modelOptions.threads,
        numericsOptions.numerics(),
        run.spec(),
        prompt,
        p.median(),
        p.min(),
        p.max(),
        p.spreadPercent(),
        gen,
        d.median(),
        d.min(),
        d.max(),
        d.spreadPercent(),
        depth,
        batch,
        r.weightGbPerSecond(),
        r.kvGbPerSecond(),
        Format.bytes(r.kvBytesAfterDecode()),
        run.policyMsPerStep());
  }

  private Map<String, Object> json(SpeedSuite.Run run, int depth) {
    SpeedBenchmark.Result r = run.result();
    var p = r.prefillTokensPerSecond();
    var d = r.decodeTokensPerSecond();
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("model", modelOptions.modelPath().toString());
    m.put("kv", run.spec());
    m.put("threads", modelOptions.threads);
    m.put("numerics", numericsOptions.numerics().name());
    m.put("batch", batch);
    m.put("depth", depth);
    m.put("prompt", prompt);
    m.put("gen", gen);
    m.put("repeat", repeat);
    m.put("warmup", warmup);
    m.put("prefill_tokens_per_second", p.median());
    m.put("prefill_tokens_per_second_min", p.min());
    m.put("prefill_tokens_per_second_max", p.max());
    m.put("prefill_tokens_per_second_runs", p.runs());
    m.put("decode_tokens_per_second", d.median());
    m.put("decode_tokens_per_second_min", d.min());
    m.put("decode_tokens_per_second_max", d.max());
    m.put("decode_tokens_per_second_runs", d.runs());
    m.put("weight_gb_per_second", r.weightGbPerSecond());
    m.put("kv_gb_per_second", r.kvGbPerSecond());
    m.put("kv_bytes", r.kvBytesAfterDecode());
    m.put("policy_ms_per_step", run.policyMsPerStep());
    return m;
  }
}
