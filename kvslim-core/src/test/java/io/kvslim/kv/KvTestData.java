package io.kvslim.kv;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/** Random tokens and queries with fixed seeds, and an observer that records what it sees. */
public final class KvTestData {
  private KvTestData() {}

  public static float[] gaussian(Random random, int count) {
    float[] x = new float[count];
    for (int i = 0; i < count; i++) {
      x[i] = (float) random.nextGaussian();
    }
    return x;
  }

  public static int[] range(int from, int count) {
    int[] p = new int[count];
    for (int i = 0; i < count; i++) {
      p[i] = from + i;
    }
    return p;
  }

  /** Records every observed probability row as a copy. */
  public static final class RecordingObserver implements AttentionObserver {
    public final List<String> heads = new ArrayList<>();
    public final List<float[]> rows = new ArrayList<>();

    @Override
    public void observe(int queryIndex, int head, int kvHead, float[] probs, int count) {
      heads.add(queryIndex + "/" + head + "/" + kvHead);
      rows.add(java.util.Arrays.copyOf(probs, count));
    }
  }
}
