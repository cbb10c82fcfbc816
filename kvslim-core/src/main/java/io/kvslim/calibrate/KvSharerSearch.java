package io.kvslim.calibrate;

import io.kvslim.engine.Engine;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvCacheFormat;
import io.kvslim.model.ModelConfig;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.function.LongConsumer;

/**
 * KVSharer's calibration search (Yang et al. 2024, "KVSharer: Efficient Inference via Layer-Wise
 * Dissimilar KV Cache Sharing", arXiv:2410.18517; METHODS.md S3), as the authors' notebook runs it
 * (Xiangyi1996/KVSharer {@code test_llama.ipynb}, cells 11–20):
 *
 * <ol>
 *   <li>samples of {@code sampleTokens} tokens (the notebook: 30 texts truncated to 64 tokens) run
 *       with a full cache; each layer's cached keys (after RoPE) and values are averaged over the
 *       samples element by element (cell 12);
 *   <li>{@code D[i][j] = ½(mean ‖K̄_i − K̄_j‖₂ + mean ‖V̄_i − V̄_j‖₂)} for i > j, the norm over a
 *       head's channels and the mean over heads and tokens (cell 13, {@code
 *       compute_euclidean_distance});
 *   <li>pairs by distance, largest first (cell 14); for each pair (i, j) with i not yet shared, the
 *       map gains {@code i → j} with chains resolved ({@code re_map}, cell 18), and the pair is
 *       accepted when the mean over the samples of the cosine between the flattened final hidden
 *       states with and without sharing exceeds {@code threshold} (cells 17 and 20).
 * </ol>
 *
 * The search stops after {@code maxShared} accepted layers; a spec sharing n layers takes the first
 * n, which is what the notebook's search with {@code SHARE_LAYERS = n} accepts (each decision
 * depends only on the ones before it). Ties in distance go to the later pair, as numpy's reversed
 * {@code argsort} orders them.
 */
public final class KvSharerSearch {
  /** The notebook's settings: 30 samples of 64 tokens, threshold 0.5. */
  public static final int SAMPLES = 30;

  public static final int SAMPLE_TOKENS = 64;
  public static final double THRESHOLD = 0.5;

  private KvSharerSearch() {}

  /**
   * The samples: consecutive pieces of {@code text} (BOS first when {@code bos >= 0}, as a
   * tokenizer adds it to each text), at most {@code SAMPLES}, each {@code sampleTokens} long; at
   * least one, shorter when the text is.
   */
  static List<int[]> samples(int[] text, int bos, int sampleTokens, int contextLength) {
    int len = Math.min(sampleTokens, contextLength);
    int offset = bos >= 0 && text.length > 0 && text[0] == bos ? 1 : 0;
    int body = bos >= 0 ? len - 1 : len;
    List<int[]> out = new ArrayList<>();
    for (int s = offset; out.size() < SAMPLES && s + body <= text.length; s += body) {
      out.add(sample(text, s, body, bos));
    }
    if (out.isEmpty()) {
      out.add(sample(text, offset, Math.max(1, Math.min(body, text.length - offset)), bos));
    }
    return out;
  }

  private static int[] sample(int[] text, int from, int body, int bos) {
    int[] w = new int[body + (bos >= 0 ? 1 : 0)];
    if (bos >= 0) {
      w[0] = bos;
    }
    System.arraycopy(text, from, w, bos >= 0 ? 1 : 0, body);
    return w;
  }

  /** Runs the search on {@code engine}'s model; {@code progress} gets the tokens run. */
  public static CalibrationProfile.KvSharer run(
      Engine engine, List<int[]> samples, int maxShared, LongConsumer progress) {
    ModelConfig c = engine.config();
    int layers = c.layers();
    int n = samples.get(0).length;
    double[][][] meanK = new double[layers][][];
    double[][][] meanV = new double[layers][][];
    float[][] reference = new float[samples.size()][];
    int[] identity = new int[layers];
    Arrays.setAll(identity, l -> l);
    for (int s = 0; s < samples.size(); s++) {
      if (samples.get(s).length != n) {
        continue; // the notebook skips samples of another shape (cell 12)
      }
      reference[s] = runSample(engine, samples.get(s), identity, meanK, meanV, samples.size());
      progress.accept(n);
    }
    double[][] distance = new double[layers][layers];
    List<int[]> pairs = new ArrayList<>();
    for (int i = 0; i < layers; i++) {
      for (int j = 0; j < i; j++) {
        int d = c.headDim();
        distance[i][j] = 0.5 * (meanNorm(meanK[i], meanK[j], d) + meanNorm(meanV[i], meanV[j], d));
        pairs.add(new int[] {i, j});
      }
    }
    pairs.sort(
        (a, b) -> {
          int byD = Double.compare(distance[b[0]][b[1]], distance[a[0]][a[1]]);
          return byD != 0 ? byD : Integer.compare(b[0] * layers + b[1], a[0] * layers + a[1]);
        });
    int[] map = identity.clone();
    List<int[]> accepted = new ArrayList<>();
    List<Double> similarity = new ArrayList<>();
    for (int[] pair : pairs) {
      if (accepted.size() >= maxShared) {
        break;
      }
      if (map[pair[0]] != pair[0]) {
        continue;
      }
      int[] candidate = map.clone();
      candidate[pair[0]] = pair[1];
      candidate = resolve(candidate);
      double sum = 0;
      int counted = 0;
      for (int s = 0; s < samples.size(); s++) {
        if (reference[s] != null) {
          float[] shared = runSample(engine, samples.get(s), candidate, null, null, 1);
          sum += cosine(reference[s], shared);
          counted++;
          progress.accept(n);
        }
      }
      double sim = sum / counted;
      if (sim > THRESHOLD) {
        map = candidate;
        accepted.add(pair.clone());
        similarity.add(sim);
      }
    }
    return new CalibrationProfile.KvSharer(
        samples.size(),
        n,
        THRESHOLD,
        distance,
        accepted.toArray(new int[0][]),
        similarity.stream().mapToDouble(Double::doubleValue).toArray());
  }

  /**
   * The map of the first {@code shared} accepted pairs, chains resolved: each layer reads a layer
   * that stores its own keys and values ({@code re_map}).
   */
  public static int[] map(int[][] accepted, int shared, int layers) {
    int[] map = new int[layers];
    Arrays.setAll(map, l -> l);
    for (int k = 0; k < shared; k++) {
      map[accepted[k][0]] = accepted[k][1];
      map = resolve(map);
    }
    return map;
  }

  /** The notebook's {@code re_map}: in layer order, a shared layer reads what its source reads. */
  static int[] resolve(int[] map) {
    int[] out = map.clone();
    for (int l = 0; l < out.length; l++) {
      if (out[l] != l) {
        out[l] = out[out[l]];
      }
    }
    return out;
  }

  /**
   * Prefills one sample with an F32 cache under {@code map}; adds its keys and values to the means
   * when asked; the final hidden states of every row.
   */
  private static float[] runSample(
      Engine engine, int[] sample, int[] map, double[][][] meanK, double[][][] meanV, int count) {
    ModelConfig c = engine.config();
    KvCacheFormat[] formats = new KvCacheFormat[c.layers()];
    Arrays.fill(formats, KvCacheFormat.of(KvFormats.F32));
    float[] logits = new float[c.vocabSize()];
    try (ManagedKvCache cache =
        new ManagedKvCache(
            new BlockPool(), c.kvHeads(), c.headDim(), formats, List.of(), map.clone())) {
      int saved = engine.prefillChunk();
      engine.setPrefillChunk(Math.max(saved, sample.length)); // one run: every row's state
      try {
        engine.prefill(cache, sample, 0, sample.length, 0, false, logits);
      } finally {
        engine.setPrefillChunk(saved);
      }
      float[] hidden = new float[sample.length * c.dim()];
      engine.forward().finalHidden(sample.length, hidden);
      if (meanK != null) {
        float[] row = new float[c.headDim()];
        for (int l = 0; l < c.layers(); l++) {
          if (meanK[l] == null) {
            meanK[l] = new double[c.kvHeads()][sample.length * c.headDim()];
            meanV[l] = new double[c.kvHeads()][sample.length * c.headDim()];
          }
          for (int g = 0; g < c.kvHeads(); g++) {
            HeadStore head = cache.paged(l).store().head(g);
            for (int t = 0; t < sample.length; t++) {
              head.readKey(t, row);
              for (int d = 0; d < row.length; d++) {
                meanK[l][g][t * row.length + d] += row[d] / (double) count;
              }
              head.readValue(t, row);
              for (int d = 0; d < row.length; d++) {
                meanV[l][g][t * row.length + d] += row[d] / (double) count;
              }
            }
          }
        }
      }
      return hidden;
    }
  }

  /**
   * Mean over heads and tokens of the L2 distance over a head's {@code dim} channels ({@code a[g]}
   * holds a head's tokens one after another).
   */
  static double meanNorm(double[][] a, double[][] b, int dim) {
    double sum = 0;
    int rows = 0;
    for (int g = 0; g < a.length; g++) {
      for (int off = 0; off + dim <= a[g].length; off += dim) {
        double s = 0;
        for (int d = 0; d < dim; d++) {
          double diff = a[g][off + d] - b[g][off + d];
          s += diff * diff;
        }
        sum += Math.sqrt(s);
        rows++;
      }
    }
    return rows == 0 ? 0 : sum / rows;
  }

  static double cosine(float[] a, float[] b) {
    double dot = 0;
    double na = 0;
    double nb = 0;
    for (int i = 0; i < a.length; i++) {
      dot += (double) a[i] * b[i];
      na += (double) a[i] * a[i];
      nb += (double) b[i] * b[i];
    }
    return dot / (Math.sqrt(na) * Math.sqrt(nb));
  }
}
