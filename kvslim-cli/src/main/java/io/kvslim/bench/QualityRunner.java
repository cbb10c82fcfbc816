package io.kvslim.bench;

import io.kvslim.calibrate.Calibrator;
import io.kvslim.calibrate.ModelIdentity;
import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.KvCaches;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.ModelConfig;
import io.kvslim.tokenizer.Tokenizer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Runs the quality tasks of one model for the full-cache baseline and every spec, on the same
 * inputs in one process, and turns them into records: perplexity with KL divergence and top-1
 * agreement against the baseline (ppl, code NLL, {@link QualityNll}), and exact match on the
 * retrieval tasks ({@link QualityRetrieval}).
 */
public final class QualityRunner {
  private final Engine engine;
  private final Tokenizer tokenizer;
  private final BenchConfig config;
  private final List<String> specTexts; // "full" first
  private final List<KvCaches> caches;
  private final ResultStore store;
  private final Map<String, Object> stamp;
  private final Path outDir;
  private final String modelName;
  private final RetrievalTasks tasks;
  private final List<int[]> groups; // spec indices prefilled together, "full"'s group first
  private final QualityNll nll;
  private final QualityRetrieval retrieval;
  private Progress progress;
  private long advanced;

  /**
   * @param specs the specs to compare; the baseline "full" is added first when missing
   * @param stamp fields added to every record (model hash, threads, environment)
   * @param cold where spilling caches put their cold blocks (null: spill files)
   */
  public QualityRunner(
      Engine engine,
      Tokenizer tokenizer,
      String modelName,
      BenchConfig config,
      List<String> specs,
      ResultStore store,
      Map<String, Object> stamp,
      Path outDir,
      io.kvslim.kv.store.ColdStorage cold) {
    this.engine = engine;
    this.tokenizer = tokenizer;
    this.config = config;
    this.store = store;
    this.stamp = stamp;
    this.outDir = outDir;
    this.modelName = modelName;
    this.specTexts = new ArrayList<>();
    this.specTexts.add("full");
    for (String s : profiled(engine, tokenizer, specs, config.seed, config.calib, outDir)) {
      String t = KvSpec.parse(s).text();
      if (!specTexts.contains(t)) {
        specTexts.add(t);
      }
    }
    this.caches = new ArrayList<>();
    for (String s : specTexts) {
      // built up front, so a spec that does not fit the model fails before any work
      caches.add(
          KvSpecs.caches(KvSpec.parse(s), new BlockPool().withColdStorage(cold), engine.config()));
    }
    this.tasks = new RetrievalTasks(tokenizer, config.niah, CodeCorpus.builtIn(), config.seed);
    this.groups = groups(caches, config.share);
    this.nll = new QualityNll(this, engine, tokenizer, config, tasks);
    this.retrieval = new QualityRetrieval(this, engine, tokenizer, config, tasks);
  }

  /**
   * The specs, with a calibration profile added to those whose methods need one and name none (the
   * full suite's {@code razor} and {@code duo}): calibrated here once, before any timing ({@link
   * ProfileRun}), and written to {@code OUT/calibration-profile.json}. On {@code calib} (the {@code
   * --calib} text) with {@code kvslim calibrate}'s defaults, so the profile is the one {@code
   * kvslim calibrate -f calib} writes; without, on the first 8,192 tokens of the built-in code
   * corpus with the suite's seed.
   */
  static List<String> profiled(
      Engine engine,
      Tokenizer tokenizer,
      List<String> specs,
      long seed,
      String calib,
      Path outDir) {
    if (specs.stream().noneMatch(KvSpec::lacksProfile)) {
      return specs;
    }
    Path file;
    try {
      if (outDir != null) {
        java.nio.file.Files.createDirectories(outDir);
        file = outDir.resolve("calibration-profile.json");
      } else {
        file = java.nio.file.Files.createTempFile("kvslim-profile", ".json");
        file.toFile().deleteOnExit();
      }
      Path model = io.kvslim.model.Model.fileOf(engine.config());
      if (calib != null) {
        Path textFile = Path.of(calib);
        byte[] bytes = java.nio.file.Files.readAllBytes(textFile);
        ProfileRun.write(
            engine,
            model,
            tokenizer,
            ProfileRun.utf8(bytes, textFile),
            textFile.getFileName().toString(),
            ModelIdentity.sha256Of(bytes),
            ProfileRun.DEFAULTS,
            false,
            file);
      } else {
        String text = CodeCorpus.builtIn().text();
        ProfileRun.write(
            engine,
            model,
            tokenizer,
            text,
            "kvslim built-in code corpus",
            ModelIdentity.sha256Of(text.getBytes(java.nio.charset.StandardCharsets.UTF_8)),
            new Calibrator.Options(8192, seed, 0, 4),
            false,
            file);
      }
    } catch (java.io.IOException e) {
      throw new java.io.UncheckedIOException("cannot write the calibration profile", e);
    }
    return ProfileRun.withProfile(specs, file);
  }

  /**
   * Specs whose caches store the same formats in every layer, in spec order: they take a prompt
   * together. Each spec alone when {@code share} is off.
   */
  static List<int[]> groups(List<KvCaches> caches, boolean share) {
    List<List<Integer>> gs = new ArrayList<>();
    List<ManagedKvCache> probes = new ArrayList<>();
    try {
      for (int s = 0; s < caches.size(); s++) {
        ManagedKvCache probe = caches.get(s).create();
        probes.add(probe);
        List<Integer> into = null;
        if (share) {
          for (List<Integer> g : gs) {
            ManagedKvCache first = probes.get(g.get(0));
            boolean oneShot = // a cache compressing inside its prefill takes it alone
                first.prefillChunk() == Integer.MAX_VALUE
                    && probe.prefillChunk() == Integer.MAX_VALUE
                    && !first.thinsPrefill()
                    && !probe.thinsPrefill();
            if (oneShot && first.sameFormats(probe)) {
              into = g;
              break;
            }
          }
        }
        if (into == null) {
          into = new ArrayList<>();
          gs.add(into);
        }
        into.add(s);
      }
    } finally {
      for (ManagedKvCache p : probes) {
        p.close();
      }
    }
    List<int[]> out = new ArrayList<>();
    for (List<Integer> g : gs) {
      out.add(g.stream().mapToInt(Integer::intValue).toArray());
    }
    return out;
  }

  /** The specs' groups (indices into {@link #specs()}) that take a prompt together. */
  public List<int[]> groups() {
    return groups;
  }

  /**
   * Fresh caches for the specs of {@code group}, into {@code cs}, and the prompt {@code
   * tokens[0..n)} prefilled into all of them at once.
   */
  void prefillGroup(
      int[] group, KvCache[] cs, int[] tokens, int n, boolean allLogits, float[] out) {
    List<ManagedKvCache> members = new ArrayList<>();
    for (int s : group) {
      ManagedKvCache c = caches.get(s).create();
      cs[s] = c;
      members.add(c);
    }
    KvCache target = members.size() == 1 ? members.get(0) : ManagedKvCache.sharedPrefill(members);
    engine.prefill(target, tokens, 0, n, 0, allLogits, out);
  }

  public List<String> specs() {
    return specTexts;
  }

  /** The folder the records and {@code nll/*.tsv} files go to. */
  Path outDir() {
    return outDir;
  }

  /** F16 bytes a full cache of {@code tokens} tokens would hold: the compression ratio's base. */
  public static long f16Bytes(ModelConfig c, long tokens) {
    return tokens * c.layers() * c.kvHeads() * c.headDim() * 2L * 2L;
  }

  /** One unit of work: a task at one setting. */
  record Unit(String task, int length, Double depth, long weight) {}

  private List<Unit> plan() {
    List<Unit> units = new ArrayList<>();
    int ctxMax = engine.config().contextLength();
    int n = specTexts.size();
    for (String t : config.tasks) {
      if (t.equals("ppl") || t.equals("code")) {
        int ctx = Math.min(config.ppl.ctx, ctxMax);
        units.add(new Unit(t + ":nll", ctx, null, (long) ctx * config.ppl.windows * n * 2));
      }
      if (t.equals("ppl")) {
        continue;
      }
      List<String> named = new ArrayList<>();
      if (t.equals("ruler")) {
        for (String v : config.rulerVariants) {
          named.add("ruler:" + v);
        }
      } else if (t.equals("pycode")) {
        named.addAll(CodeRetrievalTasks.TASKS);
      } else {
        named.add(t);
      }
      for (String task : named) {
        for (int len : config.lengths) {
          if (len + 16 > ctxMax) {
            continue; // leaves no room to answer within the model's context
          }
          if (RetrievalTasks.hasDepth(task)) {
            for (double d : config.depths) {
              units.add(new Unit(task, len, d, (long) len * config.samples * n));
            }
          } else {
            units.add(new Unit(task, len, null, (long) len * config.samples * n));
          }
        }
      }
    }
    return units;
  }

  public void run() {
    List<Unit> units = plan();
    long total = 0;
    for (Unit u : units) {
      total += u.weight();
    }
    progress = Progress.onStderr(total);
    for (Unit u : units) {
      String label = u.task() + " L=" + u.length() + (u.depth() == null ? "" : " d=" + u.depth());
      if (allDone(u)) {
        progress.advance(u.weight(), label + " (resumed)");
        continue;
      }
      long before = advanced;
      List<Map<String, Object>> out =
          u.task().endsWith(":nll") ? nll.run(u, label) : retrieval.run(u);
      store.add(out);
      advance(Math.max(0, u.weight() - (advanced - before)), label);
    }
    progress.finish();
  }

  /** Reports {@code units} of work done on the current unit. */
  void advance(long units, String label) {
    advanced += units;
    progress.advance(units, label);
  }

  /** A record of {@code spec}'s result on {@code u}, with its identity fields only. */
  Map<String, Object> identity(Unit u, String spec) {
    String task = u.task();
    String variant = "";
    if (task.endsWith(":nll")) {
      task = task.substring(0, task.length() - 4);
      variant = task.equals("code") ? "nll" : "";
    } else if (task.startsWith("ruler:") || task.startsWith("pycode:")) {
      variant = task.substring(task.indexOf(':') + 1);
      task = task.substring(0, task.indexOf(':'));
    } else if (task.equals("code")) {
      variant = "next_line";
    }
    return ResultStore.record(modelName, spec, task, variant, u.length(), u.depth());
  }

  private boolean allDone(Unit u) {
    for (String s : specTexts) {
      if (!store.has(identity(u, s))) {
        return false;
      }
    }
    return true;
  }

  /** {@code r} with the run's stamp (model hash, threads, environment). */
  Map<String, Object> finish(Map<String, Object> r) {
    r.putAll(stamp);
    return r;
  }

  /** The KV byte fields of a record: held, peak, a full F16 cache's, and their ratio. */
  static void putBytes(Map<String, Object> r, long bytes, long f16, long peak) {
    r.put("kv_bytes", bytes);
    r.put("kv_bytes_peak", peak);
    r.put("kv_bytes_f16_full", f16);
    r.put("compression_ratio", bytes == 0 ? Double.NaN : f16 / (double) bytes);
  }
}
