package io.kvslim.bench;

import io.kvslim.bench.QualityRunner.Unit;
import io.kvslim.engine.Engine;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
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
 * The perplexity units of a {@link QualityRunner} (ppl, code NLL): windows of a text prefilled once
 * per group of specs, then decoded in lockstep, every position's logits compared with the full
 * cache's (NLL, KL divergence, top-1 agreement); the per-position values also go to {@code
 * nll/*.tsv}.
 */
final class QualityNll {
  private final QualityRunner runner;
  private final Engine engine;
  private final Tokenizer tokenizer;
  private final BenchConfig config;
  private final RetrievalTasks tasks;

  QualityNll(
      QualityRunner runner,
      Engine engine,
      Tokenizer tokenizer,
      BenchConfig config,
      RetrievalTasks tasks) {
    this.runner = runner;
    this.engine = engine;
    this.tokenizer = tokenizer;
    this.config = config;
    this.tasks = tasks;
  }

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
    double attended; // bytes of keys and values the decode steps attended over
    double cold = -1; // bytes held in a cold tier (spill=true), summed over windows; -1: none
    double fetched; // bytes the decode steps fetched from the cold tier
    double index; // bytes a recall policy holds beside the blocks (page bounds, landmarks, codes)
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

  /** Scores every spec on the NLL unit {@code u}: one record per spec, in spec order. */
  List<Map<String, Object>> run(Unit u, String label) {
    int[] tokens = nllTokens(u.task());
    int ctx = u.length();
    int vocab = engine.config().vocabSize();
    int decode = Math.min(config.ppl.decode, ctx - 2);
    int bos = tokenizer.bos();
    int n = runner.specs().size();
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
        for (int[] group : runner.groups()) {
          float[] out = group[0] == 0 ? full : other;
          runner.prefillGroup(group, cs, window, prefill, true, out);
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
            if (!(cs[s] instanceof ManagedKvCache m && m.decodeBytesAttended() >= 0)) {
              stats[s].attended += cs[s].bytes(); // the step read the whole cache
            }
            stats[s].add(
                Metrics.nll(rows, s * vocab, vocab, window[pos + 1]),
                Metrics.klDivergence(rows, 0, rows, s * vocab, vocab),
                Metrics.argmax(rows, 0, vocab) == Metrics.argmax(rows, s * vocab, vocab),
                true);
            stats[s].decodeSteps++;
          }
        }
        for (int s = 0; s < n && config.explain && w == 0; s++) {
          if (cs[s] instanceof ManagedKvCache m) {
            System.err.print(
                "explain "
                    + runner.specs().get(s)
                    + " ("
                    + label
                    + " window 1):\n"
                    + io.kvslim.kv.cache.HeadTable.of(m));
          }
        }
        for (int s = 0; s < n; s++) {
          stats[s].f16Bytes += QualityRunner.f16Bytes(engine.config(), len - 1);
          stats[s].bytes += cs[s].bytes();
          stats[s].windows++;
          if (cs[s] instanceof ManagedKvCache m) {
            stats[s].peakBytes = Math.max(stats[s].peakBytes, m.peakBytes());
            stats[s].policyNanos += m.policyNanos();
            if (m.decodeBytesAttended() >= 0) {
              stats[s].attended += m.decodeBytesAttended();
            }
            stats[s].index += m.indexBytes();
            if (m.bytesFetched() >= 0) {
              stats[s].cold = Math.max(0, stats[s].cold) + m.coldBytes();
              stats[s].fetched += m.bytesFetched();
            }
          }
        }
        runner.advance(2L * ctx * n, label + " window " + (w + 1));
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
      Map<String, Object> r = runner.identity(u, runner.specs().get(s));
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
      QualityRunner.putBytes(r, st.bytes / w, st.f16Bytes / w, st.peakBytes);
      r.put(
          "policy_ms_per_step", st.decodeSteps == 0 ? 0.0 : st.policyNanos / 1e6 / st.decodeSteps);
      r.put("kv_read_per_step", st.decodeSteps == 0 ? Double.NaN : st.attended / st.decodeSteps);
      // a spilling method (spill=true): kv_bytes is RAM held; these are the cold tier's part
      r.put("kv_index_bytes", st.index == 0 ? Double.NaN : st.index / w);
      r.put("kv_cold_bytes", st.cold < 0 ? Double.NaN : st.cold / w);
      r.put(
          "kv_fetched_per_step",
          st.cold < 0 || st.decodeSteps == 0 ? Double.NaN : st.fetched / st.decodeSteps);
      out.add(runner.finish(r));
      writeNllFile(u, runner.specs().get(s), st);
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

  private void writeNllFile(Unit u, String spec, NllStats st) {
    Path dir = runner.outDir().resolve("nll");
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
