package io.kvslim.bench;

import io.kvslim.engine.Engine;
import io.kvslim.engine.KvSpecs;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.KvCaches;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.method.KvSpec;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.model.ModelConfig;
import io.kvslim.tokenizer.Tokenizer;
import java.io.BufferedWriter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Runs the quality tasks of one model for the full-cache baseline and every spec, on the same
 * inputs in one process, and turns them into records: perplexity with KL divergence and top-1
 * agreement against the baseline (ppl, code NLL), and exact match on the retrieval tasks.
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
  private Progress progress;
  private long advanced;

  /**
   * @param specs the specs to compare; the baseline "full" is added first when missing
   * @param stamp fields added to every record (model hash, threads, environment)
   */
  public QualityRunner(
      Engine engine,
      Tokenizer tokenizer,
      String modelName,
      BenchConfig config,
      List<String> specs,
      ResultStore store,
      Map<String, Object> stamp,
      Path outDir) {
    this.engine = engine;
    this.tokenizer = tokenizer;
    this.config = config;
    this.store = store;
    this.stamp = stamp;
    this.outDir = outDir;
    this.modelName = modelName;
    this.specTexts = new ArrayList<>();
    this.specTexts.add("full");
    for (String s : specs) {
      String t = KvSpec.parse(s).text();
      if (!specTexts.contains(t)) {
        specTexts.add(t);
      }
    }
    this.caches = new ArrayList<>();
    for (String s : specTexts) {
      // built up front, so a spec that does not fit the model fails before any work
      caches.add(KvSpecs.caches(KvSpec.parse(s), new BlockPool(), engine.config()));
    }
    this.tasks = new RetrievalTasks(tokenizer, config.niah, CodeCorpus.builtIn(), config.seed);
    this.groups = groups(caches, config.share);
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
            if (probes.get(g.get(0)).sameFormats(probe)) {
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
  private void prefillGroup(
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

  /** F16 bytes a full cache of {@code tokens} tokens would hold: the compression ratio's base. */
  public static long f16Bytes(ModelConfig c, long tokens) {
    return tokens * c.layers() * c.kvHeads() * c.headDim() * 2L * 2L;
  }

  /** One unit of work: a task at one setting. */
  private record Unit(String task, int length, Double depth, long weight) {}

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
          u.task().endsWith(":nll") ? runNll(u, label) : runRetrieval(u);
      store.add(out);
      advance(Math.max(0, u.weight() - (advanced - before)), label);
    }
    progress.finish();
  }

  private void advance(long units, String label) {
    advanced += units;
    progress.advance(units, label);
  }

  private Map<String, Object> identity(Unit u, String spec) {
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

  private Map<String, Object> finish(Map<String, Object> r) {
    r.putAll(stamp);
    return r;
  }

  // ---- perplexity, KL divergence, top-1 agreement ------------------------------------------

  /** Per-spec sums over the scored positions of a text. */
  private static final class NllStats {
    final DoubleList nll = new DoubleList();
    final DoubleList kld = new DoubleList();
    final DoubleList kldDecode = new DoubleList();
    final DoubleList nllDecode = new DoubleList();
    final List<Boolean> agree = new ArrayList<>();
    int agreeDecode;
    long f16Bytes;
    long bytes;
    long peakBytes;
    long policyNanos;
    long decodeSteps;
    int windows;

    void add(double n, double k, boolean a, boolean decodePhase) {
      nll.add(n);
      kld.add(k);
      agree.add(a);
      if (decodePhase) {
        kldDecode.add(k);
        nllDecode.add(n);
        agreeDecode += a ? 1 : 0;
      }
    }
  }

  /** The tokens a NLL unit scores: the configured text (or seeded prose), or the code corpus. */
  private int[] nllTokens(String task) {
    String text;
    if (task.equals("code:nll")) {
      text = tasks.codeText();
    } else if (config.ppl.text != null) {
      Path p = Path.of(config.ppl.text);
      if (!Files.isRegularFile(p)) {
        throw new IllegalArgumentException("ppl text " + p + " does not exist or is not a file");
      }
      try {
        text = Files.readString(p, StandardCharsets.UTF_8);
      } catch (IOException e) {
        throw new UncheckedIOException("cannot read " + p + ": " + e.getMessage(), e);
      }
    } else {
      text = SyntheticText.prose(config.seed, config.ppl.ctx * config.ppl.windows + 64);
    }
    return tokenizer.encode(text, true, false);
  }

  private List<Map<String, Object>> runNll(Unit u, String label) {
    int[] tokens = nllTokens(u.task());
    int ctx = u.length();
    int vocab = engine.config().vocabSize();
    int decode = Math.min(config.ppl.decode, ctx - 2);
    int bos = tokenizer.bos();
    int n = specTexts.size();
    NllStats[] stats = new NllStats[n];
    for (int s = 0; s < n; s++) {
      stats[s] = new NllStats();
    }
    float[] full = new float[(ctx - decode) * vocab];
    float[] other = new float[(ctx - decode) * vocab];
    float[] rows = new float[n * vocab];
    int[] window = new int[ctx];
    int next = 0;
    for (int w = 0; w < config.ppl.windows && next < tokens.length; w++) {
      int len;
      if (w == 0 || bos < 0) {
        len = Math.min(ctx, tokens.length - next);
        System.arraycopy(tokens, next, window, 0, Math.max(0, len));
        next += Math.max(0, len);
      } else {
        len = 1 + Math.min(ctx - 1, tokens.length - next);
        window[0] = bos;
        System.arraycopy(tokens, next, window, 1, len - 1);
        next += len - 1;
      }
      int prefill = len - decode;
      if (prefill < 2) {
        break;
      }
      KvCache[] cs = new KvCache[n];
      try {
        for (int[] group : groups) {
          float[] out = group[0] == 0 ? full : other;
          prefillGroup(group, cs, window, prefill, true, out);
          for (int s : group) {
            for (int i = 0; i < prefill && i + 1 < len; i++) {
              int off = i * vocab;
              stats[s].add(
                  Metrics.nll(out, off, vocab, window[i + 1]),
                  Metrics.klDivergence(full, off, out, off, vocab),
                  Metrics.argmax(full, off, vocab) == Metrics.argmax(out, off, vocab),
                  false);
            }
          }
        }
        // decode phase, in lockstep: every cache takes the same token, rows compared at once
        for (int pos = prefill; pos + 1 < len; pos++) {
          decodeAll(cs, window[pos], pos, rows);
          for (int s = 0; s < n; s++) {
            stats[s].add(
                Metrics.nll(rows, s * vocab, vocab, window[pos + 1]),
                Metrics.klDivergence(rows, 0, rows, s * vocab, vocab),
                Metrics.argmax(rows, 0, vocab) == Metrics.argmax(rows, s * vocab, vocab),
                true);
            stats[s].decodeSteps++;
          }
        }
        for (int s = 0; s < n; s++) {
          stats[s].f16Bytes += f16Bytes(engine.config(), len - 1);
          stats[s].bytes += cs[s].bytes();
          stats[s].windows++;
          if (cs[s] instanceof ManagedKvCache m) {
            stats[s].peakBytes = Math.max(stats[s].peakBytes, m.peakBytes());
            stats[s].policyNanos += m.policyNanos();
          }
        }
        advance(2L * ctx * n, label + " window " + (w + 1));
      } finally {
        for (KvCache c : cs) {
          if (c != null) {
            c.close();
          }
        }
      }
    }
    List<Map<String, Object>> out = new ArrayList<>();
    double basePpl = Metrics.perplexity(stats[0].nll.toArray());
    for (int s = 0; s < n; s++) {
      NllStats st = stats[s];
      double[] nll = st.nll.toArray();
      double[] kld = st.kld.toArray();
      int agree = 0;
      for (boolean a : st.agree) {
        agree += a ? 1 : 0;
      }
      Map<String, Object> r = identity(u, specTexts.get(s));
      r.put("n_tokens", nll.length);
      r.put("decode_tokens", st.kldDecode.size());
      r.put("ppl", Metrics.perplexity(nll));
      r.put("ppl_ratio", Metrics.perplexity(nll) / basePpl);
      r.put("mean_nll", Metrics.mean(nll));
      r.put("kld_mean", Metrics.mean(kld));
      r.put("kld_p99", Metrics.percentile(kld, 99));
      r.put("kld_max", Metrics.max(kld));
      r.put("top1_agreement", nll.length == 0 ? Double.NaN : agree / (double) nll.length);
      r.put("kld_mean_decode", Metrics.mean(st.kldDecode.toArray()));
      r.put("ppl_decode", Metrics.perplexity(st.nllDecode.toArray()));
      r.put(
          "top1_agreement_decode",
          st.kldDecode.size() == 0 ? Double.NaN : st.agreeDecode / (double) st.kldDecode.size());
      int w = Math.max(1, st.windows);
      putBytes(r, st.bytes / w, st.f16Bytes / w, st.peakBytes);
      r.put(
          "policy_ms_per_step", st.decodeSteps == 0 ? 0.0 : st.policyNanos / 1e6 / st.decodeSteps);
      out.add(finish(r));
      writeNllFile(u, specTexts.get(s), st);
    }
    return out;
  }

  private int[] stepTokens = new int[0];
  private int[] stepPositions = new int[0];
  private float[] rowScratch = new float[0];

  private float[] rowScratch(int vocab) {
    if (rowScratch.length < vocab) {
      rowScratch = new float[vocab];
    }
    return rowScratch;
  }

  /** One decode step of every cache with the same token: logits row s is cache s's. */
  private void decodeAll(KvCache[] cs, int token, int pos, float[] rows) {
    int n = cs.length;
    if (config.share) {
      if (stepTokens.length < n) {
        stepTokens = new int[n];
        stepPositions = new int[n];
      }
      Arrays.fill(stepTokens, 0, n, token);
      Arrays.fill(stepPositions, 0, n, pos);
      engine.decodeBatch(cs, stepTokens, stepPositions, n, rows);
    } else {
      int vocab = engine.config().vocabSize();
      for (int s = 0; s < n; s++) {
        engine.decode(cs[s], token, pos, rowScratch(vocab));
        System.arraycopy(rowScratch, 0, rows, s * vocab, vocab);
      }
    }
  }

  private static void putBytes(Map<String, Object> r, long bytes, long f16, long peak) {
    r.put("kv_bytes", bytes);
    r.put("kv_bytes_peak", peak);
    r.put("kv_bytes_f16_full", f16);
    r.put("compression_ratio", bytes == 0 ? Double.NaN : f16 / (double) bytes);
  }

  private void writeNllFile(Unit u, String spec, NllStats st) {
    Path dir = outDir.resolve("nll");
    Path file = dir.resolve(u.task().replace(':', '-') + "-" + Slug.of(spec) + ".tsv");
    try {
      Files.createDirectories(dir);
      try (BufferedWriter w = Files.newBufferedWriter(file, StandardCharsets.UTF_8)) {
        w.write("index\tnll\tkld\ttop1_agree\n");
        for (int i = 0; i < st.nll.size(); i++) {
          w.write(
              String.format(
                  Locale.ROOT,
                  "%d\t%.6f\t%.6g\t%d%n",
                  i,
                  st.nll.get(i),
                  st.kld.get(i),
                  st.agree.get(i) ? 1 : 0));
        }
      }
    } catch (IOException e) {
      throw new UncheckedIOException("cannot write " + file + ": " + e.getMessage(), e);
    }
  }

  // ---- retrieval: greedy answers, exact match ----------------------------------------------

  /** What one cache produced for one case. */
  private record Outcome(int[] generated, String text, float[] queryLogits, long bytes, long f16) {}

  /**
   * Every spec answers {@code c} greedily: the prompt is prefilled once per group, then the specs
   * generate in lockstep (one batched step for the specs still answering when sharing, else one
   * step per spec), each stopping where it would alone.
   */
  private Outcome[] answerAll(TaskCase c) {
    int n = specTexts.size();
    int vocab = engine.config().vocabSize();
    int[] prompt = c.prompt();
    KvCache[] cs = new KvCache[n];
    float[][] logits = new float[n][];
    Outcome[] out = new Outcome[n];
    try {
      long[] bytes = new long[n];
      float[][] query = new float[n][];
      for (int[] group : groups) {
        float[] l = new float[vocab];
        prefillGroup(group, cs, prompt, prompt.length, false, l);
        for (int s : group) {
          logits[s] = l.clone();
          query[s] = l.clone();
          bytes[s] = cs[s].bytes();
        }
      }
      int[][] gen = new int[n][c.maxNewTokens()];
      int[] made = new int[n];
      boolean[] answering = new boolean[n];
      Arrays.fill(answering, c.maxNewTokens() > 0);
      KvCache[] step = new KvCache[n];
      int[] who = new int[n];
      int[] tokens = new int[n];
      int[] positions = new int[n];
      float[] rows = new float[n * vocab];
      for (int pos = prompt.length; pos < engine.config().contextLength(); pos++) {
        int k = 0;
        for (int s = 0; s < n; s++) {
          if (!answering[s]) {
            continue;
          }
          int t = Metrics.argmax(logits[s], 0, vocab);
          if (tokenizer.isEog(t)) {
            answering[s] = false;
            continue;
          }
          gen[s][made[s]++] = t;
          if ((c.scoring() == Metrics.Scoring.LINE
                  && tokenizer.decode(Arrays.copyOf(gen[s], made[s])).indexOf('\n') >= 0)
              || made[s] == gen[s].length) {
            answering[s] = false;
            continue;
          }
          step[k] = cs[s];
          who[k] = s;
          tokens[k] = t;
          positions[k] = pos;
          k++;
        }
        if (k == 0) {
          break;
        }
        if (config.share) {
          engine.decodeBatch(step, tokens, positions, k, rows);
          for (int i = 0; i < k; i++) {
            System.arraycopy(rows, i * vocab, logits[who[i]], 0, vocab);
          }
        } else {
          for (int i = 0; i < k; i++) {
            engine.decode(step[i], tokens[i], pos, logits[who[i]]);
          }
        }
      }
      long f16 = f16Bytes(engine.config(), prompt.length);
      for (int s = 0; s < n; s++) {
        int[] g = Arrays.copyOf(gen[s], made[s]);
        out[s] = new Outcome(g, tokenizer.decode(g), query[s], bytes[s], f16);
      }
      return out;
    } finally {
      for (KvCache k : cs) {
        if (k != null) {
          k.close();
        }
      }
    }
  }

  private List<Map<String, Object>> runRetrieval(Unit u) {
    List<TaskCase> cs;
    try {
      cs = tasks.cases(u.task(), u.length(), u.depth() == null ? 0 : u.depth(), config.samples);
    } catch (TaskTooShortException e) {
      System.err.println(
          "kvslim: skipping " + u.task() + " at length " + u.length() + ": " + e.getMessage());
      return List.of();
    }
    int n = specTexts.size();
    int vocab = engine.config().vocabSize();
    int[] correct = new int[n];
    int[] matchFull = new int[n];
    int[] queryTop1 = new int[n];
    double[] kldSum = new double[n];
    long[] bytes = new long[n];
    long[] f16 = new long[n];
    String[] firstOutput = new String[n];
    for (TaskCase c : cs) {
      Outcome[] outcomes = answerAll(c);
      Outcome base = outcomes[0];
      for (int s = 0; s < n; s++) {
        Outcome o = outcomes[s];
        correct[s] += Metrics.exactMatch(c.scoring(), c.answer(), o.text()) ? 1 : 0;
        matchFull[s] += Arrays.equals(o.generated(), base.generated()) ? 1 : 0;
        kldSum[s] += Metrics.klDivergence(base.queryLogits(), 0, o.queryLogits(), 0, vocab);
        queryTop1[s] +=
            Metrics.argmax(base.queryLogits(), 0, vocab)
                    == Metrics.argmax(o.queryLogits(), 0, vocab)
                ? 1
                : 0;
        bytes[s] += o.bytes();
        f16[s] += o.f16();
        if (firstOutput[s] == null) {
          firstOutput[s] = o.text();
        }
      }
    }
    List<Map<String, Object>> out = new ArrayList<>();
    for (int s = 0; s < n; s++) {
      Map<String, Object> r = identity(u, specTexts.get(s));
      double k = cs.size();
      r.put("n", cs.size());
      r.put("accuracy", correct[s] / k);
      r.put("match_full", matchFull[s] / k);
      r.put("kld_query", kldSum[s] / k);
      r.put("top1_agreement", queryTop1[s] / k);
      r.put("prompt_tokens", cs.get(0).prompt().length);
      putBytes(r, bytes[s] / cs.size(), f16[s] / cs.size(), bytes[s] / cs.size());
      r.put("answer", cs.get(0).answer());
      r.put("output", firstOutput[s]);
      cs.get(0).setting().forEach(r::putIfAbsent); // what a task adds (pycode: its haystack)
      out.add(finish(r));
    }
    return out;
  }

  /** A growable list of doubles without boxing. */
  static final class DoubleList {
    private double[] a = new double[64];
    private int n;

    void add(double v) {
      if (n == a.length) {
        a = Arrays.copyOf(a, n * 2);
      }
      a[n++] = v;
    }

    double get(int i) {
      return a[i];
    }

    int size() {
      return n;
    }

    double[] toArray() {
      return Arrays.copyOf(a, n);
    }
  }
}
