package io.kvslim.kv.policy;

import io.kvslim.kv.ContextReplay;
import io.kvslim.kv.KvCache;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.method.Budget;
import java.util.BitSet;

/**
 * KVzip (Kim et al. 2025, arXiv:2505.23416; METHODS.md N4): after the prompt, the model is made to
 * repeat it, chunk by chunk, on top of the full cache ({@link KvzipReplay}); each prompt token's
 * score is the largest probability a repeat query gives it in a softmax over the reduced key set;
 * the lowest scores over all covered layers and KV heads together are evicted once, before the
 * first decode step ({@code layerwise}: the same share in every layer).
 *
 * <p>Faithful to NVIDIA/kvpress {@code kvpress/presses/kvzip_press.py}: the repeat inputs of {@code
 * prepare} (lines 250–262: "\n\nRepeat the previous context exactly." + suffix + chunk, later
 * chunks "\n\nRepeat the part of the previous context exactly, starting with" + the last {@code
 * prev_postfix} tokens of the previous chunk + suffix + chunk; the suffix is "\n" for a model
 * without a chat template, lines 99–101, and the prompt is taken as such, no template prefix), each
 * repeat at the positions right after the prompt with the last repeat's keys and values dropped
 * (lines 189–199, 357), and {@code compress_post}'s selection (lines 365–376: the {@code
 * ratio·L·G·n} lowest scores over all layers, no floor, or {@code ratio·G·n} per layer). Where
 * kvpress sets the sinks' score to 1 before scoring and lets the first chunk overwrite it (line
 * 248, 354), the first {@code n_sink} tokens here keep score 1 and are never evicted, as METHODS.md
 * N4 step 3 asks. KVzip+ (‖W_O v‖/‖h‖ weighting, lines 334–348) is not implemented.
 */
public final class KvzipPolicy implements KvPolicy {
  /** The repeat instruction of the first chunk (kvpress line 254). */
  public static final String FIRST = "\n\nRepeat the previous context exactly.";

  /** The repeat instruction of a later chunk, followed by the previous chunk's last tokens. */
  public static final String NEXT =
      "\n\nRepeat the part of the previous context exactly, starting with";

  /** The assistant suffix of a model without a chat template (kvpress line 101). */
  public static final String SUFFIX = "\n";

  /**
   * @param budget average tokens kept per (layer, KV head); all layers' and heads' share pooled
   * @param chunk prompt tokens repeated per pass
   * @param prevPostfix tokens of the previous chunk quoted in a later chunk's instruction
   * @param nSink first tokens that score 1 and are never evicted
   * @param layerwise every layer keeps the same share (its heads still differ)
   */
  public record Settings(Budget budget, int chunk, int prevPostfix, int nSink, boolean layerwise) {}

  private final boolean[] layers;
  private final Settings settings;
  private final double bytesPerToken;
  private float[][][] scores; // [layer][kvHead][retained index], after the replay
  private boolean done;

  public KvzipPolicy(boolean[] layers, Settings settings, double bytesPerToken) {
    this.layers = layers.clone();
    this.settings = settings;
    this.bytesPerToken = bytesPerToken;
  }

  @Override
  public boolean wantsReplay() {
    return !done && scores == null;
  }

  @Override
  public void replay(ManagedKvCache cache, ContextReplay replay) {
    int n = replay.prompt().length;
    if (settings.budget().tokens(n, bytesPerToken) >= n) {
      return; // nothing will be evicted: no passes
    }
    scores = score(cache, replay);
  }

  /**
   * Runs the repeat passes over {@code cache} and returns the scores: per layer this policy covers
   * (null for the others), per KV head, one per retained token; the first {@code n_sink} score 1.
   */
  public float[][][] score(ManagedKvCache cache, ContextReplay replay) {
    int[] prompt = replay.prompt();
    int first = replay.firstPosition();
    int n = prompt.length;
    float[][][] out = new float[cache.layerCount()][][];
    for (int l = 0; l < out.length; l++) {
      if (covers(l)) {
        PagedLayerKv p = cache.paged(l);
        out[l] = new float[p.kvHeads()][];
        for (int g = 0; g < p.kvHeads(); g++) {
          out[l][g] = new float[p.size(g)];
        }
      }
    }
    KvzipReplay target = new KvzipReplay(cache, out, settings.nSink());
    int[] firstHead = replay.encode(FIRST);
    int[] nextHead = replay.encode(NEXT);
    int[] suffix = replay.encode(SUFFIX);
    int chunk = settings.chunk();
    for (int from = 0; from < n; from += chunk) {
      int to = Math.min(n, from + chunk);
      int quoted = from == 0 ? 0 : Math.min(settings.prevPostfix(), chunk);
      int[] head = from == 0 ? firstHead : nextHead;
      int[] input = new int[head.length + quoted + suffix.length + (to - from)];
      int k = 0;
      System.arraycopy(head, 0, input, k, head.length);
      k += head.length;
      System.arraycopy(prompt, from - quoted, input, k, quoted);
      k += quoted;
      System.arraycopy(suffix, 0, input, k, suffix.length);
      k += suffix.length;
      System.arraycopy(prompt, from, input, k, to - from);
      target.beginChunk(first + from, first + to);
      replay.forward(target, input, input.length, first + n);
    }
    target.beginChunk(0, 0); // drops the last repeat
    for (float[][] layer : out) {
      if (layer != null) {
        for (float[] head : layer) {
          java.util.Arrays.fill(head, 0, Math.min(settings.nSink(), head.length), 1f);
        }
      }
    }
    return out;
  }

  private boolean covers(int l) {
    return l < layers.length && layers[l];
  }

  @Override
  public void afterStep(ManagedKvCache cache, KvCache.StepKind kind) {
    if (done || kind != KvCache.StepKind.PREFILL) {
      return;
    }
    done = true;
    int n = cache.promptTokens();
    int keep = settings.budget().tokens(n, bytesPerToken);
    if (keep >= n) {
      return;
    }
    if (scores == null) {
      throw new IllegalStateException(
          "kvzip scores the prompt by replaying it, and this prompt was fed without"
              + " Engine.replayPrompt");
    }
    evict(cache, scores, keep, settings.nSink(), settings.layerwise());
    scores = null;
  }

  /**
   * Evicts the lowest {@code scores} (sinks, the first {@code nSink} tokens of each head, never)
   * until the scored layers hold {@code keep} tokens per KV head on average: over all of them
   * together, or each layer on its own with {@code layerwise}. Ties go to the earlier layer, head
   * and token.
   */
  static void evict(
      ManagedKvCache cache, float[][][] scores, int keep, int nSink, boolean layerwise) {
    if (layerwise) {
      for (int l = 0; l < scores.length; l++) {
        if (scores[l] != null) {
          float[][][] one = new float[scores.length][][];
          one[l] = scores[l];
          evictPooled(cache, one, keep, nSink);
        }
      }
    } else {
      evictPooled(cache, scores, keep, nSink);
    }
  }

  /** One pooled selection over every non-null layer of {@code scores}. */
  private static void evictPooled(ManagedKvCache cache, float[][][] scores, int keep, int nSink) {
    int total = 0;
    int heads = 0;
    for (float[][] layer : scores) {
      if (layer != null) {
        for (float[] head : layer) {
          total += head.length;
          heads++;
        }
      }
    }
    long evict = total - (long) keep * heads;
    if (evict <= 0) {
      return;
    }
    float[] flat = new float[total];
    int sinks = 0;
    int k = 0;
    for (float[][] layer : scores) {
      if (layer != null) {
        for (float[] head : layer) {
          for (int t = 0; t < head.length; t++) {
            boolean sink = t < nSink;
            flat[k++] = sink ? Float.POSITIVE_INFINITY : head[t];
            sinks += sink ? 1 : 0;
          }
        }
      }
    }
    BitSet out = new BitSet(total);
    Selection.lowest(flat, 0, total, (int) Math.min(evict, total - sinks), out);
    int base = 0;
    for (int l = 0; l < scores.length; l++) {
      if (scores[l] == null) {
        continue;
      }
      PagedLayerKv layer = cache.paged(l);
      for (int g = 0; g < scores[l].length; g++) {
        int len = scores[l][g].length;
        BitSet mine = out.get(base, base + len);
        if (!mine.isEmpty()) {
          layer.evict(g, mine);
        }
        base += len;
      }
    }
  }
}
