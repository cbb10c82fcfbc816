package io.kvslim.tokenizer;

import java.util.Arrays;

/** A growable list of ints without boxing. */
final class IntList {
  private int[] items;
  private int size;

  IntList() {
    this(16);
  }

  IntList(int capacity) {
    items = new int[Math.max(4, capacity)];
  }

  void add(int value) {
    if (size == items.length) {
      items = Arrays.copyOf(items, size * 2);
    }
    items[size++] = value;
  }

  void addAll(int[] values) {
    for (int v : values) {
      add(v);
    }
  }

  int get(int i) {
    return items[i];
  }

  int size() {
    return size;
  }

  int[] toArray() {
    return Arrays.copyOf(items, size);
  }
}
