package io.kvslim.cli;

import io.kvslim.bench.BenchConfig;
import io.kvslim.bench.BenchOutput;
import io.kvslim.bench.QualityRunner;
import io.kvslim.bench.ResultStore;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.Model;
import io.kvslim.model.Numerics;
import io.kvslim.tensor.Parallel;
import io.kvslim.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code kvslim bench quality}: the quality tasks for the full cache and each spec. */
@Command(
    name = "quality",
    mixinStandardHelpOptions = true,
    description = {
      "Run the quality tasks (perplexity with KL divergence and top-1 agreement, passkey, needle in"
          + " a haystack, RULER-style tasks, code completion, retrieval in real Python code) for"
          + " the full cache and each --kv"
          + " spec on the same inputs, and write results.json, results.csv, report.md,"
          + " report.html and charts into --out."
    })
public final class BenchQualityCommand implements Callable<Integer> {
  @Option(
      names = {"-m", "--model"},
      paramLabel = "MODEL",
      description = "GGUF model file(s); default: the config's models.")
  List<Path> models = new ArrayList<>();

  @Option(
      names = {"-t", "--threads"},
      paramLabel = "T",
      description = "Worker threads (default: the number of CPUs, ${DEFAULT-VALUE}).")
  int threads = Parallel.defaultThreads();

  @Mixin NumericsOptions numericsOptions;
  @Mixin KvTierOptions tierOptions;

  @Option(
      names = "--kv",
      paramLabel = "SPEC",
      description = "KV spec(s) compared with the full cache; default: the suite's.")
  List<String> specs = new ArrayList<>();

  @Option(
      names = "--task",
      split = ",",
      paramLabel = "TASK",
      description =
          "Tasks: ppl, passkey, niah, ruler, code, pycode (all three of pycode:assign,"
              + " pycode:vt, pycode:arg) (default: all).")
  List<String> tasks;

  @Option(names = "--lengths", split = ",", paramLabel = "L", description = "Prompt lengths.")
  List<Integer> lengths;

  @Option(
      names = "--depths",
      split = ",",
      paramLabel = "D",
      description = "Needle depths in [0,1].")
  List<Double> depths;

  @Option(names = "--samples", paramLabel = "N", description = "Cases per length and depth.")
  Integer samples;

  @Option(names = "--seed", paramLabel = "S", description = "Seed of the generated inputs.")
  Long seed;

  @Option(names = "--ppl-text", paramLabel = "FILE", description = "UTF-8 text for ppl.")
  Path pplText;

  @Option(names = "--ppl-ctx", paramLabel = "N", description = "ppl window in tokens.")
  Integer pplCtx;

  @Option(
      names = "--calib",
      paramLabel = "TEXT",
      description =
          "UTF-8 text the specs that need a calibration profile and name none are calibrated on"
              + " (the profile 'kvslim calibrate -f TEXT' would write, kept as"
              + " DIR/calibration-profile.json); default: the built-in code corpus.")
  Path calib;

  @Option(
      names = "--suite",
      paramLabel = "NAME",
      description = "Preset: quick (minutes on a tiny model) or full (default ${DEFAULT-VALUE}).")
  String suite = "quick";

  @Option(names = "--config", paramLabel = "FILE", description = "JSON config (see config.json).")
  Path configFile;

  @Option(names = "--resume", description = "Keep the records in DIR/results.json; skip them.")
  boolean resume;

  @Option(
      names = "--explain",
      description =
          "ppl: print per layer and KV head what each spec's cache holds after the first window"
              + " (auto's plan as carried out).")
  boolean explain;

  @Option(names = "--out", required = true, paramLabel = "DIR", description = "Output folder.")
  Path out;

  @Override
  public Integer call() throws IOException {
    Numerics numerics = numericsOptions.numerics();
    BenchConfig config = config();
    config.explain = explain;
    List<String> specTexts = new ArrayList<>();
    for (String s : config.specs) {
      // a bad spec fails before any model is loaded; one that needs a calibration profile and
      // names none is parsed once the run has calibrated the model (QualityRunner)
      specTexts.add(KvSpec.lacksProfile(s) ? s : KvSpec.parse(s).text());
    }
    List<Path> modelPaths = new ArrayList<>();
    for (String m : config.models) {
      modelPaths.add(ModelOptions.requireFile(Path.of(m), "model file"));
    }
    ModelOptions.checkThreads(threads);
    Files.createDirectories(out);
    ResultStore store = ResultStore.open(out, resume);
    store.setEnvironment(io.kvslim.bench.Environment.describe(threads));
    config.write(out.resolve("config.json"));
    tierOptions.check();
    for (Path mp : modelPaths) {
      try (var spill = tierOptions.spillStorage(); // spill=true methods' cold blocks
          Model model = Model.load(mp);
          Engine engine =
              new Engine(model, threads, KvSpecs.factory(KvSpec.FULL, new BlockPool()), numerics)) {
        Tokenizer tok = Tokenizer.fromGguf(model.file());
        QualityRunner runner =
            new QualityRunner(
                engine,
                tok,
                mp.getFileName().toString(),
                config,
                specTexts,
                store,
                BenchOutput.stamp(mp, threads, numerics, store.environment()),
                out,
                spill);
        runner.run();
        if (spill != null) {
          System.err.println("kvslim: KV spill into " + spill.name() + ": " + spill.stats());
        }
      }
    }
    BenchOutput.writeReports(out, store);
    return 0;
  }

  private BenchConfig config() {
    BenchConfig c;
    Path saved = out.resolve("config.json");
    if (configFile != null) {
      c = BenchConfig.read(configFile);
    } else if (resume && Files.isRegularFile(saved)) {
      c = BenchConfig.read(saved);
    } else {
      c = BenchConfig.suite(suite);
    }
    for (Path m : models) {
      if (!c.models.contains(m.toString())) {
        c.models.add(m.toString());
      }
    }
    if (!models.isEmpty()) {
      c.models.retainAll(models.stream().map(Path::toString).toList());
    }
    if (!specs.isEmpty()) {
      c.specs = new ArrayList<>(specs);
    }
    if (tasks != null) {
      c.tasks = new ArrayList<>(tasks);
    }
    if (lengths != null) {
      c.lengths = new ArrayList<>(lengths);
    }
    if (depths != null) {
      c.depths = new ArrayList<>(depths);
    }
    if (samples != null) {
      c.samples = samples;
    }
    if (seed != null) {
      c.seed = seed;
    }
    if (pplText != null) {
      c.ppl.text = pplText.toString();
    }
    if (pplCtx != null) {
      c.ppl.ctx = pplCtx;
    }
    if (calib != null) {
      c.calib = ModelOptions.requireFile(calib, "--calib text").toString();
    }
    c.validate();
    return c;
  }
}
