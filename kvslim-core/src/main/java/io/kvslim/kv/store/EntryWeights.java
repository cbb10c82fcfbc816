package io.kvslim.kv.store;

import java.util.Arrays;
import java.util.BitSet;

/**
 * The merge weights of one head's retained entries (METHODS.md M1's {@code w}, M2): an entry of
 * weight {@code w} takes part in attention as {@code w} identical copies, its logit {@code z}
 * entering the softmax as {@code z + ln w} with its value unchanged. Merging methods (EMS, LOOK-M)
 * set weights on the entries they merged tokens into; a raw token has weight 1.
 *
 * <p>Stored for the retained indices {@code [0, count())} only: every entry after them has weight 1
 * and costs nothing, so a head without merged entries holds no array and {@link #bytes()} is 0, and
 * tokens appended after a merge (decode) cost nothing either. Each stored entry costs {@link
 * #BYTES_PER_ENTRY}: its weight and its {@code ln w} (what attention adds), both F32. Eviction
 * keeps the weights aligned with the retained order and drops trailing unit weights.
 *
 * <p>Not thread-safe (owned by its {@link HeadStore}).
 */
public final class EntryWeights {
  /** Bytes per stored entry: the weight and its natural log, F32 each. */
  public static final int BYTES_PER_ENTRY = 2 * Float.BYTES;

  private float[] weights = new float[0];
  private float[] logs = new float[0];
  private int count;

  /** Retained indices {@code [0, count)} carry a stored weight (1 beyond). */
  public int count() {
    return count;
  }

  /** Bytes held: {@link #BYTES_PER_ENTRY} per stored entry. */
  public long bytes() {
    return bytesFor(count);
  }

  static long bytesFor(int count) {
    return (long) count * BYTES_PER_ENTRY;
  }

  /** The weight of retained entry {@code index} (1 beyond {@link #count()}). */
  public float weight(int index) {
    return index < count ? weights[index] : 1f;
  }

  /** {@code ln w} of retained entry {@code index} (0 beyond {@link #count()}). */
  public float lnWeight(int index) {
    return index < count ? logs[index] : 0f;
  }

  /** Whether some entry has a weight other than 1. */
  public boolean any() {
    return count > 0;
  }

  /** The count after setting weights at the given indices (for reserving bytes first). */
  int countAfterSet(int[] indices, int n) {
    int c = count;
    for (int i = 0; i < n; i++) {
      c = Math.max(c, indices[i] + 1);
    }
    return c;
  }

  /** Sets {@code weights[i]} at retained index {@code indices[i]}, for {@code i < n}. */
  void set(int[] indices, float[] w, int n) {
    int after = countAfterSet(indices, n);
    if (after > weights.length) {
      int grown = Math.max(after, 2 * weights.length);
      int old = weights.length;
      weights = Arrays.copyOf(weights, grown);
      logs = Arrays.copyOf(logs, grown);
      Arrays.fill(weights, old, grown, 1f);
    }
    Arrays.fill(weights, count, after, 1f);
    Arrays.fill(logs, count, after, 0f);
    for (int i = 0; i < n; i++) {
      if (!(w[i] > 0) || Float.isInfinite(w[i])) {
        throw new IllegalArgumentException("an entry weight must be positive, got " + w[i]);
      }
      weights[indices[i]] = w[i];
      logs[indices[i]] = (float) Math.log(w[i]);
    }
    count = after;
    trim();
  }

  /** The count after evicting {@code evicted} (retained indices before the eviction). */
  int countAfterEvict(BitSet evicted) {
    int last = -1;
    int kept = 0;
    for (int i = 0; i < count; i++) {
      if (!evicted.get(i)) {
        if (weights[i] != 1f) {
          last = kept;
        }
        kept++;
      }
    }
    return last + 1;
  }

  /** Drops the evicted indices' weights, keeping the others aligned with the retained order. */
  void evict(BitSet evicted) {
    int w = 0;
    for (int i = 0; i < count; i++) {
      if (!evicted.get(i)) {
        weights[w] = weights[i];
        logs[w] = logs[i];
        w++;
      }
    }
    count = w;
    trim();
  }

  private void trim() {
    while (count > 0 && weights[count - 1] == 1f) {
      count--;
    }
    if (count == 0 && weights.length > 0) {
      weights = new float[0];
      logs = new float[0];
    }
  }

  /**
   * Adds {@code ln w} of entries {@code [0, n)} to a row of logits {@code z[off..off+n)} (M2); a
   * masked logit ({@code −∞}) stays masked.
   */
  public void addLogs(float[] z, int off, int n) {
    addLogs(z, off, 0, n);
  }

  /**
   * {@link #addLogs(float[], int, int)} for the entries {@code [from, to)} only: {@code z[off + i]
   * += ln w_i} for each of them.
   */
  public void addLogs(float[] z, int off, int from, int to) {
    int m = Math.min(to, count);
    for (int i = from; i < m; i++) {
      z[off + i] += logs[i];
    }
  }

  void clear() {
    count = 0;
    weights = new float[0];
    logs = new float[0];
  }
}
