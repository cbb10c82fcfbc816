package io.kvslim.model;

/**
 * The rows of one {@link Forward} step as the layers see them: the batch's rows, positions and
 * segments, until a cache keeps only some of its rows for the deeper layers ({@link
 * io.kvslim.kv.LayerKv#keptRows}, PyramidInfer). The kept rows' hidden states then move up to form
 * the new row set, each keeping its own position (RoPE and the causal mask go by it), and a dropped
 * row whose logits are wanted keeps the hidden state it left with: its logits are those of that
 * early exit. Without thinning this only hands out the batch's own arrays.
 */
final class StepRows {
  private int[] positions; // of each current row: the batch's array until rows are thinned
  private int[] bounds = new int[9]; // segment s is rows [bounds[s], bounds[s + 1])
  private int[] own = new int[0]; // positions once thinned
  private int[] origin = new int[0]; // the batch row of each current row, once thinned
  private int[] current = new int[0]; // the current row of each batch row, -1 once dropped
  private boolean[] wanted = new boolean[0]; // by batch row: its logits are wanted
  private float[] exit = new float[0]; // hidden states of wanted rows dropped before the end
  private boolean thinned;
  private int[] ran = new int[0]; // rows each layer ran in the last step

  /** The batch's rows, for a new step of a model with {@code layers} layers. */
  void reset(Batch b, int layers) {
    positions = b.positions();
    thinned = false;
    int segments = b.segments();
    if (bounds.length < segments + 1) {
      bounds = new int[segments + 1];
    }
    for (int s = 0; s < segments; s++) {
      bounds[s] = b.segmentStart(s);
    }
    bounds[segments] = b.rows();
    if (ran.length != layers) {
      ran = new int[layers];
    }
  }

  int[] positions() {
    return positions;
  }

  int start(int s) {
    return bounds[s];
  }

  int end(int s) {
    return bounds[s + 1];
  }

  void ran(int layer, int rows) {
    ran[layer] = rows;
  }

  int ranAt(int layer) {
    return ran.length == 0 ? 0 : ran[layer];
  }

  /** The array holding batch row {@code row}'s final hidden state ({@code x} unless it left). */
  float[] hiddenOf(int row, float[] x) {
    return !thinned || current[row] >= 0 ? x : exit;
  }

  /** Its row in {@link #hiddenOf}. */
  int hiddenRow(int row) {
    return thinned && current[row] >= 0 ? current[row] : row;
  }

  /**
   * After layer {@code l} ran {@code n} rows with hidden states {@code x}: asks each segment's
   * cache which rows go on, and compacts {@code x}, the positions and the segments to those. The
   * rows that go on.
   */
  int thin(int l, Batch b, int n, float[] x, int dim) {
    int segments = b.segments();
    int[][] keep = null;
    for (int s = 0; s < segments; s++) {
      int cnt = bounds[s + 1] - bounds[s];
      int[] k = b.cache(s).layer(l).keptRows(cnt);
      if (k != null) {
        check(k, cnt);
        if (keep == null) {
          keep = new int[segments][];
        }
        keep[s] = k;
      }
    }
    if (keep == null) {
      return n;
    }
    return compact(keep, b, n, x, dim);
  }

  /**
   * Keeps the rows {@code keep} (ascending indices below {@code n}) of a one-segment step whose
   * {@code n} rows have hidden states {@code x}: as {@link #thin}, for a cache that keeps only some
   * of its rows' queries once their keys and values are in ({@link io.kvslim.kv.LayerKv#queryRows},
   * CacheBlend). The rows that go on.
   */
  int select(int[] keep, Batch b, int n, float[] x, int dim) {
    if (b.segments() != 1) {
      throw new IllegalStateException("query rows can be selected in a one-sequence step only");
    }
    check(keep, n);
    return compact(new int[][] {keep}, b, n, x, dim);
  }

  private int compact(int[][] keep, Batch b, int n, float[] x, int dim) {
    int segments = b.segments();
    if (!thinned) {
      start(b, n);
    }
    int to = 0;
    for (int s = 0; s < segments; s++) {
      int first = bounds[s];
      int last = bounds[s + 1];
      bounds[s] = to;
      int[] k = keep[s];
      int next = 0; // into k
      for (int r = first; r < last; r++) {
        if (k != null && (next >= k.length || k[next] != r - first)) {
          drop(b, r, x, dim);
          continue;
        }
        next++;
        if (to != r) {
          System.arraycopy(x, r * dim, x, to * dim, dim);
          positions[to] = positions[r];
          origin[to] = origin[r];
        }
        current[origin[to]] = to;
        to++;
      }
    }
    bounds[segments] = to;
    return to;
  }

  /** The first thinning of the step: positions copied, every row its own origin. */
  private void start(Batch b, int n) {
    if (own.length < n) {
      own = new int[n];
      origin = new int[n];
      current = new int[n];
      wanted = new boolean[n];
    }
    System.arraycopy(positions, 0, own, 0, n);
    positions = own;
    for (int r = 0; r < n; r++) {
      origin[r] = r;
      current[r] = r;
      wanted[r] = false;
    }
    for (int i = 0; i < b.logitCount(); i++) {
      wanted[b.logitRow(i)] = true;
    }
    thinned = true;
  }

  /** Current row {@code r} goes no deeper; its hidden state is kept if its logits are wanted. */
  private void drop(Batch b, int r, float[] x, int dim) {
    int row = origin[r];
    current[row] = -1;
    if (wanted[row]) {
      if (exit.length < b.rows() * dim) {
        exit = new float[b.rows() * dim];
      }
      System.arraycopy(x, r * dim, exit, row * dim, dim);
    }
  }

  private static void check(int[] k, int cnt) {
    if (k.length == 0) {
      throw new IllegalStateException("a segment must keep at least one row");
    }
    for (int i = 0; i < k.length; i++) {
      if (k[i] < 0 || k[i] >= cnt || (i > 0 && k[i] <= k[i - 1])) {
        throw new IllegalStateException(
            "kept rows must be ascending row indices below " + cnt + ", got " + k[i]);
      }
    }
  }
}
