package io.kvslim.bench;

import java.util.SplittableRandom;

/**
 * Seeded text without digits: plain sentences for haystacks and pronounceable pseudo-words for keys
 * and word lists. Nothing is downloaded; the same seed gives the same text.
 */
public final class SyntheticText {
  private SyntheticText() {}

  private static final String[] NOUNS = {
    "river", "garden", "window", "teacher", "village", "harbour", "engine", "letter", "market",
    "forest", "bridge", "kitchen", "painter", "station", "island", "mountain", "library", "farmer",
    "bottle", "lantern", "meadow", "sailor", "tower", "valley", "basket", "violin", "orchard",
    "castle", "doctor", "pencil", "blanket", "compass", "candle", "wagon", "ladder", "mirror"
  };
  private static final String[] ADJECTIVES = {
    "quiet", "old", "bright", "narrow", "warm", "distant", "heavy", "gentle", "small", "golden",
    "patient", "crooked", "silver", "empty", "busy", "careful", "pale", "tall"
  };
  private static final String[] VERBS = {
    "watched", "carried", "followed", "painted", "visited", "repaired", "remembered", "passed",
    "opened", "described", "found", "crossed", "cleaned", "measured", "admired", "left"
  };
  private static final String[] LINKS = {
    "near", "behind", "beside", "above", "under", "beyond", "toward", "across"
  };
  private static final String[] SYLLABLES = {
    "ba", "ko", "ri", "tu", "me", "sa", "lo", "vi", "ne", "da", "fu", "ga", "pi", "zo", "ce", "mu",
    "ta", "le", "ro", "ki"
  };

  /**
   * About {@code words} words of sentences like "The quiet river passed the tower near the forest."
   */
  public static String prose(long seed, int words) {
    SplittableRandom r = new SplittableRandom(seed);
    StringBuilder sb = new StringBuilder(words * 7);
    int n = 0;
    int inParagraph = 0;
    while (n < words) {
      sb.append("The ")
          .append(pick(r, ADJECTIVES))
          .append(' ')
          .append(pick(r, NOUNS))
          .append(' ')
          .append(pick(r, VERBS))
          .append(" the ")
          .append(pick(r, NOUNS))
          .append(' ')
          .append(pick(r, LINKS))
          .append(" the ")
          .append(pick(r, NOUNS))
          .append('.');
      n += 10;
      if (++inParagraph == 6) {
        sb.append("\n\n");
        inParagraph = 0;
      } else {
        sb.append(' ');
      }
    }
    return sb.toString().strip();
  }

  /** A common noun (for needle keys). */
  public static String noun(SplittableRandom r) {
    return pick(r, NOUNS);
  }

  /** A pseudo-word of 2 to 4 syllables, lower case. */
  public static String pseudoWord(SplittableRandom r) {
    int n = 2 + r.nextInt(3);
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < n; i++) {
      sb.append(pick(r, SYLLABLES));
    }
    return sb.toString();
  }

  /** A variable name of five capital letters. */
  public static String variableName(SplittableRandom r) {
    StringBuilder sb = new StringBuilder(5);
    for (int i = 0; i < 5; i++) {
      sb.append((char) ('A' + r.nextInt(26)));
    }
    return sb.toString();
  }

  /** A number of exactly {@code digits} digits (no leading zero). */
  public static String number(SplittableRandom r, int digits) {
    long lo = (long) Math.pow(10, digits - 1);
    return Long.toString(lo + r.nextLong(9 * lo));
  }

  private static String pick(SplittableRandom r, String[] words) {
    return words[r.nextInt(words.length)];
  }
}
