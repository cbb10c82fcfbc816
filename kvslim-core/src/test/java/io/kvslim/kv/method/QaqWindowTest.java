package io.kvslim.kv.method;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.kvslim.kv.cache.PagedKvCache;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.store.KvCacheFormat;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * QAQ's attention window, which keeps of each row only the probabilities from its tail on and the
 * row's two largest ones, answers as the full rows would: {@code attention} of every token after
 * the tails and {@code largestOtherThan} of every token equal a scan of the full max-merged rows,
 * with two heads merged into a row (GQA), ties, rows of zeros and rows whose length is not a
 * multiple of the vector's lanes.
 */
class QaqWindowTest {
  static final int DIM = 8;

  static PagedLayerKv layer(int tokens) {
    PagedLayerKv layer =
        PagedKvCache.create(1, 1, DIM, KvCacheFormat.parse("f32").withBlockTokens(8)).layer(0);
    int[] positions = new int[tokens];
    for (int i = 0; i < tokens; i++) {
      positions[i] = 100 + 3 * i;
    }
    layer.append(tokens, positions, new float[tokens * DIM], new float[tokens * DIM]);
    return layer;
  }

  /** The largest and second largest of a row and the earliest token of the largest, scanned. */
  static float[] tops(float[] row, int count) {
    float first = 0f;
    float second = 0f;
    int index = -1;
    for (int i = 0; i < count; i++) {
      if (row[i] > first) {
        second = first;
        first = row[i];
        index = i;
      } else if (row[i] > second) {
        second = row[i];
      }
    }
    return new float[] {first, second, index};
  }

  @Test
  void keptTailsAndTopsAnswerAsTheFullRows() {
    SplittableRandom r = new SplittableRandom(5);
    for (int count : new int[] {7, 37, 64, 203}) {
      PagedLayerKv layer = layer(count);
      int n = 3;
      QaqWindow window = new QaqWindow(n);
      float[][] full = new float[n][];
      int[] rowOf = new int[n];
      int held = 0;
      int tail = 0;
      for (int step = 0; step < 8; step++) {
        int position = 100 + 3 * count + step;
        float[] merged = new float[count];
        for (int head = 0; head < 2; head++) {
          float[] p = new float[count + 5];
          int kind = r.nextInt(4);
          for (int i = 0; i < count; i++) {
            p[i] =
                switch (kind) {
                  case 0 -> 0f; // a row of zeros
                  case 1 -> r.nextInt(4) / 8f; // ties
                  default -> (float) r.nextDouble() / count;
                };
          }
          if (kind == 3) {
            p[r.nextInt(count)] = 0.9f; // one large
          }
          for (int i = 0; i < count; i++) {
            merged[i] = Math.max(merged[i], p[i]);
          }
          window.add(position, p, count, 1f, layer, 0, tail);
        }
        // the reference: the last n full rows
        int slot = held < n ? held++ : step % n;
        full[slot] = merged;
        rowOf[slot] = position;
        int mustKeep = tail;
        for (int i = 0; i < count; i++) {
          int token = 100 + 3 * i;
          float a = 0f;
          float other = 0f;
          for (int k = 0; k < held; k++) {
            a = Math.max(a, full[k][i]);
            float[] t = tops(full[k], count);
            other = Math.max(other, (int) t[2] == i ? t[1] : t[0]);
          }
          assertThat(window.largestOtherThan(token))
              .as("count %d step %d token %d", count, step, i)
              .isEqualTo(other);
          if (i >= mustKeep) {
            assertThat(window.attention(token)).as("count %d step %d", count, step).isEqualTo(a);
          }
        }
        if (tail > 0) {
          assertThatThrownBy(() -> window.attention(100)).isInstanceOf(IllegalStateException.class);
        }
        tail = Math.min(count, tail + r.nextInt(count / 3 + 1)); // the settled blocks grow
      }
    }
  }
}
