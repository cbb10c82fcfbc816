package io.kvslim.kv.store;

/**
 * The original positions of a block's token slots, in the cheapest of a few exact encodings
 * (METHODS.md M1, M6). A block that was filled in order and never evicted from holds one run of
 * consecutive positions, which its first position (in the block header) already describes: that
 * costs no bytes here. Where eviction left gaps, the cheapest of these is kept, byte for byte:
 *
 * <ul>
 *   <li>{@link Kind#RUNS}: for each run of consecutive positions after the first, its first slot
 *       and its offset from the first position, two unsigned 16-bit numbers: 4 bytes per extra run;
 *   <li>{@link Kind#BITMAP}: one bit per position from the first to the last, set where a slot
 *       holds it: ⌈span/8⌉ bytes;
 *   <li>{@link Kind#OFFSETS}: each slot's offset from the smallest position, unsigned 16-bit: 2
 *       bytes per slot;
 *   <li>{@link Kind#ABSOLUTE}: each slot's position as a 32-bit integer: 4 bytes per slot.
 * </ul>
 *
 * RUNS and BITMAP need strictly increasing positions (the order tokens are appended in), RUNS,
 * BITMAP and OFFSETS a span below 2^16. The slot count is the block's. Immutable; a block builds
 * new codes when its slots change, except that a single run stays valid while the next position is
 * appended.
 */
final class PositionCodes {
  enum Kind {
    RUNS,
    BITMAP,
    OFFSETS,
    ABSOLUTE
  }

  private static final int MAX_OFFSET = 0xffff;

  private static final byte[] NONE = new byte[0];

  private final Kind kind;
  private final int base; // the first position (RUNS, BITMAP) or the smallest (OFFSETS)
  private final byte[] data;

  private PositionCodes(Kind kind, int base, byte[] data) {
    this.kind = kind;
    this.base = base;
    this.data = data;
  }

  /** One run of consecutive positions from {@code first}, however many slots follow. */
  static PositionCodes run(int first) {
    return new PositionCodes(Kind.RUNS, first, NONE);
  }

  Kind kind() {
    return kind;
  }

  /** True for one run of consecutive positions: appending the next position keeps the codes. */
  boolean isSingleRun() {
    return kind == Kind.RUNS && data.length == 0;
  }

  /** The position a single run continues with after {@code count} slots. */
  int next(int count) {
    return base + count;
  }

  /** Bytes held beyond the block header. */
  int bytes() {
    return data.length;
  }

  /**
   * Bytes the cheapest encoding of {@code pos[off..off+count)} takes (what {@link #encode} holds).
   */
  static int bytes(int[] pos, int off, int count) {
    return choose(pos, off, count).bytes;
  }

  /** The cheapest encoding of {@code pos[off..off+count)}. */
  static PositionCodes encode(int[] pos, int off, int count) {
    Choice c = choose(pos, off, count);
    if (count == 0) {
      return run(0);
    }
    int first = pos[off];
    byte[] data = new byte[c.bytes];
    switch (c.kind) {
      case RUNS -> {
        int at = 0;
        for (int s = 1; s < count; s++) {
          if (pos[off + s] != pos[off + s - 1] + 1) {
            putShort(data, at, s);
            putShort(data, at + 2, pos[off + s] - first);
            at += 4;
          }
        }
        return new PositionCodes(Kind.RUNS, first, data);
      }
      case BITMAP -> {
        for (int s = 0; s < count; s++) {
          int bit = pos[off + s] - first;
          data[bit >>> 3] |= (byte) (1 << (bit & 7));
        }
        return new PositionCodes(Kind.BITMAP, first, data);
      }
      case OFFSETS -> {
        for (int s = 0; s < count; s++) {
          putShort(data, 2 * s, pos[off + s] - c.min);
        }
        return new PositionCodes(Kind.OFFSETS, c.min, data);
      }
      default -> {
        for (int s = 0; s < count; s++) {
          int p = pos[off + s];
          data[4 * s] = (byte) p;
          data[4 * s + 1] = (byte) (p >>> 8);
          data[4 * s + 2] = (byte) (p >>> 16);
          data[4 * s + 3] = (byte) (p >>> 24);
        }
        return new PositionCodes(Kind.ABSOLUTE, 0, data);
      }
    }
  }

  private record Choice(Kind kind, int bytes, int min) {}

  private static Choice choose(int[] pos, int off, int count) {
    if (count == 0) {
      return new Choice(Kind.RUNS, 0, 0);
    }
    int min = pos[off];
    int max = pos[off];
    int runs = 1;
    boolean increasing = true;
    for (int s = 1; s < count; s++) {
      int p = pos[off + s];
      int prev = pos[off + s - 1];
      increasing &= p > prev;
      if (p != prev + 1) {
        runs++;
      }
      min = Math.min(min, p);
      max = Math.max(max, p);
    }
    long span = (long) max - min + 1;
    Kind best = Kind.ABSOLUTE;
    long bestBytes = 4L * count;
    if (span - 1 <= MAX_OFFSET && count <= MAX_OFFSET) {
      if (2L * count < bestBytes) {
        best = Kind.OFFSETS;
        bestBytes = 2L * count;
      }
      if (increasing) {
        long bitmap = (span + 7) / 8;
        if (bitmap < bestBytes) {
          best = Kind.BITMAP;
          bestBytes = bitmap;
        }
        long runList = 4L * (runs - 1);
        if (runList <= bestBytes) {
          best = Kind.RUNS;
          bestBytes = runList;
        }
      }
    }
    return new Choice(best, (int) bestBytes, min);
  }

  /** Position of slot {@code s} (of the slots the codes were made for). */
  int position(int s) {
    return switch (kind) {
      case RUNS -> {
        int p = base + s;
        for (int at = 0; at < data.length; at += 4) {
          int slot = getShort(data, at);
          if (slot > s) {
            break;
          }
          p = base + getShort(data, at + 2) + (s - slot);
        }
        yield p;
      }
      case BITMAP -> {
        int seen = -1;
        for (int i = 0; ; i++) {
          if ((data[i >>> 3] & (1 << (i & 7))) != 0 && ++seen == s) {
            yield base + i;
          }
        }
      }
      case OFFSETS -> base + getShort(data, 2 * s);
      case ABSOLUTE -> getInt(data, 4 * s);
    };
  }

  /** Writes the positions of slots {@code [0, count)} into {@code dst[off..off+count)}. */
  void decode(int count, int[] dst, int off) {
    switch (kind) {
      case RUNS -> {
        int p = base;
        int s = 0;
        for (int at = 0; at <= data.length; at += 4) {
          int end = at < data.length ? getShort(data, at) : count;
          for (; s < end; s++) {
            dst[off + s] = p++;
          }
          if (at < data.length) {
            p = base + getShort(data, at + 2);
          }
        }
      }
      case BITMAP -> {
        int s = 0;
        for (int i = 0; s < count; i++) {
          if ((data[i >>> 3] & (1 << (i & 7))) != 0) {
            dst[off + s++] = base + i;
          }
        }
      }
      case OFFSETS -> {
        for (int s = 0; s < count; s++) {
          dst[off + s] = base + getShort(data, 2 * s);
        }
      }
      case ABSOLUTE -> {
        for (int s = 0; s < count; s++) {
          dst[off + s] = getInt(data, 4 * s);
        }
      }
    }
  }

  private static void putShort(byte[] d, int at, int v) {
    d[at] = (byte) v;
    d[at + 1] = (byte) (v >>> 8);
  }

  private static int getShort(byte[] d, int at) {
    return (d[at] & 0xff) | (d[at + 1] & 0xff) << 8;
  }

  private static int getInt(byte[] d, int at) {
    return (d[at] & 0xff) | (d[at + 1] & 0xff) << 8 | (d[at + 2] & 0xff) << 16 | d[at + 3] << 24;
  }
}
