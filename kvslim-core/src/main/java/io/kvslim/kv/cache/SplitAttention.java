package io.kvslim.kv.cache;

import io.kvslim.kv.AttentionOrder;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvBlock;
import io.kvslim.kv.store.LayerStore;
import java.util.Arrays;
import java.util.List;

/**
 * Flash-decoding (split-K) for {@link PagedLayerKv}: when a decode call has fewer (KV head, tile)
 * items than the pool has threads (one sequence over a model with few KV heads, MQA or GQA), each
 * KV head's blocks are cut into parts of about equal token counts, the parts run on different
 * threads, and their partial softmaxes are merged exactly afterwards. A part {@code p} of a row
 * leaves its largest score {@code m_p}, its weight sum {@code S_p = Σ e^{z−m_p}} and its
 * unnormalized value sum {@code A_p = Σ e^{z−m_p} v}; with {@code M = max m_p} and {@code f_p =
 * e^{m_p−M}} the row's output is {@code Σ f_p A_p / Σ f_p S_p} (plus, for value formats that add
 * normalized probabilities, {@code Σ P_p · f_p S_p / Σ f_p S_p}, their sums having been divided by
 * {@code S_p}). The result equals the unsplit attention up to float rounding (the exponentials are
 * taken against each part's maximum), not bit for bit; with one thread, or as many items as
 * threads, nothing is split, so single-threaded results do not change.
 *
 * <p>Splitting is skipped where a call needs the whole row at once: an observer (scores are
 * reported), a compensation entry, Quest's selection, cache-relative positions, llama.cpp's order.
 */
final class SplitAttention {
  /**
   * Fewest tokens a part gets: below this a part's fixed costs (the query preparation, the merge)
   * outweigh what another thread gains. Settable for tests ({@code kvslim.splitMinTokens}).
   */
  static int minPartTokens = Integer.getInteger("kvslim.splitMinTokens", 512);

  int parts; // per (KV head, tile) item
  int lastParts = 1; // what the last plan chose (1: not split), for tests
  int kvHeads;
  int tiles;
  int headDim;
  int[] blockFrom = new int[0]; // per (KV head, part): first block, its first token, end block
  int[] blockTo = new int[0];
  int[] base = new int[0];
  float[] max = new float[0]; // per slot × TILE_ROWS
  float[] sum = new float[0];
  float[] acc = new float[0]; // per slot × TILE_ROWS × headDim
  float[] prob = new float[0];
  boolean[] hasProb = new boolean[0];

  /**
   * How many parts each item of the call gets (1: no split) with {@code threads} threads, and where
   * each KV head's parts start and end when more than one.
   */
  int plan(LayerStore store, PagedLayerKv.Call c, int threads, boolean observed) {
    lastParts = 1;
    int items = store.kvHeads() * c.tiles;
    if (threads < 2
        || items >= threads
        || observed
        || c.order != AttentionOrder.OWN
        || c.relative != null
        || c.selected != null) {
      return 1;
    }
    int largest = 0;
    for (int g = 0; g < store.kvHeads(); g++) {
      HeadStore head = store.head(g);
      if (head.hasCompensation()) {
        return 1;
      }
      largest = Math.max(largest, head.size());
    }
    // two parts per thread: the threads claim parts one at a time, so one slowed down by another
    // process takes fewer of them
    int p = Math.min((2 * threads + items - 1) / items, largest / Math.max(1, minPartTokens));
    if (p < 2) {
      return 1;
    }
    parts = p;
    lastParts = p;
    kvHeads = store.kvHeads();
    tiles = c.tiles;
    headDim = store.headDim();
    int cuts = kvHeads * p;
    if (blockFrom.length < cuts) {
      blockFrom = new int[cuts];
      blockTo = new int[cuts];
      base = new int[cuts];
    }
    for (int g = 0; g < kvHeads; g++) {
      cut(store.head(g), g * p, p);
    }
    int slots = cuts * tiles;
    if (hasProb.length < slots) {
      max = new float[slots * PagedLayerKv.TILE_ROWS];
      sum = new float[slots * PagedLayerKv.TILE_ROWS];
      acc = new float[slots * PagedLayerKv.TILE_ROWS * headDim];
      prob = new float[slots * PagedLayerKv.TILE_ROWS * headDim];
      hasProb = new boolean[slots];
    } else if (acc.length < slots * PagedLayerKv.TILE_ROWS * headDim) {
      acc = new float[slots * PagedLayerKv.TILE_ROWS * headDim];
      prob = new float[slots * PagedLayerKv.TILE_ROWS * headDim];
    }
    return p;
  }

  /** Cuts a head's blocks into {@code p} runs of about {@code size / p} live tokens each. */
  private void cut(HeadStore head, int at, int p) {
    List<KvBlock> blocks = head.blocks();
    int size = head.size();
    int b = 0;
    int retained = 0;
    for (int k = 0; k < p; k++) {
      blockFrom[at + k] = b;
      base[at + k] = retained;
      long target = (long) size * (k + 1) / p;
      while (b < blocks.size() && (k == p - 1 || retained < target)) {
        retained += blocks.get(b).liveCount();
        b++;
      }
      blockTo[at + k] = b;
    }
  }

  /** The items of a split call: (KV head, tile, part), KV head major, then tile, then part. */
  int slots() {
    return kvHeads * tiles * parts;
  }

  /** Runs slot {@code slot} of the call on {@code tile}'s buffers. */
  void attend(OwnTileAttention own, AttentionTile tile, int slot, PagedLayerKv.Call c) {
    int p = slot % parts;
    int t = (slot / parts) % tiles;
    int g = slot / (parts * tiles);
    int first = t * PagedLayerKv.TILE_ROWS;
    int last = Math.min(c.rows, first + PagedLayerKv.TILE_ROWS);
    int cut = g * parts + p;
    own.attendPart(tile, g, first, last, c, blockFrom[cut], blockTo[cut], base[cut], this, slot);
  }

  /** Keeps a part's state (its maximum was stored as its softmax ran). */
  void keep(int slot, int rows, int headDim, float[] sums, float[] accRows, float[] probRows) {
    int row0 = slot * PagedLayerKv.TILE_ROWS;
    System.arraycopy(sums, 0, sum, row0, rows);
    System.arraycopy(accRows, 0, acc, row0 * headDim, rows * headDim);
    hasProb[slot] = probRows != null;
    if (probRows != null) {
      System.arraycopy(probRows, 0, prob, row0 * headDim, rows * headDim);
    }
  }

  /** Merges every item's parts into {@code c.out}. */
  void merge(PagedLayerKv.Call c) {
    float[] out = c.out;
    for (int g = 0; g < kvHeads; g++) {
      for (int t = 0; t < tiles; t++) {
        int first = t * PagedLayerKv.TILE_ROWS;
        int rows = Math.min(c.rows, first + PagedLayerKv.TILE_ROWS) - first;
        int slot0 = (g * tiles + t) * parts;
        for (int r = 0; r < rows; r++) {
          int query = (first + r) / c.group;
          int h = g * c.group + (first + r) % c.group;
          int o = (query * c.heads + h) * headDim;
          mergeRow(slot0, r, out, o);
        }
      }
    }
  }

  private void mergeRow(int slot0, int r, float[] out, int o) {
    float m = Float.NEGATIVE_INFINITY;
    for (int p = 0; p < parts; p++) {
      m = Math.max(m, max[(slot0 + p) * PagedLayerKv.TILE_ROWS + r]);
    }
    Arrays.fill(out, o, o + headDim, 0f);
    if (m == Float.NEGATIVE_INFINITY) {
      return; // no visible token (the unsplit attention writes zeros too)
    }
    float total = 0f;
    for (int p = 0; p < parts; p++) {
      int i = (slot0 + p) * PagedLayerKv.TILE_ROWS + r;
      if (max[i] != Float.NEGATIVE_INFINITY) {
        total += (float) Math.exp(max[i] - m) * sum[i];
      }
    }
    float inverse = total == 0f ? 0f : 1f / total;
    for (int p = 0; p < parts; p++) {
      int slot = slot0 + p;
      int i = slot * PagedLayerKv.TILE_ROWS + r;
      if (max[i] == Float.NEGATIVE_INFINITY) {
        continue;
      }
      float f = (float) Math.exp(max[i] - m);
      float a = f * inverse;
      int src = i * headDim;
      for (int j = 0; j < headDim; j++) {
        out[o + j] += acc[src + j] * a;
      }
      if (hasProb[slot]) {
        float b = f * sum[i] * inverse;
        for (int j = 0; j < headDim; j++) {
          out[o + j] += prob[src + j] * b;
        }
      }
    }
  }
}
