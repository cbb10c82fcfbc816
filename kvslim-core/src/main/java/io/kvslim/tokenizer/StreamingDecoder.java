package io.kvslim.tokenizer;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * Turns tokens into text one at a time, as they are generated. A token may end inside a UTF-8
 * character (byte-fallback and byte-level tokens split emoji and CJK characters); such trailing
 * bytes are held back until the character is complete, so no replacement characters appear for
 * valid text. Not thread-safe: one decoder per sequence. Get one from {@link
 * Tokenizer#streamingDecoder}.
 */
public final class StreamingDecoder {
  private final Tokenizer tokenizer;
  private boolean stripSpace;
  private byte[] pending = new byte[0];

  StreamingDecoder(Tokenizer tokenizer, boolean stripLeadingSpace) {
    this.tokenizer = tokenizer;
    this.stripSpace = stripLeadingSpace;
  }

  /** Adds a token and returns the text that is now complete (often empty, never null). */
  public String feed(int id) {
    byte[] bytes = tokenizer.tokenBytes(id);
    if (!tokenizer.rendersAsText(id)) {
      return "";
    }
    int from = 0;
    if (stripSpace) {
      stripSpace = false;
      if (bytes.length > 0 && bytes[0] == ' ') {
        from = 1;
      }
    }
    byte[] all = Arrays.copyOf(pending, pending.length + bytes.length - from);
    System.arraycopy(bytes, from, all, pending.length, bytes.length - from);
    int complete = completePrefix(all);
    pending = Arrays.copyOfRange(all, complete, all.length);
    return new String(all, 0, complete, StandardCharsets.UTF_8);
  }

  /** Returns what is held back (an incomplete character becomes U+FFFD) and empties the buffer. */
  public String flush() {
    String rest = new String(pending, StandardCharsets.UTF_8);
    pending = new byte[0];
    return rest;
  }

  /** Bytes held back because they end in an incomplete UTF-8 character. */
  public int pendingBytes() {
    return pending.length;
  }

  /**
   * The length of the longest prefix that does not end inside a UTF-8 character that later bytes
   * could still complete. Invalid bytes count as complete (they decode to U+FFFD).
   */
  static int completePrefix(byte[] b) {
    int n = b.length;
    // The last lead byte can only be among the last 4 bytes.
    for (int i = n - 1; i >= Math.max(0, n - 4); i--) {
      int v = b[i] & 0xFF;
      if ((v & 0xC0) == 0x80) {
        continue; // continuation byte: keep looking for its lead
      }
      int need = v >= 0xF0 && v <= 0xF4 ? 4 : v >= 0xE0 ? 3 : v >= 0xC2 ? 2 : 1;
      if (v >= 0xF5) {
        need = 1;
      }
      return n - i < need ? i : n;
    }
    return n;
  }
}
