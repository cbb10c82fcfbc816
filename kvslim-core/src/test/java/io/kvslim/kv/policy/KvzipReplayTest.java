package io.kvslim.kv.policy;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import io.kvslim.kv.KvTestData;
import io.kvslim.kv.cache.ManagedKvCache;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.store.BlockPool;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvCacheFormat;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * One layer, one repeat chunk: {@link KvzipReplay}'s attention output and scores against a direct
 * scalar computation in double of the full softmax (every prompt token and the repeat up to the
 * query) and of the reduced softmax (sinks, the chunk, the repeat up to the query), max over the
 * group's query heads and the repeat's queries.
 */
class KvzipReplayTest {
  static final int KV_HEADS = 2;
  static final int HEADS = 4;
  static final int DIM = 8;
  static final int PROMPT = 12;
  static final int REPEAT = 5;
  static final int SINKS = 4;

  @ParameterizedTest
  @CsvSource({"0, 12", "6, 12", "2, 9"})
  void scoresAndOutputMatchAScalarReference(int chunkFrom, int chunkTo) {
    Random random = new Random(7 + chunkFrom);
    float[] keys = KvTestData.gaussian(random, PROMPT * KV_HEADS * DIM);
    float[] values = KvTestData.gaussian(random, PROMPT * KV_HEADS * DIM);
    float[] rk = KvTestData.gaussian(random, REPEAT * KV_HEADS * DIM);
    float[] rv = KvTestData.gaussian(random, REPEAT * KV_HEADS * DIM);
    float[] q = KvTestData.gaussian(random, REPEAT * HEADS * DIM);
    float scale = 1f / (float) Math.sqrt(DIM);
    try (ManagedKvCache cache =
        new ManagedKvCache(
            new BlockPool(),
            KV_HEADS,
            DIM,
            new KvCacheFormat[] {KvCacheFormat.of(KvFormats.F32)},
            List.of())) {
      cache.layer(0).append(PROMPT, KvTestData.range(0, PROMPT), keys, values);
      float[][] before = snapshot(cache);
      long bytes = cache.bytes();
      float[][][] scores = {new float[KV_HEADS][PROMPT]};
      KvzipReplay replay = new KvzipReplay(cache, scores, SINKS);
      replay.beginChunk(chunkFrom, chunkTo);
      int[] positions = KvTestData.range(PROMPT, REPEAT);
      float[] out = new float[REPEAT * HEADS * DIM];
      // two steps, as the engine feeds a long repeat: rows 0..2, then 3..4
      int split = 3;
      replay.layer(0).append(split, positions, rk, rv);
      replay.layer(0).attend(split, positions, HEADS, q, scale, out, null);
      float[] outTail = new float[(REPEAT - split) * HEADS * DIM];
      replay
          .layer(0)
          .append(
              REPEAT - split,
              Arrays.copyOfRange(positions, split, REPEAT),
              Arrays.copyOfRange(rk, split * KV_HEADS * DIM, rk.length),
              Arrays.copyOfRange(rv, split * KV_HEADS * DIM, rv.length));
      replay
          .layer(0)
          .attend(
              REPEAT - split,
              Arrays.copyOfRange(positions, split, REPEAT),
              HEADS,
              Arrays.copyOfRange(q, split * HEADS * DIM, q.length),
              scale,
              outTail,
              null);
      System.arraycopy(outTail, 0, out, split * HEADS * DIM, outTail.length);

      int group = HEADS / KV_HEADS;
      int sinks = Math.min(SINKS, chunkFrom);
      double[][] want = new double[KV_HEADS][PROMPT];
      for (int i = 0; i < REPEAT; i++) {
        for (int h = 0; h < HEADS; h++) {
          int g = h / group;
          // logits: the prompt's tokens 0..PROMPT-1, then the repeat's 0..i
          double[] z = new double[PROMPT + i + 1];
          double[][] v = new double[z.length][];
          for (int t = 0; t < z.length; t++) {
            float[] ks = t < PROMPT ? keys : rk;
            float[] vs = t < PROMPT ? values : rv;
            int row = t < PROMPT ? t : t - PROMPT;
            double dot = 0;
            v[t] = new double[DIM];
            for (int d = 0; d < DIM; d++) {
              dot += (double) q[(i * HEADS + h) * DIM + d] * ks[(row * KV_HEADS + g) * DIM + d];
              v[t][d] = vs[(row * KV_HEADS + g) * DIM + d];
            }
            z[t] = dot * scale;
          }
          double[] full = softmax(z, t -> true);
          for (int d = 0; d < DIM; d++) {
            double o = 0;
            for (int t = 0; t < z.length; t++) {
              o += full[t] * v[t][d];
            }
            assertThat((double) out[(i * HEADS + h) * DIM + d])
                .as("output row %d head %d dim %d", i, h, d)
                .isCloseTo(o, within(1e-5));
          }
          double[] reduced =
              softmax(z, t -> t < sinks || (t >= chunkFrom && t < chunkTo) || t >= PROMPT);
          for (int t = chunkFrom; t < chunkTo; t++) {
            want[g][t] = Math.max(want[g][t], reduced[t]);
          }
        }
      }
      for (int g = 0; g < KV_HEADS; g++) {
        for (int t = 0; t < PROMPT; t++) {
          assertThat((double) scores[0][g][t])
              .as("score of head %d token %d", g, t)
              .isCloseTo(want[g][t], within(1e-6));
        }
      }
      // tokens outside the chunk keep 0; the chunk's scores are probabilities
      for (int t = 0; t < PROMPT; t++) {
        boolean inChunk = t >= chunkFrom && t < chunkTo;
        assertThat(scores[0][0][t] > 0).isEqualTo(inChunk);
        assertThat(scores[0][0][t]).isBetween(0f, 1f);
      }
      // the sequence's cache was only read
      replay.beginChunk(0, 0);
      assertThat(cache.bytes()).isEqualTo(bytes);
      assertThat(snapshot(cache)).isDeepEqualTo(before);
      assertThat(cache.layer(0).size(0)).isEqualTo(PROMPT);
    }
  }

  /** Softmax in double over the logits {@code keep} admits (the others get 0). */
  static double[] softmax(double[] z, java.util.function.IntPredicate keep) {
    double max = Double.NEGATIVE_INFINITY;
    for (int t = 0; t < z.length; t++) {
      if (keep.test(t)) {
        max = Math.max(max, z[t]);
      }
    }
    double[] p = new double[z.length];
    double sum = 0;
    for (int t = 0; t < z.length; t++) {
      if (keep.test(t)) {
        p[t] = Math.exp(z[t] - max);
        sum += p[t];
      }
    }
    for (int t = 0; t < z.length; t++) {
      p[t] /= sum;
    }
    return p;
  }

  /** Every head's positions, keys and values, as floats (positions converted exactly). */
  static float[][] snapshot(ManagedKvCache cache) {
    float[][] out = new float[cache.layerCount() * KV_HEADS * 3][];
    int k = 0;
    for (int l = 0; l < cache.layerCount(); l++) {
      for (int g = 0; g < KV_HEADS; g++) {
        HeadStore h = cache.paged(l).head(g);
        int[] pos = new int[h.size()];
        h.positions(pos);
        float[] p = new float[pos.length];
        for (int i = 0; i < pos.length; i++) {
          p[i] = pos[i];
        }
        float[] ks = new float[h.size() * DIM];
        float[] vs = new float[h.size() * DIM];
        h.readKeys(ks);
        h.readValues(vs);
        out[k++] = p;
        out[k++] = ks;
        out[k++] = vs;
      }
    }
    return out;
  }
}
