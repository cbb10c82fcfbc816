package io.kvslim.kv.method;

import java.util.Arrays;

/**
 * POD's layer groups (METHODS.md S4) as the cache applies them: {@code firstOf[l]} is the first
 * layer of layer {@code l}'s group ({@code l} itself for a first layer). In a query at position
 * {@code p}, a token at position {@code i} is proximal when {@code i < sinks} or {@code i > p −
 * window} (the query's own token and the {@code window − 1} before it), distant otherwise. A layer
 * that is not first in its group scores its distant tokens with its own queries against its group's
 * first layer's keys and keeps its own values; it drops its own keys of tokens once they are
 * distant.
 */
public record DistantKeys(int[] firstOf, int sinks, int window) {
  public DistantKeys {
    firstOf = firstOf.clone();
    if (sinks < 0 || window < 1) {
      throw new IllegalArgumentException("need sinks >= 0 and window >= 1");
    }
    for (int l = 0; l < firstOf.length; l++) {
      int f = firstOf[l];
      if (f < 0 || f > l || firstOf[f] != f || (f != l && firstOf[l - 1] != f)) {
        throw new IllegalArgumentException(
            "layer " + l + " cannot be in a group that starts at layer " + f);
      }
    }
  }

  /** Whether layer {@code l} reads its group's first layer's keys for distant tokens. */
  public boolean follows(int l) {
    return firstOf[l] != l;
  }

  /** Whether a query at position {@code query} reads the token at {@code position} as distant. */
  public boolean distant(int position, int query) {
    return position >= sinks && position <= query - window;
  }

  @Override
  public int[] firstOf() {
    return firstOf.clone();
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof DistantKeys d
        && Arrays.equals(firstOf, d.firstOf)
        && sinks == d.sinks
        && window == d.window;
  }

  @Override
  public int hashCode() {
    return 31 * (31 * Arrays.hashCode(firstOf) + sinks) + window;
  }

  @Override
  public String toString() {
    return "DistantKeys" + Arrays.toString(firstOf) + ",sinks=" + sinks + ",window=" + window;
  }
}
