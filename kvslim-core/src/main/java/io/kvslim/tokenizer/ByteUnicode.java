package io.kvslim.tokenizer;

/**
 * GPT-2's reversible mapping between bytes and printable characters: byte-level BPE vocabularies
 * store every token as a string of these characters, one per byte. Printable Latin-1 bytes map to
 * themselves; the other 68 bytes (controls, space, DEL, NBSP, soft hyphen...) map, in increasing
 * order, to U+0100 onwards.
 */
final class ByteUnicode {
  private static final char[] BYTE_TO_CHAR = new char[256];
  private static final int[] CHAR_TO_BYTE = new int[512];

  static {
    java.util.Arrays.fill(CHAR_TO_BYTE, -1);
    int next = 256;
    for (int b = 0; b < 256; b++) {
      boolean printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      char c = (char) (printable ? b : next++);
      BYTE_TO_CHAR[b] = c;
      CHAR_TO_BYTE[c] = b;
    }
  }

  private ByteUnicode() {}

  /** The characters standing for {@code bytes}, one per byte. */
  static String encode(byte[] bytes) {
    char[] out = new char[bytes.length];
    for (int i = 0; i < bytes.length; i++) {
      out[i] = BYTE_TO_CHAR[bytes[i] & 0xFF];
    }
    return new String(out);
  }

  /** The byte a character stands for, or -1 if it is not one of the 256 mapped characters. */
  static int decode(char c) {
    return c < CHAR_TO_BYTE.length ? CHAR_TO_BYTE[c] : -1;
  }
}
