package io.kvslim.kv.store;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.Random;
import org.junit.jupiter.api.Test;

/** Every position encoding round-trips, and the cheapest one is chosen. */
class PositionCodesTest {

  static int[] decode(PositionCodes codes, int count) {
    int[] out = new int[count];
    codes.decode(count, out, 0);
    return out;
  }

  static void assertRoundTrip(int[] pos) {
    PositionCodes codes = PositionCodes.encode(pos, 0, pos.length);
    assertThat(decode(codes, pos.length)).containsExactly(pos);
    for (int s = 0; s < pos.length; s++) {
      assertThat(codes.position(s)).isEqualTo(pos[s]);
    }
    assertThat(codes.bytes()).isEqualTo(PositionCodes.bytes(pos, 0, pos.length));
  }

  @Test
  void consecutivePositionsCostNothing() {
    int[] pos = {100, 101, 102, 103, 104};
    PositionCodes codes = PositionCodes.encode(pos, 0, pos.length);
    assertThat(codes.kind()).isEqualTo(PositionCodes.Kind.RUNS);
    assertThat(codes.bytes()).isZero();
    assertThat(codes.isSingleRun()).isTrue();
    assertThat(codes.next(pos.length)).isEqualTo(105);
    assertRoundTrip(pos);
  }

  @Test
  void sinksPlusAWindowAreTwoRuns() {
    int[] pos = new int[32];
    for (int s = 0; s < 4; s++) {
      pos[s] = s;
    }
    for (int s = 4; s < 32; s++) {
      pos[s] = 1000 + s;
    }
    PositionCodes codes = PositionCodes.encode(pos, 0, pos.length);
    assertThat(codes.kind()).isEqualTo(PositionCodes.Kind.RUNS);
    assertThat(codes.bytes()).isEqualTo(4);
    assertRoundTrip(pos);
  }

  @Test
  void denseScatteredPositionsUseABitmapAndSparseOnesOffsets() {
    int[] even = new int[32];
    for (int s = 0; s < 32; s++) {
      even[s] = 500 + 2 * s;
    }
    PositionCodes bitmap = PositionCodes.encode(even, 0, 32);
    assertThat(bitmap.kind()).isEqualTo(PositionCodes.Kind.BITMAP);
    assertThat(bitmap.bytes()).isEqualTo(8); // 63 bits
    assertRoundTrip(even);

    int[] sparse = new int[32];
    for (int s = 0; s < 32; s++) {
      sparse[s] = 7 + 97 * s;
    }
    PositionCodes offsets = PositionCodes.encode(sparse, 0, 32);
    assertThat(offsets.kind()).isEqualTo(PositionCodes.Kind.OFFSETS);
    assertThat(offsets.bytes()).isEqualTo(64);
    assertRoundTrip(sparse);
  }

  @Test
  void spansBeyondSixteenBitsOrDisorderFallBack() {
    int[] wide = {0, 70_000, 140_000};
    PositionCodes abs = PositionCodes.encode(wide, 0, 3);
    assertThat(abs.kind()).isEqualTo(PositionCodes.Kind.ABSOLUTE);
    assertThat(abs.bytes()).isEqualTo(12);
    assertRoundTrip(wide);
    int[] disorder = {10, 5, 6, 7};
    PositionCodes offsets = PositionCodes.encode(disorder, 0, 4);
    assertThat(offsets.kind()).isEqualTo(PositionCodes.Kind.OFFSETS);
    assertRoundTrip(disorder);
  }

  @Test
  void randomIncreasingSetsRoundTripAtTheSmallestSize() {
    Random random = new Random(11);
    for (int trial = 0; trial < 500; trial++) {
      int count = 1 + random.nextInt(64);
      int[] pos = new int[count];
      int p = random.nextInt(1000);
      int maxGap = 1 + random.nextInt(trial % 3 == 0 ? 3 : 400);
      for (int s = 0; s < count; s++) {
        pos[s] = p;
        p += random.nextInt(3) == 0 ? 1 : 1 + random.nextInt(maxGap);
      }
      assertRoundTrip(pos);
      int span = pos[count - 1] - pos[0] + 1;
      int runs = 1;
      for (int s = 1; s < count; s++) {
        runs += pos[s] == pos[s - 1] + 1 ? 0 : 1;
      }
      int cheapest = Math.min(Math.min(4 * (runs - 1), (span + 7) / 8), 2 * count);
      assertThat(PositionCodes.bytes(pos, 0, count)).isEqualTo(cheapest);
    }
  }
}
