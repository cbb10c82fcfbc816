package io.kvslim.bench;

import io.kvslim.bench.QualityRunner.Unit;
import io.kvslim.engine.Engine;
import io.kvslim.kv.KvCache;
import io.kvslim.tokenizer.Tokenizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

/**
 * The retrieval units of a {@link QualityRunner} (passkey, needles, RULER-style tasks, code
 * completion): every spec answers each case greedily from the same prompt, scored by exact match,
 * by agreement with the full cache's answer and by the KL divergence of the first answer token.
 */
final class QualityRetrieval {
  private final QualityRunner runner;
  private final Engine engine;
  private final Tokenizer tokenizer;
  private final BenchConfig config;
  private final RetrievalTasks tasks;

  QualityRetrieval(
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

  /** What one cache produced for one case. */
  private record Outcome(int[] generated, String text, float[] queryLogits, long bytes, long f16) {}

  /**
   * Every spec answers {@code c} greedily: the prompt is prefilled once per group, then the specs
   * generate in lockstep (one batched step for the specs still answering when sharing, else one
   * step per spec), each stopping where it would alone.
   */
  private Outcome[] answerAll(TaskCase c) {
    int n = runner.specs().size();
    int vocab = engine.config().vocabSize();
    int[] prompt = c.prompt();
    KvCache[] cs = new KvCache[n];
    float[][] logits = new float[n][];
    Outcome[] out = new Outcome[n];
    try {
      long[] bytes = new long[n];
      float[][] query = new float[n][];
      for (int[] group : runner.groups()) {
        float[] l = new float[vocab];
        runner.prefillGroup(group, cs, prompt, prompt.length, false, l);
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
      long f16 = QualityRunner.f16Bytes(engine.config(), prompt.length);
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

  /** Every spec answers the cases of {@code u}: one record per spec, in spec order. */
  List<Map<String, Object>> run(Unit u) {
    List<TaskCase> cs;
    try {
      cs = tasks.cases(u.task(), u.length(), u.depth() == null ? 0 : u.depth(), config.samples);
    } catch (TaskTooShortException e) {
      System.err.println(
          "kvslim: skipping " + u.task() + " at length " + u.length() + ": " + e.getMessage());
      return List.of();
    }
    int n = runner.specs().size();
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
      Map<String, Object> r = runner.identity(u, runner.specs().get(s));
      double k = cs.size();
      r.put("n", cs.size());
      r.put("accuracy", correct[s] / k);
      r.put("match_full", matchFull[s] / k);
      r.put("kld_query", kldSum[s] / k);
      r.put("top1_agreement", queryTop1[s] / k);
      r.put("prompt_tokens", cs.get(0).prompt().length);
      QualityRunner.putBytes(r, bytes[s] / cs.size(), f16[s] / cs.size(), bytes[s] / cs.size());
      r.put("answer", cs.get(0).answer());
      r.put("output", firstOutput[s]);
      cs.get(0).setting().forEach(r::putIfAbsent); // what a task adds (pycode: its haystack)
      out.add(runner.finish(r));
    }
    return out;
  }
}
