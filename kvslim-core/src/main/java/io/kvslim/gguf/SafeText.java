package io.kvslim.gguf;

/**
 * Makes text from a file (metadata keys and strings, tensor names) safe to print in a one-line
 * message: control characters (C0, DEL, C1), line and paragraph separators and the bidirectional
 * overrides are written as {@code \xNN} or {@code \\uNNNN}, so a crafted name can neither break the
 * line, hide itself nor reorder the terminal's text. Every message that quotes file content goes
 * through {@link #of}; the CLI's error printer passes whole messages through {@link #escape}.
 */
public final class SafeText {
  private SafeText() {}

  /** Longest quoted text kept in a message, in characters; longer text is cut with "...". */
  public static final int MAX_CHARS = 120;

  /** {@code s} escaped and cut to {@link #MAX_CHARS} characters. */
  public static String of(String s) {
    if (s == null) {
      return "null";
    }
    boolean cut = s.length() > MAX_CHARS;
    String e = escape(cut ? s.substring(0, MAX_CHARS) : s);
    return cut ? e + "... (" + s.length() + " chars)" : e;
  }

  /** {@code s} with every unsafe character escaped (no length limit). */
  public static String escape(String s) {
    int i = 0;
    while (i < s.length() && !unsafe(s.charAt(i))) {
      i++;
    }
    if (i == s.length()) {
      return s;
    }
    StringBuilder sb = new StringBuilder(s.length() + 16).append(s, 0, i);
    for (; i < s.length(); i++) {
      char c = s.charAt(i);
      if (!unsafe(c)) {
        sb.append(c);
      } else if (c < 0x100) {
        sb.append(String.format("\\x%02x", (int) c));
      } else {
        sb.append(String.format("\\u%04x", (int) c));
      }
    }
    return sb.toString();
  }

  private static boolean unsafe(char c) {
    return c < 0x20
        || (c >= 0x7f && c < 0xa0)
        || c == '\u2028'
        || c == '\u2029'
        || (c >= '\u202a' && c <= '\u202e')
        || (c >= '\u2066' && c <= '\u2069')
        || c == '\u200e'
        || c == '\u200f'
        || c == '\u061c';
  }
}
