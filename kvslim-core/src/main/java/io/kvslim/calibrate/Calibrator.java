package io.kvslim.calibrate;

import io.kvslim.engine.Engine;
import io.kvslim.kv.AttentionObserver;
import io.kvslim.kv.KvCache;
import io.kvslim.model.Model;
import io.kvslim.model.ModelConfig;
import io.kvslim.tokenizer.TokenType;
import io.kvslim.tokenizer.Tokenizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.LongConsumer;

/**
 * One calibration pass of {@code kvslim calibrate} over a model (METHODS.md M9): what the head and
 * layer structure methods need, in a {@link CalibrationProfile}.
 *
 * <ol>
 *   <li>The text, up to {@code tokens} tokens, is read in windows of the model's context (each
 *       after the first BOS-prefixed, as {@code kvslim perplexity} does) with the full cache. Each
 *       window is one of kvpress's calibration samples for DuoAttention's on-the-fly scores ({@link
 *       DuoScores}: the queries and keys come from the forward pass through {@link
 *       io.kvslim.model.Forward#setProjectionListener}). The first window also gives the attention
 *       mass per head ({@link AttentionProfile}).
 *   <li>RazorAttention's echo and induction scores ({@link EchoInduction}) come from {@code
 *       sequences} random sequences [BOS, X, X] of the model's normal tokens, X of length {@code
 *       sequenceLength}, drawn from a {@link SplittableRandom} seeded with {@code seed}.
 *   <li>KVSharer's layer distances and sharing search ({@link KvSharerSearch}) on up to 30 samples
 *       of 64 tokens of the text, accepting up to {@code kvSharerLayers} layers (half the layers by
 *       default, 0 to skip).
 *   <li>POD's similarity of consecutive layers' attention over distant tokens ({@link
 *       PodSimilarity}) on the first windows of the text.
 * </ol>
 *
 * Everything is a function of the model, the text and the settings: the same inputs give the same
 * profile, byte for byte, whatever the thread count (each attention row and matmul row is computed
 * the same on any thread, and observers are called in serial order).
 */
public final class Calibrator {
  /** kvpress's {@code q_len}: positions the mean query and key are repeated to. */
  public static final int DUO_POSITIONS = 500;

  /** The first query position of the attention-mass figures (that of {@code bench attention}). */
  static final int MASS_FROM = 128;

  /**
   * The settings of a pass.
   *
   * @param tokens the most tokens of the text read (BOS included)
   * @param sequenceLength m, the length of RazorAttention's random sequences X (0: the smaller of
   *     256 and half the context)
   */
  public record Options(
      int tokens, long seed, int sequenceLength, int sequences, int kvSharerLayers) {
    /** With KVSharer's search accepting up to half the layers. */
    public Options(int tokens, long seed, int sequenceLength, int sequences) {
      this(tokens, seed, sequenceLength, sequences, -1);
    }

    public Options {
      if (kvSharerLayers < -1) {
        throw new IllegalArgumentException(
            "--kvsharer-layers must be at least 0, got " + kvSharerLayers);
      }
      if (tokens < 2) {
        throw new IllegalArgumentException("--tokens must be at least 2, got " + tokens);
      }
      if (sequenceLength < 0 || sequences < 1) {
        throw new IllegalArgumentException(
            "RazorAttention needs at least one random sequence of length >= 1");
      }
    }
  }

  private Calibrator() {}

  /** Units of work {@link #run} reports to its progress callback (tokens run through the model). */
  public static long work(ModelConfig c, int textTokens, Options o) {
    return Math.min(textTokens, o.tokens())
        + windows(Math.min(textTokens, o.tokens()), c.contextLength())
        - 1
        + (long) o.sequences() * (1 + 2L * sequenceLength(c, o))
        + kvSharerWork(c, Math.min(textTokens, o.tokens()), o)
        + PodSimilarity.work(c, Math.min(textTokens, o.tokens()));
  }

  /** KVSharer's search at most: every sample once, then once per candidate pair. */
  private static long kvSharerWork(ModelConfig c, int used, Options o) {
    if (kvSharerLayers(c, o) == 0) {
      return 0;
    }
    int n = Math.min(KvSharerSearch.SAMPLE_TOKENS, c.contextLength());
    long samples = Math.max(1, Math.min(KvSharerSearch.SAMPLES, (used - 1) / Math.max(1, n - 1)));
    long pairs = (long) c.layers() * (c.layers() - 1) / 2;
    return samples * n * (1 + pairs);
  }

  private static int kvSharerLayers(ModelConfig c, Options o) {
    int max = o.kvSharerLayers() < 0 ? c.layers() / 2 : o.kvSharerLayers();
    return Math.min(max, c.layers() - 1);
  }

  /**
   * Calibrates the model of {@code engine} (whose cache factory must give full caches) on {@code
   * text} (token ids, BOS first when the tokenizer adds one).
   *
   * @param textName the text's file name, recorded in the profile
   * @param textSha256 the text file's SHA-256, recorded in the profile
   * @param progress receives the units of work done (tokens), may be null
   */
  public static CalibrationProfile run(
      Engine engine,
      ModelIdentity identity,
      Tokenizer tokenizer,
      int[] text,
      String textName,
      String textSha256,
      Options o,
      LongConsumer progress) {
    ModelConfig c = engine.config();
    Model model = engine.forward().model();
    LongConsumer done = progress == null ? u -> {} : progress;
    int ctx = c.contextLength();
    int used = Math.min(text.length, o.tokens());
    if (used < 2) {
      throw new IllegalArgumentException("the calibration text has fewer than 2 tokens");
    }
    List<int[]> windows =
        split(Arrays.copyOf(text, used), ctx, tokenizer.addsBos() ? tokenizer.bos() : -1);

    // 1. DuoAttention's scores over the windows; attention mass on the first
    DuoScores duo = new DuoScores(c, model.rope(), DUO_POSITIONS);
    AttentionProfile.Result mass;
    engine.forward().setProjectionListener(duo);
    try {
      int[] first = windows.get(0);
      int from = Math.min(MASS_FROM, first.length / 2);
      long[] seen = {0};
      mass =
          AttentionProfile.run(
              engine,
              first,
              from,
              e -> {
                done.accept(e - seen[0]);
                seen[0] = e;
              });
      duo.endSample();
      float[] logits = new float[c.vocabSize()];
      for (int w = 1; w < windows.size(); w++) {
        int[] window = windows.get(w);
        try (KvCache cache = engine.newCache()) {
          engine.prefill(cache, window, 0, window.length, 0, false, logits);
        }
        duo.endSample();
        done.accept(window.length);
      }
    } finally {
      engine.forward().setProjectionListener(null);
    }

    // 2. RazorAttention's echo and induction scores on repeated random sequences
    int m = sequenceLength(c, o);
    int bos = tokenizer.addsBos() ? tokenizer.bos() : -1;
    int offset = bos >= 0 ? 1 : 0;
    int[] pool = normalTokens(tokenizer, c.vocabSize());
    double[][][] sums = new double[c.layers()][c.heads()][2];
    SplittableRandom random = new SplittableRandom(o.seed());
    for (int s = 0; s < o.sequences(); s++) {
      int[] seq = EchoInduction.sequence(random.split(), pool, m, bos);
      observe(engine, seq, offset, m, sums);
      done.accept(seq.length);
    }
    double[][] echo = new double[c.layers()][c.heads()];
    double[][] induction = new double[c.layers()][c.heads()];
    double queries = (double) m * o.sequences();
    for (int l = 0; l < c.layers(); l++) {
      for (int h = 0; h < c.heads(); h++) {
        echo[l][h] = sums[l][h][0] / queries;
        induction[l][h] = sums[l][h][1] / queries;
      }
    }
    // 3. KVSharer's layer distances and sharing search on samples of the text
    CalibrationProfile.KvSharer sharer = null;
    int maxShared = kvSharerLayers(c, o);
    if (maxShared > 0) {
      long budget = kvSharerWork(c, used, o);
      long[] spent = {0};
      List<int[]> samples =
          KvSharerSearch.samples(Arrays.copyOf(text, used), bos, KvSharerSearch.SAMPLE_TOKENS, ctx);
      sharer =
          KvSharerSearch.run(
              engine,
              samples,
              maxShared,
              u -> {
                spent[0] += u;
                done.accept(u);
              });
      done.accept(Math.max(0, budget - spent[0]));
    }
    // 4. POD's similarity of distant-token attention between consecutive layers
    long podBudget = PodSimilarity.work(c, used);
    long[] podSpent = {0};
    CalibrationProfile.Pod pod =
        PodSimilarity.run(
            engine,
            windows,
            u -> {
              podSpent[0] += u;
              done.accept(u);
            });
    done.accept(Math.max(0, podBudget - podSpent[0]));
    CqCodebooks cq = CqCodebooks.train(engine, windows, o.seed()); // 5. CQ's codebooks
    LexicoDictionaries lexico = LexicoDictionaries.train(engine, windows, o.seed()); // 6. Lexico
    CalibrationProfile.ModelInfo info =
        new CalibrationProfile.ModelInfo(
            identity.fileName(),
            identity.sha256(),
            c.layers(),
            c.heads(),
            c.kvHeads(),
            c.headDim());
    CalibrationProfile.Settings settings =
        new CalibrationProfile.Settings(
            textName, textSha256, used, windows.size(), o.seed(), m, o.sequences(), DUO_POSITIONS);
    CalibrationProfile.AttentionMass attention =
        new CalibrationProfile.AttentionMass(
            mass.tokens(),
            mass.from(),
            mass.queries(),
            AttentionProfile.SINK_TOKENS,
            AttentionProfile.NEAR_TOKENS,
            AttentionProfile.LOCAL_TOKENS,
            mass.heads());
    return new CalibrationProfile(
        info,
        settings,
        echo,
        induction,
        EchoInduction.perKvHead(echo, c.kvHeads()),
        EchoInduction.perKvHead(induction, c.kvHeads()),
        duo.scores(),
        attention,
        sharer,
        pod,
        cq,
        KvQuantCalibration.run(engine, windows, KvQuantCalibration.OUTLIER_FRACTION),
        lexico,
        null);
  }

  static int sequenceLength(ModelConfig c, Options o) {
    int m =
        o.sequenceLength() > 0 ? o.sequenceLength() : Math.min(256, (c.contextLength() - 1) / 2);
    if (1 + 2 * m > c.contextLength()) {
      throw new IllegalArgumentException(
          "a repeated sequence of "
              + m
              + " tokens does not fit the model's context of "
              + c.contextLength());
    }
    return m;
  }

  private static int windows(int tokens, int ctx) {
    return tokens <= ctx ? 1 : 1 + (tokens - ctx + ctx - 2) / (ctx - 1);
  }

  /** The text in windows of {@code ctx}: the first as is, the next ones BOS + ctx − 1 tokens. */
  public static List<int[]> split(int[] tokens, int ctx, int bos) {
    List<int[]> out = new ArrayList<>();
    int next = Math.min(ctx, tokens.length);
    out.add(Arrays.copyOf(tokens, next));
    int body = bos >= 0 ? ctx - 1 : ctx;
    while (next < tokens.length) {
      int len = Math.min(body, tokens.length - next);
      int[] w = new int[len + (bos >= 0 ? 1 : 0)];
      if (bos >= 0) {
        w[0] = bos;
      }
      System.arraycopy(tokens, next, w, bos >= 0 ? 1 : 0, len);
      out.add(w);
      next += len;
    }
    return out;
  }

  /** The ids of the vocabulary's normal tokens (no control, byte or unknown tokens). */
  static int[] normalTokens(Tokenizer tok, int vocab) {
    int[] out = new int[vocab];
    int n = 0;
    for (int id = 0; id < vocab; id++) {
      if (tok.tokenType(id) == TokenType.NORMAL) {
        out[n++] = id;
      }
    }
    if (n < 2) {
      throw new IllegalArgumentException("the vocabulary has fewer than 2 normal tokens");
    }
    return Arrays.copyOf(out, n);
  }

  /** Runs one sequence with a full cache, adding each head's echo and induction attention. */
  private static void observe(Engine engine, int[] seq, int offset, int m, double[][][] sums) {
    int[] chunkStart = {0};
    engine
        .forward()
        .setLayerObservers(
            layer ->
                (AttentionObserver)
                    (qi, head, kvHead, probs, count) -> {
                      int p = chunkStart[0] + qi;
                      if (count < p + 1) {
                        throw new IllegalStateException(
                            "calibration needs the full cache, but position "
                                + p
                                + " saw "
                                + count
                                + " tokens");
                      }
                      double[] s = sums[layer][head];
                      synchronized (s) {
                        EchoInduction.accumulate(probs, p, offset, m, s);
                      }
                    });
    try (KvCache cache = engine.newCache()) {
      float[] logits = new float[engine.config().vocabSize()];
      int chunk = Engine.DEFAULT_PREFILL_CHUNK;
      for (int s = 0; s < seq.length; s += chunk) {
        int e = Math.min(seq.length, s + chunk);
        chunkStart[0] = s;
        engine.prefill(cache, seq, s, e, s, false, logits);
      }
    } finally {
      engine.forward().setLayerObservers(null);
    }
  }
}
