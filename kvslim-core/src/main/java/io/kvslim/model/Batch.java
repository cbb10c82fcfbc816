package io.kvslim.model;

import io.kvslim.kv.KvCache;
import java.util.Arrays;

/**
 * The rows of one forward step: tokens with their positions, grouped into contiguous segments, each
 * segment one sequence with its own KV cache. A prefill is one segment of many rows; a batched
 * decode is many segments of one row. {@code logitRows} names the rows whose next-token logits are
 * wanted, in output order.
 */
public final class Batch {
  private int rows;
  private int[] tokens = new int[16];
  private int[] positions = new int[16];
  private int segments;
  private int[] segmentStart = new int[9];
  private KvCache[] caches = new KvCache[8];
  private int logitCount;
  private int[] logitRows = new int[16];

  public Batch clear() {
    rows = 0;
    segments = 0;
    logitCount = 0;
    Arrays.fill(caches, null);
    return this;
  }

  /**
   * Adds a sequence's tokens {@code tokens[from..to)} at consecutive positions from {@code
   * firstPos}; with {@code allLogits} every row's logits are computed, else only the last row's
   * (when {@code lastLogits}).
   */
  public Batch add(
      KvCache cache,
      int[] toks,
      int from,
      int to,
      int firstPos,
      boolean allLogits,
      boolean lastLogits) {
    int n = to - from;
    ensureRows(rows + n);
    // segment s needs caches[s] and segmentStart[s + 1]
    if (segments + 2 > segmentStart.length) {
      segmentStart = Arrays.copyOf(segmentStart, Math.max(segments + 2, segmentStart.length * 2));
    }
    if (segments + 1 > caches.length) {
      caches = Arrays.copyOf(caches, Math.max(segments + 1, caches.length * 2));
    }
    segmentStart[segments] = rows;
    caches[segments] = cache;
    for (int i = 0; i < n; i++) {
      tokens[rows + i] = toks[from + i];
      positions[rows + i] = firstPos + i;
      if (allLogits || (lastLogits && i == n - 1)) {
        if (logitCount == logitRows.length) {
          logitRows = Arrays.copyOf(logitRows, logitRows.length * 2);
        }
        logitRows[logitCount++] = rows + i;
      }
    }
    rows += n;
    segments++;
    segmentStart[segments] = rows;
    return this;
  }

  private void ensureRows(int n) {
    if (n > tokens.length) {
      int cap = Math.max(n, tokens.length * 2);
      tokens = Arrays.copyOf(tokens, cap);
      positions = Arrays.copyOf(positions, cap);
    }
  }

  public int rows() {
    return rows;
  }

  public int token(int row) {
    return tokens[row];
  }

  public int[] positions() {
    return positions;
  }

  public int segments() {
    return segments;
  }

  public int segmentStart(int s) {
    return segmentStart[s];
  }

  public int segmentEnd(int s) {
    return segmentStart[s + 1];
  }

  public KvCache cache(int s) {
    return caches[s];
  }

  public int logitCount() {
    return logitCount;
  }

  public int logitRow(int i) {
    return logitRows[i];
  }
}
