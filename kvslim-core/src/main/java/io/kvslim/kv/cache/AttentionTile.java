package io.kvslim.kv.cache;

import io.kvslim.kv.format.KvFormat;
import java.lang.foreign.MemorySegment;

/**
 * One thread's buffers for a tile of rows of {@link PagedLayerKv}'s attention (up to {@link
 * PagedLayerKv#TILE_ROWS} query rows that read the same KV head), grown on demand and reused by
 * {@link OwnTileAttention} and {@link LlamaCppTileAttention}: nothing is allocated per token.
 */
final class AttentionTile {
  int touched; // sum of prefetching reads, kept so that they are not dropped
  float[] scores = new float[0]; // rows × stride, retained order
  int stride;
  float[] prepared = new float[0]; // rows × preparedStride
  int preparedStride;
  float[] slots = new float[0]; // one block's raw scores, or its weights by slot
  float[] acc = new float[0]; // rows × headDim
  float[] accOfProbabilities = new float[0]; // rows × headDim, blocks that take probabilities
  float[] codeSums = new float[0]; // rows × codeLength: the value sums in codeFormat's coordinates
  KvFormat codeFormat; // the format whose code sums codeSums holds, or null
  int codeLength;
  float[] sums = new float[PagedLayerKv.TILE_ROWS];
  float[] work = new float[0];
  int[] rowList = new int[0];
  float[] rowScores = new float[0]; // one block's raw scores of each row that sees it
  float[] rowWeights = new float[0]; // one block part's weights by slot, row r at r × slots
  int[] rowOffsets = new int[PagedLayerKv.TILE_ROWS];
  int[] rowPositions = new int[PagedLayerKv.TILE_ROWS];
  float[] blockRows = new float[0]; // llama.cpp order: one block's keys or values as floats
  float[] lanes = new float[0]; // llama.cpp order: rows × lanes × headDim partial sums
  final float[] dotLanes = new float[64];

  void ensureLlamaCpp(int rows, int lanes, int headDim, int blockCapacity) {
    if (blockRows.length < blockCapacity * headDim) {
      blockRows = new float[blockCapacity * headDim];
    }
    if (this.lanes.length < rows * lanes * headDim) {
      this.lanes = new float[Math.max(PagedLayerKv.TILE_ROWS * 16, rows * 64) * headDim];
    }
  }

  // llama.cpp's flash attention over q8_0/q4_0 blocks (LlamaCppFlashAttention)
  float[] flashQueryCodes = new float[0];
  float[] flashQueryScales = new float[0];
  final float[] flashKeyCodes = new float[32];
  final float[] flashLanes = new float[8];
  float[] flashValue = new float[0];
  float[] flashAcc = new float[0];
  final MemorySegment flashQueryBlock =
      MemorySegment.ofArray(new byte[io.kvslim.ggml.Q8_0Codec.BYTES]);
  private int[] flashPositions = new int[0];

  void ensureFlash(int headDim) {
    if (flashAcc.length < headDim) {
      flashQueryCodes = new float[headDim];
      flashQueryScales = new float[headDim / 32];
      flashValue = new float[headDim];
      flashAcc = new float[headDim];
    }
  }

  int[] flashPositions(int filled) {
    if (flashPositions.length < filled) {
      flashPositions = new int[filled];
    }
    return flashPositions;
  }

  // llama.cpp order over F16 blocks: the rows' queries rounded to F16
  private float[] halfQueries = new float[0];
  final int[] halfOffsets = new int[PagedLayerKv.TILE_ROWS];

  float[] halfQueries(int length) {
    if (halfQueries.length < length) {
      halfQueries = new float[length];
    }
    return halfQueries;
  }

  int[] slotPositions = new int[0]; // one block's positions, read when a row needs the mask
  // cache-relative positions: the rows' queries and one block's keys, rotated by cache index
  float[] rolledQueries = new float[0];
  final int[] rolledOffsets = new int[PagedLayerKv.TILE_ROWS];
  float[] rolledKeys = new float[0];
  MemorySegment rolledKeySegment = MemorySegment.NULL;
  boolean probabilities; // whether some block of the tile added normalized probabilities

  void ensure(int rows, int size, int headDim, int blockCapacity) {
    if (stride < size) {
      stride = Math.max(size, stride + stride / 2 + 64); // grows geometrically with the cache
      scores = new float[PagedLayerKv.TILE_ROWS * stride];
    }
    if (acc.length < rows * headDim) {
      acc = new float[PagedLayerKv.TILE_ROWS * headDim];
      accOfProbabilities = new float[PagedLayerKv.TILE_ROWS * headDim];
      work = new float[KvFormat.workLength(headDim)];
    }
    if (slots.length < blockCapacity) {
      slots = new float[blockCapacity];
    }
    if (slotPositions.length < blockCapacity) {
      slotPositions = new int[blockCapacity];
    }
  }

  void ensurePrepared(int rows, int length) {
    preparedStride = length;
    if (prepared.length < rows * length) {
      prepared = new float[PagedLayerKv.TILE_ROWS * length];
    }
  }

  /** Query offset and position of each row of the tile. */
  void setUpRows(int g, int first, int last, PagedLayerKv.Call c, int headDim) {
    for (int r = 0; r < last - first; r++) {
      int query = (first + r) / c.group;
      int h = g * c.group + (first + r) % c.group;
      rowOffsets[r] = (query * c.heads + h) * headDim;
      rowPositions[r] = c.positions[query];
    }
  }
}
