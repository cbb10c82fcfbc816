package io.kvslim.engine;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.List;
import org.junit.jupiter.api.Test;

class StopMatcherTest {
  private static String run(StopMatcher m, String... pieces) {
    StringBuilder out = new StringBuilder();
    for (String p : pieces) {
      out.append(m.feed(p));
      if (m.stopped()) {
        return out.toString();
      }
    }
    return out.append(m.flush()).toString();
  }

  @Test
  void withoutStopsTextPassesThrough() {
    StopMatcher m = new StopMatcher(List.of());
    assertThat(m.feed("abc")).isEqualTo("abc");
    assertThat(m.stopped()).isFalse();
  }

  @Test
  void stopSplitAcrossPiecesIsNeverEmitted() {
    StopMatcher m = new StopMatcher(List.of("END"));
    assertThat(m.feed("hello E")).isEqualTo("hello ");
    assertThat(m.feed("N")).isEmpty();
    assertThat(m.feed("D and more")).isEmpty();
    assertThat(m.stopped()).isTrue();
  }

  @Test
  void heldBackPrefixIsReleasedWhenItIsNotAStop() {
    StopMatcher m = new StopMatcher(List.of("END"));
    assertThat(run(m, "an E", "nd", " of it")).isEqualTo("an End of it");
    assertThat(m.stopped()).isFalse();
  }

  @Test
  void earliestOfSeveralStopsWins() {
    StopMatcher m = new StopMatcher(List.of("world", "lo"));
    assertThat(run(m, "hello world")).isEqualTo("hel");
  }

  @Test
  void textEndingInAStopPrefixIsFlushedAtTheEnd() {
    StopMatcher m = new StopMatcher(List.of("###"));
    assertThat(run(m, "a #", "#")).isEqualTo("a ##");
  }
}
