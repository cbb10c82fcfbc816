package io.kvslim.kv.cache;

import io.kvslim.kv.Rotary;
import io.kvslim.kv.format.F32Format;
import io.kvslim.kv.store.KvBlock;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * The rotary angles of cache indices 0, 1, 2, … for layers with cache-relative positions
 * (StreamingLLM's rolling positions, METHODS.md E1): such a layer stores keys before RoPE and, when
 * it attends, rotates each retained key by its index in its head's cache and each query by the
 * index of its own token. Angles are computed once per index, by the model's own {@link Rotary} (so
 * a rotation at index i is bit for bit the model's at position i), and only for indices that are
 * used: the table covers exactly {@code [0, largest head size)}.
 *
 * <p>Grown by the attention call before its tiles run; read by the tiles' threads.
 */
final class CacheRelativeRope {
  private Rotary rope;
  private int half;
  private int count; // angles computed for indices [0, count)
  private float[] cos = new float[0];
  private float[] sin = new float[0];
  private boolean original; // rotate at tokens' own positions (keys stored before RoPE, KVQuant)

  /**
   * Makes the table cover positions {@code [0, n)} and sets the index a key and a query are rotated
   * by: their cache index ({@code original} false, rolling positions) or their own position (keys
   * stored before RoPE at their original positions, KVQuant: METHODS.md M6).
   */
  void ensure(Rotary rope, int n, boolean original) {
    this.original = original;
    ensure(rope, n);
  }

  /** Makes the table cover indices {@code [0, n)} of {@code rope}. */
  void ensure(Rotary rope, int n) {
    if (rope != this.rope) {
      this.rope = rope;
      this.half = rope.dims() / 2;
      this.count = 0;
    }
    if (n <= count) {
      return;
    }
    if (cos.length < n * half) {
      int capacity = Math.max(n, 2 * (cos.length / Math.max(1, half))) * half;
      cos = Arrays.copyOf(cos, capacity);
      sin = Arrays.copyOf(sin, capacity);
    }
    for (int i = count; i < n; i++) {
      rope.angles(i, cos, sin, i * half);
    }
    count = n;
  }

  /**
   * Whether keys of {@code headDim} channels at their own positions can be scored rotated by a
   * format's kernel ({@link io.kvslim.kv.format.KvFormat#scoresAtPositions}) from this table: keys
   * are rotated at their own positions, the rotary says how its channels pair ({@link
   * Rotary#pairOffset}) and rotates the whole head.
   */
  boolean scoresAtPositions(int headDim) {
    return original && rope.pairOffset() > 0 && rope.dims() == headDim;
  }

  /** How the rotary's channels pair ({@link Rotary#pairOffset}). */
  int pairOffset() {
    return rope.pairOffset();
  }

  /** The cosines: position p's pair i at {@code p·dims/2 + i}, for positions below the count. */
  float[] cos() {
    return cos;
  }

  float[] sin() {
    return sin;
  }

  /**
   * The queries of a tile's rows, each rotated by the cache index of its own token, into {@link
   * AttentionTile#rolledQueries} (row r at {@code r·headDim}, offsets in {@code rolledOffsets}).
   * Row r is query {@code (first + r) / group}; query i's token has index {@code firstNew + i} (the
   * call's tokens are the head's last).
   */
  float[] queries(
      AttentionTile tile,
      float[] queries,
      int headDim,
      int firstNew,
      int group,
      int first,
      int rows) {
    if (tile.rolledQueries.length < PagedLayerKv.TILE_ROWS * headDim) {
      tile.rolledQueries = new float[PagedLayerKv.TILE_ROWS * headDim];
    }
    float[] rolled = tile.rolledQueries;
    for (int r = 0; r < rows; r++) {
      System.arraycopy(queries, tile.rowOffsets[r], rolled, r * headDim, headDim);
      rotate(
          rolled,
          r * headDim,
          headDim,
          original ? tile.rowPositions[r] : firstNew + (first + r) / group);
      tile.rolledOffsets[r] = r * headDim;
    }
    return rolled;
  }

  /**
   * A block's keys decoded, each live one rotated by its cache index (the block's first live token
   * has index {@code retained}), as an F32 block in {@link AttentionTile#rolledKeySegment}. Dead
   * slots hold stale rows, which are scored and dropped.
   */
  MemorySegment keys(AttentionTile tile, KvBlock block, int retained, int headDim) {
    int capacity = block.capacity();
    if (tile.rolledKeys.length < capacity * headDim) {
      tile.rolledKeys = new float[capacity * headDim];
      tile.rolledKeySegment = MemorySegment.ofArray(new byte[4 * capacity * headDim]);
    }
    float[] rolled = tile.rolledKeys;
    int filled = block.filled();
    for (int s = 0, index = retained; s < filled; s++) {
      if (block.isLive(s)) {
        block.decodeKey(s, rolled, s * headDim);
        rotate(rolled, s * headDim, headDim, original ? block.position(s) : index);
        index++;
      }
    }
    MemorySegment.copy(rolled, 0, tile.rolledKeySegment, F32Format.FLOAT_LE, 0, filled * headDim);
    return tile.rolledKeySegment;
  }

  /** Rotates the live rows of a block's keys, decoded in {@code keys} by slot, by cache index. */
  void rotateLive(KvBlock block, int retained, float[] keys, int headDim) {
    for (int s = 0, index = retained, filled = block.filled(); s < filled; s++) {
      if (block.isLive(s)) {
        rotate(keys, s * headDim, headDim, original ? block.position(s) : index);
        index++;
      }
    }
  }

  /** Rotates one head vector {@code x[off..off+headDim)} to cache index {@code index}. */
  void rotate(float[] x, int off, int headDim, int index) {
    if (index < 0 || index >= count) {
      throw new IllegalStateException(
          "cache index " + index + " is outside the rotary table [0, " + count + ")");
    }
    rope.rotate(x, off, 1, headDim, cos, sin, index * half);
  }
}
