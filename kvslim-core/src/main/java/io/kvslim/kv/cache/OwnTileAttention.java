package io.kvslim.kv.cache;

import io.kvslim.kv.attention.AttentionKernels;
import io.kvslim.kv.format.KvFormat;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.store.CompensationEntry;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvBlock;
import io.kvslim.kv.store.LayerStore;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.BitSet;
import java.util.List;

/**
 * {@link PagedLayerKv}'s own attention order ({@link io.kvslim.kv.AttentionOrder#OWN}) over one
 * tile of rows of a KV head: keys scored block by block in each block's format, softmax per row,
 * values added block by block (see {@link PagedLayerKv}'s class comment). One per layer; the tile
 * is the calling thread's.
 */
final class OwnTileAttention {
  private final LayerStore store;
  private final int headDim;

  OwnTileAttention(LayerStore store) {
    this.store = store;
    this.headDim = store.headDim();
  }

  /**
   * Attention of rows {@code [first, last)} of KV head {@code g} (row {@code r} is query {@code r /
   * group}, head {@code g·group + r % group}); with {@code observed}, each row's probabilities go
   * to {@code observed[head]}.
   */
  void attendTile(AttentionTile tile, int g, int first, int last, PagedLayerKv.Call c) {
    attendPart(tile, g, first, last, c, 0, Integer.MAX_VALUE, 0, null, 0);
  }

  /**
   * {@link #attendTile} over the head's blocks {@code [blockFrom, blockTo)} only, whose first live
   * token is the head's retained token {@code base}. With {@code parts} non-null (a split decode,
   * {@link SplitAttention}), the rows' softmax runs over those tokens alone and its state (the
   * largest score, the sum of weights, the unnormalized value sums) goes to {@code parts} at {@code
   * part} instead of {@code c.out}, for {@link SplitAttention#merge}; a split call has no observer,
   * no compensation entry, no Quest selection and no cache-relative positions.
   */
  void attendPart(
      AttentionTile tile,
      int g,
      int first,
      int last,
      PagedLayerKv.Call c,
      int blockFrom,
      int blockTo,
      int base,
      SplitAttention parts,
      int part) {
    int group = c.group;
    float[] queries = c.queries;
    float scale = c.scale;
    float[] out = c.out;
    float[][] observed = c.observed;
    HeadStore head = store.head(g);
    List<KvBlock> blocks = head.blocks();
    int size = head.size();
    int rows = last - first;
    boolean compensated = head.hasCompensation();
    tile.ensure(rows, size + 1, headDim, store.format().blockTokens());
    tile.setUpRows(g, first, last, c, headDim);
    int[] rowPositions = tile.rowPositions;
    int[] rowOffsets = tile.rowOffsets;
    int[] queryOffsets = rowOffsets;
    if (c.relative != null) {
      if (compensated) {
        throw new IllegalStateException(
            "a compensation entry cannot be read at cache-relative positions");
      }
      queries = c.relative.queries(tile, c.queries, headDim, size - c.n, c.group, first, rows);
      queryOffsets = tile.rolledOffsets;
    }
    float[] scores = tile.scores;
    int stride = tile.stride;
    float[] slots = tile.slots;
    KvFormat prepared = null;
    boolean preparedAtPositions = false;
    int retained = 0;
    // Quest's page selection: blocks without a selected token are not read (score -inf, weight 0)
    BitSet selected = c.selected == null ? null : c.selected[g];
    int blockEnd = Math.min(blockTo, blocks.size());
    if (PREFETCH && selected == null) {
      tile.touched += touchBlocks(blocks, blockFrom, blockEnd);
    }
    retained = base;
    for (int b = blockFrom; b < blockEnd; b++) {
      KvBlock block = blocks.get(b);
      int live = block.liveCount();
      int filled = block.filled();
      if (live == 0) {
        continue;
      }
      if (selected != null && !selectsAny(selected, retained, live)) {
        for (int r = 0; r < rows; r++) {
          int at = r * stride + retained;
          Arrays.fill(scores, at, at + live, Float.NEGATIVE_INFINITY);
        }
        retained += live;
        continue;
      }
      if (slots.length < block.capacity()) {
        tile.slots = slots = new float[block.capacity()];
      }
      KvFormat keyFormat = block.keyFormat();
      MemorySegment keys = block.keys();
      // keys before RoPE at their own positions: scored rotated by the format's kernel, or decoded,
      // rotated and scored in F32
      boolean atPositions =
          c.relative != null
              && rows <= ROTATED_ROWS
              && c.relative.scoresAtPositions(headDim)
              && keyFormat.rotatedQueryLength(headDim) > 0;
      if (c.relative != null && !atPositions) {
        keys = c.relative.keys(tile, block, retained, headDim);
        keyFormat = KvFormats.F32;
      }
      if (keyFormat != prepared || atPositions != preparedAtPositions) {
        if (atPositions) {
          tile.ensurePrepared(rows, keyFormat.rotatedQueryLength(headDim));
          for (int r = 0; r < rows; r++) {
            keyFormat.prepareRotatedQuery(
                queries,
                queryOffsets[r],
                headDim,
                c.relative.pairOffset(),
                tile.prepared,
                r * tile.preparedStride);
          }
        } else {
          tile.ensurePrepared(rows, keyFormat.preparedQueryLength(headDim));
          for (int r = 0; r < rows; r++) {
            keyFormat.prepareQuery(
                queries, queryOffsets[r], headDim, tile.prepared, r * tile.preparedStride);
          }
        }
        prepared = keyFormat;
        preparedAtPositions = atPositions;
      }
      boolean dense = live == filled;
      boolean positionsRead = false;
      int[] slotPositions = tile.slotPositions;
      // the rows that see some of the block score it together (a format may decode keys once)
      int[] list = tile.rowList;
      if (list.length < rows) {
        tile.rowList = list = new int[rows];
      }
      int seeing = 0;
      for (int r = 0; r < rows; r++) {
        if (block.minPosition() > rowPositions[r]) {
          int at = r * stride + retained;
          Arrays.fill(scores, at, at + live, Float.NEGATIVE_INFINITY);
        } else {
          list[seeing++] = r;
        }
      }
      int capacity = block.capacity();
      if (tile.rowScores.length < seeing * capacity) {
        tile.rowScores = new float[Math.max(rows, PagedLayerKv.TILE_ROWS) * capacity];
      }
      if (tile.blockRows.length < capacity * headDim) {
        tile.blockRows = new float[capacity * headDim];
      }
      float[] rowScores = tile.rowScores;
      if (atPositions) {
        block.positions(slotPositions, 0);
        positionsRead = true;
        for (int i = 0; i < seeing; i++) {
          keyFormat.scoresAtPositions(
              keys,
              filled,
              headDim,
              tile.prepared,
              list[i] * tile.preparedStride,
              c.relative.pairOffset(),
              slotPositions,
              c.relative.cos(),
              c.relative.sin(),
              rowScores,
              i * capacity,
              tile.work);
        }
      } else {
        // a block's stored keys: the kernels that skip the infinity check once it has passed
        (keys == block.keys() ? block.keyKernels() : keyFormat)
            .scoresRows(
                keys,
                filled,
                capacity,
                headDim,
                tile.prepared,
                tile.preparedStride,
                list,
                seeing,
                rowScores,
                capacity,
                tile.work,
                tile.blockRows);
      }
      for (int i = 0; i < seeing; i++) {
        int r = list[i];
        int position = rowPositions[r];
        int at = r * stride + retained;
        int raw = i * capacity;
        if (dense && block.maxPosition() <= position) {
          AttentionKernels.scale(rowScores, raw, scale, scores, at, filled);
        } else {
          if (!positionsRead) {
            block.positions(slotPositions, 0);
            positionsRead = true;
          }
          for (int s = 0; s < filled; s++) {
            if (block.isLive(s)) {
              scores[at++] =
                  slotPositions[s] > position
                      ? Float.NEGATIVE_INFINITY
                      : rowScores[raw + s] * scale;
            }
          }
        }
      }
      if (selected != null) {
        // the block's unselected tokens get weight 0: the rows attend over the selection only
        for (int i = selected.nextClearBit(retained); i < retained + live; ) {
          int next = selected.nextSetBit(i);
          int end = next < 0 ? retained + live : Math.min(retained + live, next);
          for (int r = 0; r < rows; r++) {
            Arrays.fill(scores, r * stride + i, r * stride + end, Float.NEGATIVE_INFINITY);
          }
          i = selected.nextClearBit(end);
        }
      }
      retained += live;
    }
    assert parts != null || retained == size : "live counts are inconsistent";
    int end = retained; // the part's tokens are [base, end) of the head's retained order
    if (head.weights().any()) {
      // merged entries (METHODS.md M2): an entry of weight w enters the softmax as z + ln w
      for (int r = 0; r < rows; r++) {
        head.weights().addLogs(scores, r * stride, base, end);
      }
    }
    if (compensated) {
      scoreCompensation(
          head, rows, rowPositions, queries, queryOffsets, scale, scores, stride, size);
    }
    float[] sums = tile.sums;
    int entries = compensated ? size + 1 : size;
    if (parts == null) {
      for (int r = 0; r < rows; r++) {
        int e = entries;
        if (compensated && scores[r * stride + size] == Float.NEGATIVE_INFINITY) {
          // a row before the folded positions: the softmax of its tokens alone, the same bits
          // as without the entry whatever the vector length (a trailing -inf may move the sum's
          // tail into a vector)
          scores[r * stride + size] = 0f;
          e = size;
        }
        sums[r] = AttentionKernels.softmaxWeights(scores, r * stride, e);
      }
    } else {
      for (int r = 0; r < rows; r++) {
        float max = AttentionKernels.max(scores, r * stride + base, end - base);
        if (max == Float.NEGATIVE_INFINITY) {
          Arrays.fill(scores, r * stride + base, r * stride + end, 0f);
          sums[r] = 0f;
        } else {
          sums[r] = AttentionKernels.expAndSum(scores, r * stride + base, end - base, max);
        }
        parts.max[part * PagedLayerKv.TILE_ROWS + r] = max;
      }
    }
    float[] acc = tile.acc;
    Arrays.fill(acc, 0, rows * headDim, 0f);
    tile.probabilities = false;
    tile.codeFormat = null;
    retained = base;
    for (int b = blockFrom; b < blockEnd; b++) {
      KvBlock block = blocks.get(b);
      int live = block.liveCount();
      if (live == 0) {
        continue;
      }
      if (selected != null && !selectsAny(selected, retained, live)) {
        retained += live; // all its weights are 0: adding them would change nothing
        continue;
      }
      int filled = block.filled();
      int split = Math.min(block.split(), filled);
      if (split > 0) {
        accumulatePart(
            tile,
            block,
            rows,
            stride,
            retained,
            block.valueKernels(),
            block.values(),
            0,
            split,
            split);
      }
      if (split < filled) {
        accumulatePart(
            tile,
            block,
            rows,
            stride,
            retained,
            block.residualValueFormat(),
            block.residualValues(),
            split,
            filled,
            block.capacity() - block.split());
      }
      retained += live;
    }
    addCodes(tile, rows);
    if (compensated) {
      float[] v = head.compensation().value();
      for (int r = 0; r < rows; r++) {
        float w = scores[r * stride + size];
        if (w == 0f) {
          continue;
        }
        for (int j = 0; j < headDim; j++) {
          acc[r * headDim + j] += w * v[j];
        }
      }
    }
    boolean probabilities = tile.probabilities;
    if (parts != null) {
      parts.keep(part, rows, headDim, sums, acc, probabilities ? tile.accOfProbabilities : null);
      return;
    }
    for (int r = 0; r < rows; r++) {
      float inverse = sums[r] == 0f ? 0f : 1f / sums[r];
      AttentionKernels.scale(acc, r * headDim, inverse, out, rowOffsets[r], headDim);
      if (probabilities) {
        for (int j = 0; j < headDim; j++) {
          out[rowOffsets[r] + j] += tile.accOfProbabilities[r * headDim + j];
        }
      }
      if (observed != null) {
        int h = g * group + (first + r) % group;
        int slot = ((first + r) / group - c.observedQuery0) * c.heads + h;
        AttentionKernels.scale(scores, r * stride, inverse, observed[slot], 0, size);
      }
    }
  }

  /**
   * The logit of the head's compensation entry for each row, after the retained tokens' ({@code
   * scores[r·stride + size]}): {@code q·k̂ · scale + ln |D|}, so that the softmax counts it as |D|
   * copies of the mean token (METHODS.md M2; RazorAttention eq. 5, {@code [Σ e^z v + |D| e^{q·k̂}
   * v̂] / [Σ e^z + |D| e^{q·k̂}]}); {@code −∞} for a row before the last folded position.
   */
  private void scoreCompensation(
      HeadStore head,
      int rows,
      int[] rowPositions,
      float[] queries,
      int[] queryOffsets,
      float scale,
      float[] scores,
      int stride,
      int size) {
    CompensationEntry entry = head.compensation();
    float[] k = entry.key();
    float lnWeight = (float) Math.log(entry.weight());
    for (int r = 0; r < rows; r++) {
      float z = Float.NEGATIVE_INFINITY;
      if (rowPositions[r] >= entry.position()) {
        float dot = 0f;
        int q = queryOffsets[r];
        for (int j = 0; j < headDim; j++) {
          dot += queries[q + j] * k[j];
        }
        z = dot * scale + lnWeight;
      }
      scores[r * stride + size] = z;
    }
  }

  /** Whether {@code selected} holds an index in {@code [from, from + count)}. */
  private static boolean selectsAny(BitSet selected, int from, int count) {
    int next = selected.nextSetBit(from);
    return next >= 0 && next < from + count;
  }

  /**
   * Tiles of up to this many rows score keys stored before RoPE with the format's fused kernel
   * ({@link KvFormat#scoresAtPositions}, which reads a key's codes once per row); larger tiles (a
   * prefill's) decode and rotate each key once and score it in F32 for all their rows. KVQuant
   * 4-bit on AVX2: the kernel took about a quarter of decoding and rotating a key and scoring it
   * once ({@code KvQuantAttendCpuBench}).
   */
  static final int ROTATED_ROWS = 4;

  static final boolean PREFETCH = !Boolean.getBoolean("kvslim.noprefetch");

  /** Arrays up to this size are touched ahead; larger ones stream well by themselves (F32). */
  private static final long TOUCHED_BYTES = 4096;

  /**
   * Reads one byte of every cache line of a head's small block arrays before the attention reads
   * them: compressed blocks are many small arrays reached through a chain of objects, and a pass
   * that only loads lets the core overlap all of their misses instead of meeting them one block at
   * a time (eleven KIVI-2 caches at depth 384: attention 20% faster, `DecodeStepMain`).
   */
  static int touchBlocks(List<KvBlock> blocks) {
    return touchBlocks(blocks, 0, blocks.size());
  }

  /** {@link #touchBlocks(List)} for the blocks {@code [from, to)}. */
  static int touchBlocks(List<KvBlock> blocks, int from, int to) {
    int sum = 0;
    for (int b = from; b < to; b++) {
      KvBlock block = blocks.get(b);
      sum += touch(block.keys()) + touch(block.values());
      MemorySegment residual = block.residualValues();
      if (residual != null) {
        sum += touch(residual);
      }
    }
    return sum;
  }

  private static int touch(MemorySegment segment) {
    if (segment.byteSize() > TOUCHED_BYTES
        || !(segment.heapBase().orElse(null) instanceof byte[] array)) {
      return 0;
    }
    int sum = 0;
    for (int i = 0; i < array.length; i += 64) {
      sum += array[i];
    }
    return sum;
  }

  /**
   * Adds the rows' code sums, if a format with code sums ({@link KvFormat#codeSumLength}) has been
   * adding to them, into their sums of values: once per row and head, after the blocks.
   */
  private void addCodes(AttentionTile tile, int rows) {
    KvFormat format = tile.codeFormat;
    if (format == null) {
      return;
    }
    for (int r = 0; r < rows; r++) {
      format.addCodes(tile.codeSums, r * tile.codeLength, headDim, tile.acc, r * headDim);
    }
    tile.codeFormat = null;
  }

  /**
   * Adds the values of slots {@code [from, to)} of a block, stored in {@code format} at {@code
   * segment} (slot {@code s} is row {@code s − from}), weighted by the rows' softmax weights, whose
   * first live slot of the block sits at {@code retained} in each row's scores.
   */
  private void accumulatePart(
      AttentionTile tile,
      KvBlock block,
      int rows,
      int stride,
      int retained,
      KvFormat format,
      MemorySegment segment,
      int from,
      int to,
      int capacity) {
    float[] scores = tile.scores;
    float[] sums = tile.sums;
    int filled = block.filled();
    boolean dense = block.liveCount() == filled;
    boolean normalized = format.accumulatesProbabilities();
    if (normalized && !tile.probabilities) {
      Arrays.fill(tile.accOfProbabilities, 0, rows * headDim, 0f);
      tile.probabilities = true;
    }
    // live slots before `from` shift where this part's weights start in the row's scores
    int skipped = 0;
    if (!dense) {
      for (int s = 0; s < from; s++) {
        skipped += block.isLive(s) ? 1 : 0;
      }
    } else {
      skipped = from;
    }
    // the rows that see the block add it together (a format may decode each value once)
    int[] list = tile.rowList;
    if (list.length < rows) {
      tile.rowList = list = new int[rows];
    }
    int k = 0;
    for (int r = 0; r < rows; r++) {
      if (block.minPosition() <= tile.rowPositions[r]) {
        list[k++] = r;
      }
    }
    float[] weights = scores;
    int wOff = retained + skipped;
    int wStride = stride;
    int n = to - from;
    if (normalized || !dense) {
      // each row's weights by slot (0 for dead slots), normalized where the format asks
      if (tile.rowWeights.length < rows * n) {
        tile.rowWeights =
            new float[Math.max(rows, PagedLayerKv.TILE_ROWS) * Math.max(n, block.capacity())];
      }
      weights = tile.rowWeights;
      for (int i = 0; i < k; i++) {
        int r = list[i];
        float inverse = !normalized ? 1f : sums[r] == 0f ? 0f : 1f / sums[r];
        int kk = r * stride + retained + skipped;
        for (int s = from; s < to; s++) {
          float w = dense || block.isLive(s) ? scores[kk++] : 0f;
          weights[r * n + s - from] = normalized ? w * inverse : w;
        }
      }
      wOff = 0;
      wStride = n;
    }
    int codes = normalized ? 0 : format.codeSumLength(headDim);
    if (codes > 0) {
      if (tile.codeFormat != format) {
        addCodes(tile, rows);
        if (tile.codeSums.length < rows * codes) {
          tile.codeSums = new float[Math.max(rows, PagedLayerKv.TILE_ROWS) * codes];
        }
        Arrays.fill(tile.codeSums, 0, rows * codes, 0f);
        tile.codeFormat = format;
        tile.codeLength = codes;
      }
      for (int i = 0; i < k; i++) {
        int r = list[i];
        format.accumulateCodes(
            segment, n, capacity, headDim, weights, wOff + r * wStride, tile.codeSums, r * codes);
      }
      return;
    }
    format.accumulateBlockRows(
        segment,
        n,
        capacity,
        headDim,
        weights,
        wOff,
        wStride,
        list,
        k,
        normalized ? tile.accOfProbabilities : tile.acc,
        headDim,
        tile.work);
  }
}
