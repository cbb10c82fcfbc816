package io.kvslim.kv.method;

import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.store.HeadStore;
import java.util.Arrays;

/**
 * The last {@code n} attention rows of one (layer, KV head), for {@link QaqMethod}: each row is the
 * element-wise max over the query heads of the group (the authors' GQA-free {@code amax}, {@code
 * src/quantizer.py} line 169), kept with the positions of the tokens it covers, so an eviction
 * between a row and its use does not shift which token a probability belongs to.
 */
final class QaqWindow {
  private final int n;
  private final int[] rowPosition;
  private final float[][] probs;
  private final int[][] tokens;
  private final int[] counts;
  private final float[] qmax;
  private final float[] top1; // per row: the largest probability, its token, the second largest
  private final int[] top1Token;
  private final float[] top2;
  private final boolean[] topsValid;
  private int size;
  private int[] known; // positions of the head's retained tokens (known(...)), shared by the rows
  private int knownCount;
  private long knownRemovals;

  QaqWindow(int n) {
    this.n = n;
    this.rowPosition = new int[n];
    this.probs = new float[n][];
    this.tokens = new int[n][];
    this.counts = new int[n];
    this.qmax = new float[n];
    this.top1 = new float[n];
    this.top1Token = new int[n];
    this.top2 = new float[n];
    this.topsValid = new boolean[n];
  }

  /** Rows held (at most n). */
  int size() {
    return size;
  }

  /**
   * Adds query row {@code position}'s probabilities of one head (max-merged into the row of the
   * same position if another head of the group gave it already); the oldest row leaves when n are
   * held.
   */
  void add(int position, float[] p, int count, float q, PagedLayerKv layer, int kvHead) {
    for (int r = 0; r < size; r++) {
      if (rowPosition[r] == position && counts[r] == count) {
        float[] row = probs[r];
        for (int i = 0; i < count; i++) {
          row[i] = Math.max(row[i], p[i]);
        }
        qmax[r] = Math.max(qmax[r], q);
        topsValid[r] = false;
        return;
      }
    }
    int r = size;
    if (size == n) {
      r = 0;
      for (int i = 1; i < n; i++) {
        r = rowPosition[i] < rowPosition[r] ? i : r;
      }
      if (rowPosition[r] > position) {
        return; // older than every row held
      }
    } else {
      size++;
    }
    rowPosition[r] = position;
    // the row's arrays are reused from the row it replaces (a new one only when the cache grew)
    if (probs[r] == null || probs[r].length < count) {
      probs[r] = new float[count + count / 8 + 16];
    }
    System.arraycopy(p, 0, probs[r], 0, count);
    HeadStore head = layer.head(kvHead);
    int live = head.size();
    tokens[r] = known(head, live);
    counts[r] = Math.min(live, count);
    qmax[r] = q;
    topsValid[r] = false;
  }

  /**
   * The positions of the head's {@code live} retained tokens, shared by the rows: while nothing was
   * removed from the head since the last row, the tokens appended since are read and added after
   * the ones known (which the older rows, covering fewer tokens, read unchanged); after a removal,
   * or when the array must grow, a new array (the older rows keep theirs).
   */
  private int[] known(HeadStore head, int live) {
    if (known == null || head.removals() != knownRemovals || live < knownCount) {
      known = new int[live + live / 8 + 16];
      knownCount = 0;
      knownRemovals = head.removals();
    } else if (known.length < live) {
      known = Arrays.copyOf(known, live + live / 8 + 16);
    }
    if (knownCount < live) {
      head.positionsFrom(knownCount, known);
      knownCount = live;
    }
    return known;
  }

  /** Position of the newest query row. */
  int newestPosition() {
    int m = Integer.MIN_VALUE;
    for (int r = 0; r < size; r++) {
      m = Math.max(m, rowPosition[r]);
    }
    return m;
  }

  /** Tokens the newest row attended (QAQ's sequence length). */
  int attended() {
    int newest = 0;
    for (int r = 1; r < size; r++) {
      newest = rowPosition[r] > rowPosition[newest] ? r : newest;
    }
    return Math.max(1, counts[newest]);
  }

  /** The largest {@code |q_c|·scale} of the rows. */
  float qmax() {
    float m = 0f;
    for (int r = 0; r < size; r++) {
      m = Math.max(m, qmax[r]);
    }
    return m;
  }

  private static int indexOf(int[] positions, int count, int position) {
    int i = Arrays.binarySearch(positions, 0, count, position);
    if (i >= 0 && positions[i] == position) {
      return i;
    }
    for (int j = 0; j < count; j++) { // positions out of order (cache-relative layers)
      if (positions[j] == position) {
        return j;
      }
    }
    return -1;
  }

  /** {@code a_i}: the largest probability a row gave the token at {@code position}. */
  float attention(int position) {
    float a = 0f;
    for (int r = 0; r < size; r++) {
      int i = indexOf(tokens[r], counts[r], position);
      if (i >= 0) {
        a = Math.max(a, probs[r][i]);
      }
    }
    return a;
  }

  /** {@code max_{j≠i} a_j}: the largest probability a row gave a token other than {@code i}. */
  float largestOtherThan(int position) {
    float m = 0f;
    for (int r = 0; r < size; r++) {
      if (!topsValid[r]) {
        tops(r);
      }
      m = Math.max(m, top1Token[r] != position ? top1[r] : top2[r]);
    }
    return m;
  }

  private void tops(int r) {
    float first = 0f;
    float second = 0f;
    int token = Integer.MIN_VALUE;
    float[] row = probs[r];
    for (int i = 0; i < counts[r]; i++) {
      float p = row[i];
      if (p > first) {
        second = first;
        first = p;
        token = tokens[r][i];
      } else if (p > second) {
        second = p;
      }
    }
    top1[r] = first;
    top1Token[r] = token;
    top2[r] = second;
    topsValid[r] = true;
  }
}
