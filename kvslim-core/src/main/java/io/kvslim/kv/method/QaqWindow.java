package io.kvslim.kv.method;

import io.kvslim.kv.attention.VectorKernels;
import io.kvslim.kv.cache.PagedLayerKv;
import io.kvslim.kv.store.HeadStore;
import java.util.Arrays;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * The last {@code n} attention rows of one (layer, KV head), for {@link QaqMethod}: each row is the
 * element-wise max over the query heads of the group (the authors' GQA-free {@code amax}, {@code
 * src/quantizer.py} line 169), kept with the positions of the tokens it covers, so an eviction
 * between a row and its use does not shift which token a probability belongs to.
 *
 * <p>A row keeps only what QAQ's policy asks of it: the probabilities of the tokens from its {@code
 * tail} on (the tokens the policy may still judge: those after the head's leading blocks that are
 * quantized already, which it never judges again), and the row's largest and second largest
 * probability with the largest one's token, found when the row comes ({@link #largestOtherThan}
 * needs them of the whole row). A decode step then copies a few dozen probabilities a head instead
 * of all of them.
 */
final class QaqWindow {
  private final int n;
  private final int[] rowPosition;
  private final float[][] probs;
  private final int[][] tokens;
  private final int[] counts;
  private final int[] tails; // per row: probs[r][i − tails[r]] is the probability of token i
  private final float[] qmax;
  private final float[] top1; // per row: the largest probability, its token's index, the second
  private final int[] top1Index;
  private final float[] top2;
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
    this.tails = new int[n];
    this.qmax = new float[n];
    this.top1 = new float[n];
    this.top1Index = new int[n];
    this.top2 = new float[n];
  }

  /** Rows held (at most n). */
  int size() {
    return size;
  }

  /**
   * Adds query row {@code position}'s probabilities of one head (max-merged into the row of the
   * same position if another head of the group gave it already); the oldest row leaves when n are
   * held. The probabilities of the tokens before {@code tail} (in the head's order) are not kept:
   * {@link #attention} is never asked about them.
   */
  void add(int position, float[] p, int count, float q, PagedLayerKv layer, int kvHead, int tail) {
    for (int r = 0; r < size; r++) {
      if (rowPosition[r] == position && counts[r] == count) {
        float[] row = probs[r];
        int from = tails[r];
        for (int i = from; i < count; i++) {
          row[i - from] = Math.max(row[i - from], p[i]);
        }
        qmax[r] = Math.max(qmax[r], q);
        mergeTops(r, p, counts[r]);
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
    HeadStore head = layer.head(kvHead);
    int live = head.size();
    tokens[r] = known(head, live);
    counts[r] = Math.min(live, count);
    int from = Math.max(0, Math.min(tail, counts[r]));
    tails[r] = from;
    // the row's array is reused from the row it replaces (a new one only when the tail grew)
    if (probs[r] == null || probs[r].length < count - from) {
      probs[r] = new float[count - from + (count - from) / 8 + 16];
    }
    System.arraycopy(p, from, probs[r], 0, count - from);
    qmax[r] = q;
    top1[r] = 0f;
    top2[r] = 0f;
    top1Index[r] = -1;
    mergeTops(r, p, counts[r]);
  }

  /**
   * Merges the largest and second largest of {@code p[0..count)} into row {@code r}'s: the tops of
   * the element-wise max of the row and {@code p} (the largest is the larger of the two largest;
   * the second is the largest of what each gave a token other than that one), as a scan of the
   * merged row finds them ({@code first} the earliest token with the largest probability).
   */
  private void mergeTops(int r, float[] p, int count) {
    scan(p, count);
    float first = scanFirst;
    int index = scanIndex;
    float second = scanSecond;
    float oldFirst = top1[r];
    int oldIndex = top1Index[r];
    float oldSecond = top2[r];
    if (first > oldFirst || (first == oldFirst && first > 0f && index < oldIndex)) {
      // p's largest wins (on a tie the earlier token): the row's largest joins the others
      top2[r] = Math.max(index != oldIndex ? oldFirst : oldSecond, second);
      top1[r] = first;
      top1Index[r] = index;
    } else {
      top2[r] = Math.max(oldSecond, index != oldIndex ? first : second);
    }
  }

  private static final VectorSpecies<Float> FLOATS = VectorKernels.FLOATS;

  private float scanFirst;
  private float scanSecond;
  private int scanIndex;

  /**
   * The largest and second largest of {@code p[0..count)} and {0, 0} (two largest of the multiset:
   * equal to the largest when it occurs twice) into {@link #scanFirst} and {@link #scanSecond}, and
   * the earliest index of the largest into {@link #scanIndex} ({@code −1} when it is 0): what a
   * scan of the row that keeps the largest so far and moves it down when a larger one comes finds.
   * Each lane keeps its two largest, then the lanes' are merged; a row with a NaN is scanned
   * instead.
   */
  private void scan(float[] p, int count) {
    FloatVector m1 = FloatVector.zero(FLOATS);
    FloatVector m2 = m1;
    int upper = FLOATS.loopBound(count);
    int i = 0;
    for (; i < upper; i += FLOATS.length()) {
      FloatVector x = FloatVector.fromArray(FLOATS, p, i);
      m2 = m2.max(m1.min(x));
      m1 = m1.max(x);
    }
    float first = m1.reduceLanes(VectorOperators.MAX);
    VectorMask<Float> atFirst = m1.eq(first);
    float second =
        Math.max(
            m2.reduceLanes(VectorOperators.MAX),
            atFirst.trueCount() > 1
                ? first
                : m1.blend(0f, atFirst).reduceLanes(VectorOperators.MAX));
    if (Float.isNaN(first) || Float.isNaN(second)) {
      first = 0f;
      second = 0f;
      i = 0;
    }
    for (; i < count; i++) {
      float x = p[i];
      if (x > first) {
        second = first;
        first = x;
      } else if (x > second) {
        second = x;
      }
    }
    scanFirst = first;
    scanSecond = second;
    scanIndex = -1;
    if (first > 0f) {
      int j = 0;
      for (; j < upper; j += FLOATS.length()) {
        VectorMask<Float> hit = FloatVector.fromArray(FLOATS, p, j).eq(first);
        if (hit.anyTrue()) {
          scanIndex = j + hit.firstTrue();
          return;
        }
      }
      for (; j < count; j++) {
        if (p[j] == first) {
          scanIndex = j;
          return;
        }
      }
    }
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
        if (i < tails[r]) {
          throw new IllegalStateException(
              "qaq's window dropped the probability of token " + position + ", asked for it");
        }
        a = Math.max(a, probs[r][i - tails[r]]);
      }
    }
    return a;
  }

  /** {@code max_{j≠i} a_j}: the largest probability a row gave a token other than {@code i}. */
  float largestOtherThan(int position) {
    float m = 0f;
    for (int r = 0; r < size; r++) {
      int t = top1Index[r];
      boolean isTop = t >= 0 && tokens[r][t] == position;
      m = Math.max(m, isTop ? top2[r] : top1[r]);
    }
    return m;
  }
}
