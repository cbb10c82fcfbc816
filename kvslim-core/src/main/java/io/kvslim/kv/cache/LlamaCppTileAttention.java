package io.kvslim.kv.cache;

import io.kvslim.kv.AttentionOrder;
import io.kvslim.kv.attention.AttentionKernels;
import io.kvslim.kv.format.KvFormat;
import io.kvslim.kv.format.KvFormats;
import io.kvslim.kv.store.HeadStore;
import io.kvslim.kv.store.KvBlock;
import io.kvslim.kv.store.LayerStore;
import io.kvslim.tensor.LlamaCppMath;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.List;

/**
 * {@link PagedLayerKv}'s attention in {@link AttentionOrder#LLAMA_CPP} over one tile of rows of a
 * KV head whose blocks are all F32, or all F16: llama.cpp's scores, {@code soft_max} and lane sums
 * (without flash attention), to reproduce its output bit for bit. With F16 keys and values its
 * matrix products convert their F32 operand to F16 first ({@code vec_dot_type}): the query before
 * the scores, the probabilities before the values; the sums are those of F32 (F16 products are
 * exact in F32) (see {@link PagedLayerKv#attend(int, int[], int, float[], float, float[],
 * io.kvslim.kv.AttentionObserver, io.kvslim.tensor.Parallel, AttentionOrder)}). One per layer; the
 * tile is the calling thread's.
 */
final class LlamaCppTileAttention {
  private final LayerStore store;
  private final int headDim;

  LlamaCppTileAttention(LayerStore store) {
    this.store = store;
    this.headDim = store.headDim();
  }

  private static final ValueLayout.OfFloat FLOAT_LE =
      ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

  /** Whether every block of {@code head} holds F32 keys and values, or every block F16 ones. */
  static boolean handles(HeadStore head) {
    if (head.hasCompensation() || head.weights().any()) {
      return false; // weighted entries: PagedLayerKv's own order adds ln w to their logits
    }
    KvFormat first = head.blocks().isEmpty() ? KvFormats.F32 : head.blocks().get(0).keyFormat();
    if (first != KvFormats.F32 && first != KvFormats.F16) {
      return false;
    }
    for (KvBlock block : head.blocks()) {
      if (block.keyFormat() != first
          || block.valueFormat() != first
          || block.residualValueFormat() != null) {
        return false;
      }
    }
    return true;
  }

  /** The {@code filled} rows of a block's keys (or values) as floats into {@code dst}. */
  private void readRows(KvBlock block, boolean keys, int filled, float[] dst) {
    if (block.keyFormat() == KvFormats.F32) {
      MemorySegment.copy(
          keys ? block.keys() : block.values(), FLOAT_LE, 0, dst, 0, filled * headDim);
    } else {
      for (int s = 0; s < filled; s++) {
        if (keys) {
          block.decodeKey(s, dst, s * headDim);
        } else {
          block.decodeValue(s, dst, s * headDim);
        }
      }
    }
  }

  /**
   * llamafile's tinyBLAS dot product (AVX-512, 16 lanes): lane {@code l} accumulates {@code x[16c +
   * l]·y[16c + l]} by fused multiply-add over the chunks {@code c}, then {@link
   * LlamaCppMath#sum16}. llama.cpp's F16 {@code KQ} runs it: the query, converted to F16, is
   * contiguous (an F32 query is a permuted view, which tinyBLAS does not take).
   */
  private float tinyBlasDot(float[] x, int xOff, float[] y, int yOff, float[] lanes) {
    Arrays.fill(lanes, 0, 16, 0f);
    for (int c = 0; c < headDim; c += 16) {
      for (int l = 0; l < 16; l++) {
        lanes[l] = Math.fma(x[xOff + c + l], y[yOff + c + l], lanes[l]);
      }
    }
    return LlamaCppMath.sum16(lanes, 0);
  }

  /** {@code x} rounded to F16 where the cache is F16 ({@code half}), as llama.cpp converts it. */
  private static float operand(float x, boolean half) {
    return half ? Float.float16ToFloat(Float.floatToFloat16(x)) : x;
  }

  /**
   * {@link AttentionOrder#LLAMA_CPP}'s arithmetic for rows {@code [first, last)} of KV head {@code
   * g}.
   */
  void attendTile(AttentionTile tile, int g, int first, int last, PagedLayerKv.Call c) {
    HeadStore head = store.head(g);
    List<KvBlock> blocks = head.blocks();
    int size = head.size();
    int rows = last - first;
    int blockCapacity = store.format().blockTokens();
    for (KvBlock block : blocks) {
      blockCapacity = Math.max(blockCapacity, block.capacity());
    }
    // tinyBLAS: 16 partial sums over all tokens; vec_dot: 64 over the tokens before the last
    // multiple of 64 of the length llama.cpp pads the cache to (32), then one by one
    int laneCount = c.queries1 ? 64 : 16;
    int laneEnd = c.queries1 ? ((size + 31) & ~31) & ~63 : size;
    tile.ensure(rows, size, headDim, blockCapacity);
    tile.ensureLlamaCpp(rows, laneCount, headDim, blockCapacity);
    tile.setUpRows(g, first, last, c, headDim);
    int[] rowPositions = tile.rowPositions;
    int[] rowOffsets = tile.rowOffsets;
    float[] scores = tile.scores;
    int stride = tile.stride;
    float[] keys = tile.blockRows;
    float[] queries = c.queries;
    int[] queryOffsets = rowOffsets;
    if (c.relative != null) {
      queries = c.relative.queries(tile, c.queries, headDim, size - c.n, c.group, first, rows);
      queryOffsets = tile.rolledOffsets;
    }
    boolean half = !blocks.isEmpty() && blocks.get(0).keyFormat() == KvFormats.F16;
    if (half) {
      float[] rounded = tile.halfQueries(rows * headDim);
      for (int r = 0; r < rows; r++) {
        for (int d = 0; d < headDim; d++) {
          rounded[r * headDim + d] = operand(queries[queryOffsets[r] + d], true);
        }
        tile.halfOffsets[r] = r * headDim;
      }
      queries = rounded;
      queryOffsets = tile.halfOffsets;
    }
    int retained = 0;
    for (KvBlock block : blocks) {
      int live = block.liveCount();
      int filled = block.filled();
      if (live == 0) {
        continue;
      }
      readRows(block, true, filled, keys);
      if (c.relative != null) {
        c.relative.rotateLive(block, retained, keys, headDim);
      }
      for (int r = 0; r < rows; r++) {
        int position = rowPositions[r];
        int at = r * stride + retained;
        for (int s = 0; s < filled; s++) {
          if (block.isLive(s)) {
            scores[at++] =
                block.position(s) > position
                    ? Float.NEGATIVE_INFINITY
                    : (half && !c.queries1
                            ? tinyBlasDot(
                                queries, queryOffsets[r], keys, s * headDim, tile.dotLanes)
                            : LlamaCppMath.dot(
                                queries,
                                queryOffsets[r],
                                keys,
                                s * headDim,
                                headDim,
                                tile.dotLanes))
                        * c.scale;
          }
        }
      }
      retained += live;
    }
    for (int r = 0; r < rows; r++) {
      softmax(scores, r * stride, size, tile.dotLanes);
    }
    float[] values = tile.blockRows;
    float[] lanes = tile.lanes;
    int laneRow = laneCount * headDim;
    Arrays.fill(lanes, 0, rows * laneRow, 0f);
    retained = 0;
    for (KvBlock block : blocks) {
      int live = block.liveCount();
      int filled = block.filled();
      if (live == 0) {
        continue;
      }
      int blockFirst = retained;
      retained += live;
      if (blockFirst >= laneEnd) {
        continue;
      }
      readRows(block, false, filled, values);
      for (int r = 0; r < rows; r++) {
        int k = blockFirst;
        for (int s = 0; s < filled && k < laneEnd; s++) {
          if (!block.isLive(s)) {
            continue;
          }
          float p = operand(scores[r * stride + k], half);
          if (p != 0f) { // fma(0, v, sum) = sum
            int lane = k % laneCount;
            AttentionKernels.addWeighted(
                p, values, s * headDim, lanes, r * laneRow + lane * headDim, headDim);
          }
          k++;
        }
      }
    }
    float[] out = c.out;
    for (int r = 0; r < rows; r++) {
      int base = r * laneRow;
      if (laneCount == 64) {
        for (int d = 0; d < headDim; d++) {
          for (int l = 0; l < 16; l++) {
            int at = base + l * headDim + d;
            lanes[at] =
                (lanes[at] + lanes[at + 32 * headDim])
                    + (lanes[at + 16 * headDim] + lanes[at + 48 * headDim]);
          }
        }
      }
      for (int d = 0; d < headDim; d++) {
        out[rowOffsets[r] + d] = LlamaCppMath.sum16(lanes, base + d, headDim);
      }
    }
    if (laneEnd < size) {
      addRemaining(tile, blocks, rows, laneEnd, c, half);
    }
    if (c.observed != null) {
      for (int r = 0; r < rows; r++) {
        int h = g * c.group + (first + r) % c.group;
        int slot = ((first + r) / c.group - c.observedQuery0) * c.heads + h;
        System.arraycopy(scores, r * stride, c.observed[slot], 0, size);
      }
    }
  }

  /**
   * The tokens from retained index {@code from} on, added one at a time to the output ({@code
   * ggml_vec_dot_f32}'s leftovers: product rounded, then sum).
   */
  private void addRemaining(
      AttentionTile tile,
      List<KvBlock> blocks,
      int rows,
      int from,
      PagedLayerKv.Call c,
      boolean half) {
    float[] values = tile.blockRows;
    float[] scores = tile.scores;
    int retained = 0;
    for (KvBlock block : blocks) {
      int live = block.liveCount();
      int filled = block.filled();
      int blockFirst = retained;
      retained += live;
      if (live == 0 || retained <= from) {
        continue;
      }
      readRows(block, false, filled, values);
      for (int r = 0; r < rows; r++) {
        int o = tile.rowOffsets[r];
        int k = blockFirst;
        for (int s = 0; s < filled; s++) {
          if (!block.isLive(s)) {
            continue;
          }
          if (k >= from) {
            float p = operand(scores[r * tile.stride + k], half);
            for (int d = 0; d < headDim; d++) {
              c.out[o + d] += p * values[s * headDim + d];
            }
          }
          k++;
        }
      }
    }
  }

  /**
   * Replaces the scores {@code x[off..+n)} by their probabilities as ggml's {@code soft_max}
   * computes them (see {@link AttentionOrder#LLAMA_CPP}); all 0 when no token is visible.
   */
  private static void softmax(float[] x, int off, int n, float[] group) {
    float max = AttentionKernels.max(x, off, n);
    if (max == Float.NEGATIVE_INFINITY) {
      Arrays.fill(x, off, off + n, 0f);
      return;
    }
    double sum = 0;
    for (int k0 = 0; k0 < n; k0 += 16) {
      for (int l = 0; l < 16; l++) {
        int k = k0 + l;
        float e = k < n ? LlamaCppMath.exp(x[off + k] - max) : 0f;
        group[l] = e;
        if (k < n) {
          x[off + k] = e;
        }
      }
      sum += LlamaCppMath.sum16(group, 0);
    }
    float inverse = (float) (1.0 / sum);
    for (int k = 0; k < n; k++) {
      x[off + k] *= inverse;
    }
  }
}
