package io.kvslim.engine;

import java.util.List;

/**
 * Finds stop strings in streamed text. Text that could be the start of a stop string is held back
 * until the next piece shows whether it is, so no part of a stop string is ever emitted, even when
 * it arrives split over several tokens.
 */
public final class StopMatcher {
  private final List<String> stops;
  private final StringBuilder pending = new StringBuilder();
  private boolean stopped;

  public StopMatcher(List<String> stops) {
    this.stops = List.copyOf(stops);
  }

  /** Adds generated text; returns the text that may now be emitted (never part of a stop). */
  public String feed(String text) {
    if (stopped) {
      return "";
    }
    if (stops.isEmpty()) {
      return text;
    }
    pending.append(text);
    int first = -1;
    for (String s : stops) {
      int i = pending.indexOf(s);
      if (i >= 0 && (first < 0 || i < first)) {
        first = i;
      }
    }
    if (first >= 0) {
      stopped = true;
      String out = pending.substring(0, first);
      pending.setLength(0);
      return out;
    }
    int hold = 0;
    for (String s : stops) {
      hold = Math.max(hold, overlap(pending, s));
    }
    String out = pending.substring(0, pending.length() - hold);
    pending.delete(0, pending.length() - hold);
    return out;
  }

  /** Whether a stop string was found. */
  public boolean stopped() {
    return stopped;
  }

  /** The held-back text, once generation ended without a stop. */
  public String flush() {
    String out = pending.toString();
    pending.setLength(0);
    return out;
  }

  /** Length of the longest suffix of {@code text} that is a proper prefix of {@code stop}. */
  private static int overlap(CharSequence text, String stop) {
    int max = Math.min(text.length(), stop.length() - 1);
    for (int k = max; k > 0; k--) {
      boolean match = true;
      for (int i = 0; i < k && match; i++) {
        match = text.charAt(text.length() - k + i) == stop.charAt(i);
      }
      if (match) {
        return k;
      }
    }
    return 0;
  }
}
