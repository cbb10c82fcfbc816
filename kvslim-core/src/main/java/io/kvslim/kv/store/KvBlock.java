package io.kvslim.kv.store;

import io.kvslim.kv.format.KvFormat;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.BitSet;

/**
 * Up to {@link #capacity()} token slots of one (layer, KV head): keys in one format, values in one
 * or two, each token's original position, and which slots are live (DESIGN.md §3.2). Slots {@code
 * [0, filled)} have been written; a dead slot stays in place until its block is compacted or freed.
 *
 * <p>Values: slots {@code [0, split)} are in {@link #valueFormat()}, slots {@code [split,
 * capacity)} in {@link #residualValueFormat()} (KIVI's full-precision value window, METHODS.md Q3:
 * the oldest token of the window is quantized when a new one pushes it out, so the window moves one
 * slot at a time through a block). A block without a residual has {@code split == capacity}.
 *
 * <p>{@link #bytes()} is exact: the key block, the value rows of both parts (codes, scales, zero
 * points), the positions ({@link PositionCodes}: nothing while they are one run of consecutive
 * positions), the live mask (only once a slot has died here) and a {@link #HEADER_BYTES} header.
 * JVM object headers and the references to the formats are not counted.
 */
public final class KvBlock {
  /**
   * Bytes of the block header: first and last position (4 each), capacity, fill count, live count
   * and value split (2 each).
   */
  public static final int HEADER_BYTES = 16;

  private final int capacity;
  private final int headDim;
  private KvFormat keyFormat;
  private MemorySegment keys;
  private KvFormat valueFormat;
  private MemorySegment values; // rows of slots [0, split)
  private final KvFormat residualValueFormat; // null when the block has no value residual
  private MemorySegment residualValues; // rows of slots [split, capacity), or null
  private int split;
  private PositionCodes positions;
  private long[] liveMask; // null while every filled slot is live
  private int filled;
  private int liveCount;
  private int minPosition = Integer.MAX_VALUE;
  private int maxPosition = Integer.MIN_VALUE;
  private ColdStore.Slot spilled; // non-null: keys and values are also in a spill file
  private boolean cold; // keys and values are only in the spill file, not in RAM
  private SpilledRows spilledRows; // with spilled: per-sub-block checksums, or null (whole only)
  private long missing; // while warm: the sub-blocks not fetched (their rows zero), or 0
  // leading rows of keys / values (slots [0, split)) known to hold no infinity or NaN, for formats
  // whose kernels would check (KvFormat#assumingFinite); any change to the bytes resets them
  private int finiteKeyRows;
  private int finiteValueRows;

  /** A block whose values are all in {@code valueFormat}. */
  KvBlock(int capacity, int headDim, KvFormat keyFormat, KvFormat valueFormat) {
    this(capacity, headDim, keyFormat, valueFormat, null);
  }

  /**
   * A block whose values are written in {@code residualValueFormat} (per token) and quantized to
   * {@code valueFormat} later, slot by slot ({@link #quantizeValues}); {@code null} for none.
   */
  KvBlock(
      int capacity,
      int headDim,
      KvFormat keyFormat,
      KvFormat valueFormat,
      KvFormat residualValueFormat) {
    if (residualValueFormat != null
        && (!valueFormat.perToken() || !residualValueFormat.perToken())) {
      throw new IllegalArgumentException(
          "a value residual needs per-token formats, got "
              + valueFormat.name()
              + "/"
              + residualValueFormat.name());
    }
    this.capacity = capacity;
    this.headDim = headDim;
    this.keyFormat = keyFormat;
    this.valueFormat = valueFormat;
    this.residualValueFormat = residualValueFormat;
    this.keys = allocate(keyFormat.blockBytes(capacity, headDim));
    if (residualValueFormat == null) {
      this.split = capacity;
      this.values = allocate(valueFormat.blockBytes(capacity, headDim));
    } else {
      this.split = 0;
      this.values = allocate(0);
      this.residualValues = allocate(residualValueFormat.blockBytes(capacity, headDim));
    }
  }

  private static MemorySegment allocate(long bytes) {
    return MemorySegment.ofArray(new byte[Math.toIntExact(bytes)]);
  }

  /**
   * A full block of consecutive positions from {@code firstPosition} whose keys and values are the
   * given bytes, as {@link #keys()} and {@link #values()} of a settled block in these formats held
   * them (a block read back from a KV tier, {@code io.kvslim.kv.tier}).
   *
   * @throws IllegalArgumentException if a segment's size is not the formats' block size
   */
  static KvBlock restored(
      int capacity,
      int headDim,
      KvFormat keyFormat,
      KvFormat valueFormat,
      int firstPosition,
      MemorySegment keys,
      MemorySegment values) {
    KvBlock b = new KvBlock(capacity, headDim, keyFormat, valueFormat);
    if (keys.byteSize() != b.keys.byteSize() || values.byteSize() != b.values.byteSize()) {
      throw new IllegalArgumentException(
          "a restored block has "
              + keys.byteSize()
              + "/"
              + values.byteSize()
              + " key/value bytes, its formats hold "
              + b.keys.byteSize()
              + "/"
              + b.values.byteSize());
    }
    MemorySegment.copy(keys, 0, b.keys, 0, keys.byteSize());
    MemorySegment.copy(values, 0, b.values, 0, values.byteSize());
    b.positions = PositionCodes.run(firstPosition);
    b.filled = capacity;
    b.liveCount = capacity;
    b.minPosition = firstPosition;
    b.maxPosition = firstPosition + capacity - 1;
    return b;
  }

  /** Exact bytes of an empty block, or of a full one whose positions are one run. */
  public static long bytesFor(int capacity, int headDim, KvFormat keys, KvFormat values) {
    return HEADER_BYTES + keys.blockBytes(capacity, headDim) + values.blockBytes(capacity, headDim);
  }

  /** Exact bytes of an empty block whose values start in a residual format. */
  public static long bytesFor(
      int capacity, int headDim, KvFormat keys, KvFormat values, KvFormat residualValues) {
    return residualValues == null
        ? bytesFor(capacity, headDim, keys, values)
        : HEADER_BYTES
            + keys.blockBytes(capacity, headDim)
            + residualValues.blockBytes(capacity, headDim);
  }

  /** The most bytes positions and a live mask can add to a block of {@code capacity} slots. */
  public static long maxBookkeepingBytes(int capacity) {
    return 4L * capacity + 8L * ((capacity + 63) / 64);
  }

  /**
   * Of {@link #bytes()}: the header, keys and values, that is everything but positions and mask.
   */
  long fixedBytes() {
    return HEADER_BYTES
        + keys.byteSize()
        + values.byteSize()
        + (residualValues == null ? 0 : residualValues.byteSize());
  }

  public long bytes() {
    return fixedBytes() + positionBytes() + (liveMask == null ? 0 : 8L * liveMask.length);
  }

  /** Of {@link #bytes()}: bytes that are scales and zero points. */
  public long scaleBytes() {
    long s = keyFormat.scaleBytes(capacity, headDim) + valueFormat.scaleBytes(split, headDim);
    return residualValueFormat == null
        ? s
        : s + residualValueFormat.scaleBytes(capacity - split, headDim);
  }

  /** Of {@link #bytes()}: the header, the positions and the live mask. */
  public long bookkeepingBytes() {
    return HEADER_BYTES + positionBytes() + (liveMask == null ? 0 : 8L * liveMask.length);
  }

  /** Of {@link #bytes()}: the position codes. */
  public long positionBytes() {
    return positions == null ? 0 : positions.bytes();
  }

  public int capacity() {
    return capacity;
  }

  public int filled() {
    return filled;
  }

  public int liveCount() {
    return liveCount;
  }

  public KvFormat keyFormat() {
    return keyFormat;
  }

  /** Format of the values in slots {@code [0, split())}. */
  public KvFormat valueFormat() {
    return valueFormat;
  }

  /** Format of the values in slots {@code [split(), capacity())}, or null when all are settled. */
  public KvFormat residualValueFormat() {
    return split == capacity ? null : residualValueFormat;
  }

  /** The first slot whose value is in {@link #residualValueFormat()} ({@code capacity} if none). */
  public int split() {
    return split;
  }

  /** A lower bound of the positions in the block: a query before it attends to none of them. */
  public int minPosition() {
    return minPosition;
  }

  /** An upper bound of the positions in the block: a query at or after it sees all of them. */
  public int maxPosition() {
    return maxPosition;
  }

  /**
   * The position of {@code slot} (a search for some encodings; use {@link #positions} in loops).
   */
  public int position(int slot) {
    if (slot < 0 || slot >= filled) {
      throw new IndexOutOfBoundsException("slot " + slot + " of " + filled);
    }
    return positions.position(slot);
  }

  /** Writes the positions of the filled slots into {@code dst[off..off+filled)}. */
  public void positions(int[] dst, int off) {
    if (filled > 0) {
      positions.decode(filled, dst, off);
    }
  }

  public boolean isLive(int slot) {
    return liveMask == null ? slot < filled : (liveMask[slot >>> 6] & (1L << slot)) != 0;
  }

  /** Raw key storage, in {@link #keyFormat()} (read-only use). */
  public MemorySegment keys() {
    requireWarm();
    return keys;
  }

  /** Raw storage of the values of slots {@code [0, split())}, in {@link #valueFormat()}. */
  public MemorySegment values() {
    requireWarm();
    return values;
  }

  private void requireWarm() {
    if (cold) {
      throw new IllegalStateException("a spilled KV block was read without being fetched");
    }
  }

  /** Like {@link #requireWarm}, and every row fetched (not only a step's sub-blocks). */
  private void requireComplete() {
    requireWarm();
    if (missing != 0) {
      throw new IllegalStateException("a partly fetched KV block was read beyond its fetched rows");
    }
  }

  private void requireRow(int slot) {
    requireWarm();
    if (missing != 0 && (missing & (1L << (slot / SpilledRows.SLOTS))) != 0) {
      throw new IllegalStateException(
          "slot " + slot + " of a partly fetched KV block was read without being fetched");
    }
  }

  /**
   * Whether the block is in RAM with only some of its rows fetched ({@link #fetch(ColdStore,
   * BitSet, int)}): the others are zero, and only an attention restricted to the fetched tokens
   * reads it.
   */
  public boolean partial() {
    return !cold && missing != 0;
  }

  /** Whether the block's keys and values are in a spill file only (not in RAM). */
  public boolean cold() {
    return cold;
  }

  /** Whether the block's keys and values have been written to a spill file. */
  boolean spilled() {
    return spilled != null;
  }

  /** Where a cold block's keys and values are, or null when they are in RAM. */
  public ColdStore.Slot coldSlot() {
    return cold ? spilled : null;
  }

  /** Bytes of keys and values a spill holds for this block (0 if it was never spilled). */
  long spilledBytes() {
    return spilled == null ? 0 : spilled.keyBytes() + spilled.valueBytes();
  }

  /**
   * Moves the keys and values out of RAM into {@code file} (written there once; a block spilled
   * before only drops its RAM copy). Only a settled block spills: full, values out of any residual
   * window (it never changes again unless evicted or converted, which a spilled block refuses).
   */
  void spill(ColdStore file) {
    if (cold) {
      return;
    }
    if (!isFull() || residualValues != null) {
      throw new IllegalStateException("only a full block without a value residual spills");
    }
    if (spilled == null) {
      spilled = file.write(keys, values);
      spilledRows = SpilledRows.of(keyFormat, valueFormat, capacity, headDim, keys, values);
    }
    keys = EMPTY;
    values = EMPTY;
    cold = true;
    missing = 0;
    finiteKeyRows = 0;
    finiteValueRows = 0;
  }

  /**
   * Reads the keys and values back from {@code file} into RAM and checks them ({@link
   * ColdStore#read}); the block stays cold if they fail the check.
   *
   * @throws ColdStore.Corrupt if the spilled bytes no longer match their checksum
   */
  void fetch(ColdStore file) {
    fetch(file, null, 0);
  }

  /**
   * Reads the rows of the tokens set in {@code selected} (retained indices, this block's slot
   * {@code s} being {@code retained + s}; null: every row) back into RAM and checks them: only
   * their sub-blocks ({@link SpilledRows}) where the formats are per-token rows, the store reads
   * byte ranges and every slot is live, the whole block otherwise. The rows not read are zero
   * ({@link #partial}) until a later call reads them. A block that fails the check stays as it was.
   * Returns the bytes read from {@code file}.
   *
   * @throws ColdStore.Corrupt if the bytes read no longer match their checksum
   */
  long fetch(ColdStore file, BitSet selected, int retained) {
    if (!cold && missing == 0) {
      return 0;
    }
    finiteKeyRows = 0;
    finiteValueRows = 0;
    SpilledRows rows = spilledRows;
    long want =
        rows == null || !file.readsParts() || liveCount != filled
            ? -1L
            : rows.holding(selected, retained);
    if (want == 0) {
      return 0;
    }
    if (cold && (want == -1L || want == rows.all())) {
      MemorySegment k = allocate(spilled.keyBytes());
      MemorySegment v = allocate(spilled.valueBytes());
      file.read(spilled, k, v);
      keys = k;
      values = v;
      cold = false;
      missing = 0;
      return spilledBytes();
    }
    if (cold) {
      MemorySegment k = allocate(spilled.keyBytes());
      MemorySegment v = allocate(spilled.valueBytes());
      long n = rows.read(file, spilled, want, k, v);
      keys = k;
      values = v;
      cold = false;
      missing = rows.all() & ~want;
      return n;
    }
    long need = (want == -1L ? missing : want & missing);
    if (need == 0) {
      return 0;
    }
    long n = rows.read(file, spilled, need, keys, values);
    missing &= ~need;
    return n;
  }

  /**
   * The byte ranges of the spilled bytes that {@link #fetch(ColdStore, BitSet, int)} of this cold
   * block reads from {@code file} ({@code from, count} pairs; empty: none), or null when it reads
   * the block whole.
   */
  long[] fetchRanges(ColdStore file, BitSet selected, int retained) {
    if (!cold) {
      return new long[0];
    }
    SpilledRows rows = spilledRows;
    if (rows == null || !file.readsParts() || liveCount != filled) {
      return null;
    }
    long want = rows.holding(selected, retained);
    return want == rows.all() ? null : rows.ranges(want, spilled.keyBytes());
  }

  /**
   * The key format's kernels for this block's filled rows: {@link KvFormat#assumingFinite} once its
   * rows were checked free of infinities and NaNs (checked here, once for the rows not checked yet,
   * not at every attention step), else the key format itself. Attention calls may run on several
   * threads at once; the count of checked rows is only a cache (a stale read rechecks).
   */
  public KvFormat keyKernels() {
    KvFormat kernels = kernels(keyFormat, keys, finiteKeyRows, filled);
    if (kernels != keyFormat) {
      finiteKeyRows = filled;
    }
    return kernels;
  }

  /** {@link #keyKernels} for the values of slots {@code [0, split())}. */
  public KvFormat valueKernels() {
    int rows = Math.min(filled, split);
    KvFormat kernels = kernels(valueFormat, values, finiteValueRows, rows);
    if (kernels != valueFormat) {
      finiteValueRows = rows;
    }
    return kernels;
  }

  /**
   * The format's unchecked view if rows {@code [known, rows)} of {@code data} pass, else itself.
   */
  private KvFormat kernels(KvFormat format, MemorySegment data, int known, int rows) {
    KvFormat fast = format.assumingFinite();
    if (fast == format
        || cold
        || (known < rows && !format.finiteRows(data, known, rows, capacity, headDim))) {
      return format;
    }
    return fast;
  }

  /** A change to the keys, values or slots: a spilled copy no longer matches, it is dropped. */
  private void changing() {
    requireComplete();
    finiteKeyRows = 0;
    finiteValueRows = 0;
    spilled = null;
    spilledRows = null;
  }

  private static final MemorySegment EMPTY = MemorySegment.ofArray(new byte[0]);

  /**
   * Raw storage of the values of slots {@code [split(), capacity())}, in {@link
   * #residualValueFormat()}: slot {@code s} is row {@code s − split()}.
   */
  public MemorySegment residualValues() {
    return residualValues;
  }

  boolean isFull() {
    return filled == capacity;
  }

  /** The value format of every slot, or null when the block holds values in two formats. */
  KvFormat uniformValueFormat() {
    if (split == capacity) {
      return valueFormat;
    }
    return split == 0 ? residualValueFormat : null;
  }

  /** Decodes the key of {@code slot}. */
  public void decodeKey(int slot, float[] dst, int dstOff) {
    requireRow(slot);
    keyFormat.decode(keys, slot, capacity, headDim, dst, dstOff);
  }

  /** Decodes the value of {@code slot}, from whichever part holds it. */
  public void decodeValue(int slot, float[] dst, int dstOff) {
    requireRow(slot);
    if (slot < split) {
      valueFormat.decode(values, slot, split, headDim, dst, dstOff);
    } else {
      residualValueFormat.decode(
          residualValues, slot - split, capacity - split, headDim, dst, dstOff);
    }
  }

  /**
   * Appends {@code count} tokens after the filled slots: key rows at {@code kOff + t·stride}, value
   * rows at {@code vOff + t·stride}.
   */
  void append(
      int count, int[] pos, int posOff, float[] k, int kOff, float[] v, int vOff, int stride) {
    changing();
    if (count == 0) {
      return;
    }
    keyFormat.encode(k, kOff, stride, count, keys, filled, capacity, headDim);
    if (split == capacity) {
      valueFormat.encode(v, vOff, stride, count, values, filled, capacity, headDim);
    } else {
      residualValueFormat.encode(
          v, vOff, stride, count, residualValues, filled - split, capacity - split, headDim);
    }
    for (int t = 0; t < count; t++) {
      minPosition = Math.min(minPosition, pos[posOff + t]);
      maxPosition = Math.max(maxPosition, pos[posOff + t]);
    }
    if (filled == 0) {
      positions = PositionCodes.encode(pos, posOff, count);
    } else if (!positions.isSingleRun() || !runContinues(pos, posOff, count)) {
      int[] all = new int[filled + count];
      positions(all, 0);
      System.arraycopy(pos, posOff, all, filled, count);
      positions = PositionCodes.encode(all, 0, filled + count);
    }
    if (liveMask != null) {
      for (int t = 0; t < count; t++) {
        liveMask[(filled + t) >>> 6] |= 1L << (filled + t);
      }
    }
    filled += count;
    liveCount += count;
  }

  private boolean runContinues(int[] pos, int posOff, int count) {
    int next = positions.next(filled);
    for (int t = 0; t < count; t++) {
      if (pos[posOff + t] != next + t) {
        return false;
      }
    }
    return true;
  }

  /**
   * Whether appending consecutive positions from {@code firstPosition} keeps the positions one run
   * (then they cost no bytes: {@link #positionBytesAfter} is 0).
   */
  boolean runContinuesAt(int firstPosition) {
    return filled > 0 && positions.isSingleRun() && positions.next(filled) == firstPosition;
  }

  /** Bytes the positions would take after appending {@code pos[posOff..posOff+count)}. */
  long positionBytesAfter(int[] pos, int posOff, int count) {
    if (filled == 0) {
      return PositionCodes.bytes(pos, posOff, count);
    }
    if (positions.isSingleRun() && runContinues(pos, posOff, count)) {
      return 0;
    }
    int[] all = new int[filled + count];
    positions(all, 0);
    System.arraycopy(pos, posOff, all, filled, count);
    return PositionCodes.bytes(all, 0, filled + count);
  }

  /** Marks a live slot dead; the first death here allocates the live mask. */
  void kill(int slot) {
    changing();
    assert isLive(slot);
    if (liveMask == null) {
      liveMask = new long[(capacity + 63) / 64];
      for (int s = 0; s < filled; s++) {
        liveMask[s >>> 6] |= 1L << s;
      }
    }
    liveMask[slot >>> 6] &= ~(1L << slot);
    liveCount--;
  }

  /** Brings a dead slot back (undoing {@link #kill} when an eviction is refused). */
  void revive(int slot) {
    assert !isLive(slot);
    liveMask[slot >>> 6] |= 1L << slot;
    liveCount++;
    if (liveCount == filled) {
      liveMask = null;
    }
  }

  /** Whether the block carries a live mask. */
  boolean hasMask() {
    return liveMask != null;
  }

  /**
   * Re-encodes the keys of the filled slots in {@code to} (KIVI's key flush: a group of tokens per
   * channel is quantized at once). Dead slots are encoded too, and stay dead.
   *
   * @param scratch at least {@code filled · headDim} floats
   */
  void convertKeys(KvFormat to, float[] scratch) {
    changing();
    for (int s = 0; s < filled; s++) {
      decodeKey(s, scratch, s * headDim);
    }
    MemorySegment converted = allocate(to.blockBytes(capacity, headDim));
    to.encode(scratch, 0, headDim, filled, converted, 0, capacity, headDim);
    keys = converted;
    keyFormat = to;
  }

  /**
   * Re-encodes the values of the filled slots in the token-group format {@code to} (GEAR's flush,
   * with {@link #convertKeys}); only for a block without a value residual. Dead slots are encoded
   * too, and stay dead.
   *
   * @param scratch at least {@code filled · headDim} floats
   */
  void convertValues(KvFormat to, float[] scratch) {
    changing();
    if (split != capacity) {
      throw new IllegalStateException("a block with a value residual cannot convert its values");
    }
    for (int s = 0; s < filled; s++) {
      decodeValue(s, scratch, s * headDim);
    }
    MemorySegment converted = allocate(to.blockBytes(capacity, headDim));
    to.encode(scratch, 0, headDim, filled, converted, 0, capacity, headDim);
    values = converted;
    valueFormat = to;
  }

  /**
   * Frees the keys of every slot: the block keeps its values, positions and header, and its key
   * format becomes {@link io.kvslim.kv.format.DroppedKeys} (POD, METHODS.md S4: another layer's
   * keys stand in for them).
   */
  void dropKeys() {
    changing();
    keys = allocate(0);
    keyFormat = io.kvslim.kv.format.DroppedKeys.INSTANCE;
  }

  /**
   * Moves the values of slots {@code [split, upTo)} from the residual into {@link #valueFormat()}
   * (KIVI's value flush, one token at a time). Both value parts are reallocated to their new sizes.
   *
   * @param scratch at least {@code (upTo − split) · headDim} floats
   */
  void quantizeValues(int upTo, float[] scratch) {
    changing();
    if (upTo <= split) {
      return;
    }
    if (upTo > filled) {
      throw new IllegalStateException("slot " + upTo + " has not been written (" + filled + ")");
    }
    int moved = upTo - split;
    for (int t = 0; t < moved; t++) {
      decodeValue(split + t, scratch, t * headDim);
    }
    MemorySegment settled = allocate(valueFormat.blockBytes(upTo, headDim));
    MemorySegment.copy(values, 0, settled, 0, values.byteSize());
    valueFormat.encode(scratch, 0, headDim, moved, settled, split, upTo, headDim);
    MemorySegment residual = null;
    if (upTo < capacity) {
      long row = residualValueFormat.blockBytes(1, headDim);
      residual = allocate(residualValueFormat.blockBytes(capacity - upTo, headDim));
      MemorySegment.copy(residualValues, moved * row, residual, 0, residual.byteSize());
    }
    values = settled;
    residualValues = residual;
    split = upTo;
  }

  /**
   * Overwrites the key and value of filled slot {@code slot} with {@code k[kOff..+headDim)} and
   * {@code v[vOff..+headDim)} (a merged entry, METHODS.md M7), in the slot's formats: a per-token
   * format encodes the one row; a token-group format (KIVI keys) re-encodes the block's filled rows
   * with the one replaced. Sizes do not change.
   *
   * @param scratch at least {@code filled · headDim} floats
   */
  void rewriteRow(int slot, float[] k, int kOff, float[] v, int vOff, float[] scratch) {
    changing();
    if (slot < 0 || slot >= filled) {
      throw new IndexOutOfBoundsException("slot " + slot + " of " + filled + " filled");
    }
    if (keyFormat.perToken()) {
      keyFormat.encode(k, kOff, headDim, 1, keys, slot, capacity, headDim);
    } else {
      for (int s = 0; s < filled; s++) {
        decodeKey(s, scratch, s * headDim);
      }
      System.arraycopy(k, kOff, scratch, slot * headDim, headDim);
      keyFormat.encode(scratch, 0, headDim, filled, keys, 0, capacity, headDim);
    }
    if (slot < split) {
      rewriteValue(valueFormat, values, slot, split, Math.min(split, filled), v, vOff, scratch);
    } else {
      rewriteValue(
          residualValueFormat,
          residualValues,
          slot - split,
          capacity - split,
          filled - split,
          v,
          vOff,
          scratch);
    }
  }

  private void rewriteValue(
      KvFormat f,
      MemorySegment part,
      int row,
      int rows,
      int used,
      float[] v,
      int vOff,
      float[] scratch) {
    if (f.perToken()) {
      f.encode(v, vOff, headDim, 1, part, row, rows, headDim);
      return;
    }
    for (int s = 0; s < used; s++) {
      f.decode(part, s, rows, headDim, scratch, s * headDim);
    }
    System.arraycopy(v, vOff, scratch, row * headDim, headDim);
    f.encode(scratch, 0, headDim, used, part, 0, rows, headDim);
  }

  /**
   * Moves a live row from {@code from} into slot {@code slot}; both blocks hold every value in the
   * same per-token format ({@link #uniformValueFormat()}). Positions are set by {@link
   * #resetToDense}.
   */
  void moveRowFrom(KvBlock from, int fromSlot, int slot) {
    changing();
    from.requireComplete();
    keyFormat.copyRow(from.keys, fromSlot, keys, slot, capacity, headDim);
    KvFormat vf = uniformValueFormat();
    vf.copyRow(from.uniformValues(), fromSlot, uniformValues(), slot, capacity, headDim);
  }

  private MemorySegment uniformValues() {
    return split == capacity ? values : residualValues;
  }

  /**
   * A copy of slots {@code [0, count)} in a block of exactly {@code count} slots (uniform only).
   */
  KvBlock trimmed(int count, int[] pos, int posOff) {
    requireComplete();
    KvFormat vf = uniformValueFormat();
    KvBlock t = new KvBlock(count, headDim, keyFormat, valueFormat, split == capacity ? null : vf);
    long keyRow = keyFormat.blockBytes(1, headDim);
    long valueRow = vf.blockBytes(1, headDim);
    MemorySegment.copy(keys, 0, t.keys, 0, count * keyRow);
    MemorySegment.copy(uniformValues(), 0, t.uniformValues(), 0, count * valueRow);
    t.resetToDense(count, pos, posOff);
    return t;
  }

  /**
   * After a repack: slots {@code [0, count)} are live and hold the tokens at {@code
   * pos[posOff..posOff+count)}; the rest are unused.
   */
  void resetToDense(int count, int[] pos, int posOff) {
    changing();
    liveMask = null;
    filled = count;
    liveCount = count;
    minPosition = Integer.MAX_VALUE;
    maxPosition = Integer.MIN_VALUE;
    for (int s = 0; s < count; s++) {
      minPosition = Math.min(minPosition, pos[posOff + s]);
      maxPosition = Math.max(maxPosition, pos[posOff + s]);
    }
    positions = count == 0 ? null : PositionCodes.encode(pos, posOff, count);
  }

  @Override
  public String toString() {
    return "KvBlock["
        + filled
        + "/"
        + capacity
        + " "
        + keyFormat.name()
        + "/"
        + valueFormat.name()
        + (residualValueFormat() == null ? "" : "+" + residualValueFormat.name() + "@" + split)
        + ", live "
        + liveCount
        + ", positions "
        + Arrays.toString(positionArray())
        + "]";
  }

  private int[] positionArray() {
    int[] p = new int[filled];
    positions(p, 0);
    return p;
  }
}
