package io.kvslim.tokenizer;

import java.util.Arrays;

/**
 * A binary min-heap of (key, payload) pairs of longs, ordered by key only: the merge candidates of
 * one tokenization, without an object per candidate.
 */
final class MergeQueue {
  private long[] keys = new long[64];
  private long[] payloads = new long[64];
  private int size;
  private long lastPayload;

  boolean isEmpty() {
    return size == 0;
  }

  void add(long key, long payload) {
    if (size == keys.length) {
      keys = Arrays.copyOf(keys, size * 2);
      payloads = Arrays.copyOf(payloads, size * 2);
    }
    int i = size++;
    while (i > 0) {
      int parent = (i - 1) >>> 1;
      if (keys[parent] <= key) {
        break;
      }
      keys[i] = keys[parent];
      payloads[i] = payloads[parent];
      i = parent;
    }
    keys[i] = key;
    payloads[i] = payload;
  }

  /** Removes the smallest key and returns it; its payload is then {@link #lastPayload()}. */
  long poll() {
    long key = keys[0];
    lastPayload = payloads[0];
    long movedKey = keys[--size];
    long movedPayload = payloads[size];
    int i = 0;
    int half = size >>> 1;
    while (i < half) {
      int child = 2 * i + 1;
      if (child + 1 < size && keys[child + 1] < keys[child]) {
        child++;
      }
      if (movedKey <= keys[child]) {
        break;
      }
      keys[i] = keys[child];
      payloads[i] = payloads[child];
      i = child;
    }
    keys[i] = movedKey;
    payloads[i] = movedPayload;
    return key;
  }

  long lastPayload() {
    return lastPayload;
  }

  /** A key ordering by {@code major} ascending, then by {@code minor} (non-negative) ascending. */
  static long key(int major, int minor) {
    return ((long) major << 32) | (minor & 0xFFFFFFFFL);
  }

  /** An int that orders like {@code -score}: higher scores come first. */
  static int descending(float score) {
    int bits = Float.floatToIntBits(score == 0f ? 0f : -score);
    return bits ^ ((bits >> 31) & 0x7FFFFFFF);
  }
}
