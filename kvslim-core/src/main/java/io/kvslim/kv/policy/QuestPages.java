package io.kvslim.kv.policy;

import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvBlock;
import java.util.Arrays;
import java.util.BitSet;
import java.util.List;

/**
 * Quest's per-page key bounds of one (layer, KV head) and the query-aware page selection over them
 * (Tang et al. 2024, arXiv:2406.10774; METHODS.md N7). Page {@code p} is the retained tokens {@code
 * [p·P, (p+1)·P)} of the head, in retained order; the last page is the one still filling.
 *
 * <ul>
 *   <li>Bounds: {@code M_p} and {@code m_p}, the elementwise max and min of the page's keys as the
 *       cache returns them ({@link HeadStore#readKey}: dequantized when the blocks hold a quantized
 *       format, so the bound holds for the keys attention reads; post-RoPE). {@link #update} folds
 *       new tokens into the last pages and rebuilds every page from the first token whose position
 *       changed (an eviction shifts the retained order from there on).
 *   <li>Upper bound: {@code U_p = Σ_j max(q_j·M_pj, q_j·m_pj)} ({@link #upperBounds}), the
 *       reference's {@code sign(q)}-flipped key max ({@code evaluation/quest_attention.py} lines
 *       146-184 of mit-han-lab/Quest: {@code max_key = key_states * sign}, {@code amax} per chunk,
 *       then a matmul with {@code |q|}). Each term is at least {@code q_j·k_j} for every key of the
 *       page, and float rounding is monotone, so {@code U_p ≥ q·k} also as a sequential float dot.
 *   <li>Selection ({@link #select}): the last page plus the {@code K−1} other pages with the
 *       highest bound, as the reference's decode kernel reads its top {@code page_budget − 1} pages
 *       by the estimate and always the last page ({@code quest/utils/controller.py} lines 111-118:
 *       {@code kv_indices_without_last}, {@code inference_page_budget − 1}). Per KV head: {@code
 *       U_p} is the max over the group's query heads, or with {@code union} each query head picks
 *       its own {@code K−1} pages and the head reads the union. Ties go to the earlier page.
 * </ul>
 *
 * The selection is a set of pages; {@link #ranges} turns it into retained-token ranges, which is
 * what a cold tier serving pages would read.
 */
public final class QuestPages {
  private final int pageSize;
  private final int dim;
  private float[] max = new float[0]; // page-major, dim floats a page
  private float[] min = new float[0];
  private int[] positions = new int[0]; // positions of the tokens folded in, retained order
  private int[] read = new int[0];
  private int covered;
  private KvBlock[] seenBlocks = new KvBlock[0]; // the blocks and their key formats last folded in
  private Object[] seenFormats = new Object[0];
  private int seenCount;
  private final float[] key;
  private float[] u = new float[0];
  private float[] uHead = new float[0];

  public QuestPages(int pageSize, int dim) {
    if (pageSize < 1) {
      throw new IllegalArgumentException("a page holds at least one token, got " + pageSize);
    }
    this.pageSize = pageSize;
    this.dim = dim;
    this.key = new float[dim];
  }

  public int pageSize() {
    return pageSize;
  }

  /** Pages of a head holding {@code tokens} tokens. */
  public int pages(int tokens) {
    return (tokens + pageSize - 1) / pageSize;
  }

  /** Tokens folded in so far. */
  public int covered() {
    return covered;
  }

  /** Pages over the tokens folded in so far. */
  public int pages() {
    return pages(covered);
  }

  /**
   * Bytes of the bounds over the tokens folded in: a max and a min of {@code dim} floats a page.
   */
  public long bytes() {
    return 8L * dim * pages();
  }

  /** Element {@code j} of page {@code p}'s elementwise key max. */
  public float max(int p, int j) {
    return max[p * dim + j];
  }

  /** Element {@code j} of page {@code p}'s elementwise key min. */
  public float min(int p, int j) {
    return min[p * dim + j];
  }

  /**
   * Brings the bounds up to date with {@code head}'s retained tokens; returns the number of tokens
   * whose keys were read (0 when nothing changed).
   */
  public int update(HeadStore head) {
    int n = head.size();
    if (read.length < n) {
      read = new int[Math.max(n, 2 * read.length)];
    }
    head.positions(read);
    int same = 0;
    int limit = Math.min(covered, n);
    while (same < limit && read[same] == positions[same]) {
      same++;
    }
    same = Math.min(same, firstRewrittenToken(head));
    if (same == n && covered == n) {
      return 0;
    }
    int pages = pages(n);
    if (max.length < pages * dim) {
      int grown = Math.max(pages, 2 * max.length / Math.max(1, dim)) * dim;
      max = Arrays.copyOf(max, grown);
      min = Arrays.copyOf(min, grown);
    }
    if (positions.length < n) {
      positions = Arrays.copyOf(positions, Math.max(n, 2 * positions.length));
    }
    // appended tokens fold into the last page; a changed token's page is rebuilt from its start
    int from = same == covered ? covered : (same / pageSize) * pageSize;
    int fresh = pages(from); // the pages from here on start empty
    Arrays.fill(max, fresh * dim, pages * dim, Float.NEGATIVE_INFINITY);
    Arrays.fill(min, fresh * dim, pages * dim, Float.POSITIVE_INFINITY);
    if (n - from > 2 * head.blocks().size()) {
      float[] keys = new float[n * dim];
      head.readKeys(keys);
      for (int i = from; i < n; i++) {
        fold(i, keys, i * dim);
      }
    } else {
      for (int i = from; i < n; i++) {
        head.readKey(i, key);
        fold(i, key, 0);
      }
    }
    System.arraycopy(read, from, positions, from, n - from);
    covered = n;
    List<KvBlock> blocks = head.blocks();
    if (seenBlocks.length < blocks.size()) {
      seenBlocks = new KvBlock[2 * blocks.size()];
      seenFormats = new Object[2 * blocks.size()];
    }
    seenCount = blocks.size();
    for (int b = 0; b < seenCount; b++) {
      seenBlocks[b] = blocks.get(b);
      seenFormats[b] = blocks.get(b).keyFormat();
    }
    return n - from;
  }

  /**
   * The retained index of the first token of the first block that is another block, or whose keys
   * are now in another format (a residual window quantized, KIVI), than at the last update: their
   * keys may have changed with the same positions.
   */
  private int firstRewrittenToken(HeadStore head) {
    List<KvBlock> blocks = head.blocks();
    int retained = 0;
    for (int b = 0; b < Math.min(seenCount, blocks.size()); b++) {
      KvBlock block = blocks.get(b);
      if (block != seenBlocks[b] || block.keyFormat() != seenFormats[b]) {
        return retained;
      }
      retained += block.liveCount();
    }
    return Integer.MAX_VALUE;
  }

  private void fold(int token, float[] k, int off) {
    int at = (token / pageSize) * dim;
    for (int j = 0; j < dim; j++) {
      float v = k[off + j];
      max[at + j] = Math.max(max[at + j], v);
      min[at + j] = Math.min(min[at + j], v);
    }
  }

  /**
   * {@code U_p = Σ_j max(q_j·M_pj, q_j·m_pj)} for pages {@code [0, pages)} into {@code u}, for the
   * query of {@code dim} floats at {@code q[off]}.
   */
  public void upperBounds(float[] q, int off, int pages, float[] u) {
    for (int p = 0; p < pages; p++) {
      int at = p * dim;
      float s = 0f;
      for (int j = 0; j < dim; j++) {
        float qj = q[off + j];
        s += Math.max(qj * max[at + j], qj * min[at + j]);
      }
      u[p] = s;
    }
  }

  /**
   * The pages to read for the query heads {@code [head0, head0 + group)} of a decode query ({@code
   * q}: {@code heads × dim} floats from {@code off}, head {@code h} at {@code off + h·dim}) with a
   * budget of {@code k} pages: the last page and the {@code k − 1} others with the highest bound
   * (see the class comment), set in {@code out} (cleared first). Returns false, selecting nothing,
   * when the head has at most {@code k} pages (then every page is read).
   */
  public boolean select(
      float[] q, int off, int head0, int group, int k, boolean union, BitSet out) {
    out.clear();
    int pages = pages();
    if (pages <= k) {
      return false;
    }
    int others = pages - 1;
    if (u.length < pages) {
      u = new float[pages];
      uHead = new float[pages];
    }
    if (union) {
      for (int h = head0; h < head0 + group; h++) {
        upperBounds(q, off + h * dim, others, uHead);
        Selection.highest(uHead, 0, others, k - 1, out);
      }
    } else {
      Arrays.fill(u, 0, others, Float.NEGATIVE_INFINITY);
      for (int h = head0; h < head0 + group; h++) {
        upperBounds(q, off + h * dim, others, uHead);
        for (int p = 0; p < others; p++) {
          u[p] = Math.max(u[p], uHead[p]);
        }
      }
      Selection.highest(u, 0, others, k - 1, out);
    }
    out.set(pages - 1);
    return true;
  }

  /**
   * The retained-token ranges of the selected {@code pages} of a head holding {@code tokens}
   * tokens, adjacent pages merged: pairs {@code [from, to)}, ascending, in {@code dst}; returns the
   * pairs.
   */
  public int ranges(BitSet pages, int tokens, int[] dst) {
    int count = 0;
    for (int p = pages.nextSetBit(0); p >= 0; ) {
      int end = pages.nextClearBit(p);
      dst[2 * count] = p * pageSize;
      dst[2 * count + 1] = Math.min(tokens, end * pageSize);
      count++;
      p = pages.nextSetBit(end);
    }
    return count;
  }

  /** Sets in {@code tokens} (cleared first) the retained indices of the selected {@code pages}. */
  public void tokens(BitSet pages, int n, BitSet tokens) {
    tokens.clear();
    for (int p = pages.nextSetBit(0); p >= 0; p = pages.nextSetBit(p + 1)) {
      tokens.set(p * pageSize, Math.min(n, (p + 1) * pageSize));
    }
  }

  /**
   * Bytes of the keys and values of the retained tokens set in {@code tokens} (all tokens when
   * null), as stored: each token costs its block's key and value bytes divided by the block's
   * capacity (what a tier serving these tokens would send).
   */
  public static double bytes(HeadStore head, BitSet tokens) {
    List<KvBlock> blocks = head.blocks();
    int dim = head.headDim();
    double sum = 0;
    int retained = 0;
    for (KvBlock block : blocks) {
      int live = block.liveCount();
      if (live == 0) {
        continue;
      }
      int count = live;
      if (tokens != null) {
        count = 0;
        for (int i = tokens.nextSetBit(retained);
            i >= 0 && i < retained + live;
            i = tokens.nextSetBit(i + 1)) {
          count++;
        }
      }
      int capacity = block.capacity();
      double perToken =
          (double)
                  (block.keyFormat().blockBytes(capacity, dim)
                      + block.valueFormat().blockBytes(capacity, dim))
              / capacity;
      sum += count * perToken;
      retained += live;
    }
    return sum;
  }
}
