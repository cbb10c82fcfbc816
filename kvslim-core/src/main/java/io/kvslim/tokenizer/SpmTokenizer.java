package io.kvslim.tokenizer;

/**
 * SentencePiece-style tokenizer over a scored vocabulary (Llama 1/2, Mistral, Phi-3...): spaces
 * become U+2581, a space is prepended to the text, then adjacent symbols are merged greedily,
 * always the pair whose merged token has the highest score (leftmost on ties). Characters left that
 * are not tokens fall back to {@code <0xXX>} byte tokens.
 */
final class SpmTokenizer extends Tokenizer {
  static final char SPACE_MARK = '\u2581';

  private final int[] byteTokens = new int[256];

  /**
   * Whether no token has U+2581 right after another character. Then no merge can cross the start of
   * a word ("x▁"), and each word can be merged on its own with the same result, which keeps the
   * merge queue small on long texts.
   */
  private final boolean wordsAreIndependent;

  SpmTokenizer(TokenizerConfig config) {
    super(config);
    boolean independent = true;
    for (String piece : pieces) {
      for (int i = 1; i < piece.length() && independent; i++) {
        independent = !(piece.charAt(i) == SPACE_MARK && piece.charAt(i - 1) != SPACE_MARK);
      }
    }
    wordsAreIndependent = independent;
    for (int b = 0; b < 256; b++) {
      byteTokens[b] = findByteToken(b);
    }
    cacheTokenBytes();
  }

  private int findByteToken(int b) {
    Integer id = ids.get(String.format("<0x%02X>", b));
    if (id == null && b < 0x80) {
      id = ids.get(String.valueOf((char) b));
    }
    return id != null ? id : unk();
  }

  @Override
  public String model() {
    return "llama";
  }

  @Override
  void encodeText(String text, boolean afterSpecial, IntList out) {
    String escaped =
        ((addSpacePrefix && afterSpecial) ? " " + text : text).replace(' ', SPACE_MARK);
    if (!wordsAreIndependent) {
      new Merge(escaped).run(out);
      return;
    }
    int start = 0;
    for (int i = 1; i < escaped.length(); i++) {
      if (escaped.charAt(i) == SPACE_MARK && escaped.charAt(i - 1) != SPACE_MARK) {
        new Merge(escaped.substring(start, i)).run(out);
        start = i;
      }
    }
    new Merge(escaped.substring(start)).run(out);
  }

  /** One run of the merge algorithm over a doubly linked list of symbols (code points at first). */
  private final class Merge {
    private final String text;
    private final int[] start;
    private final int[] length; // in chars; 0 once merged into the symbol on its left
    private final int[] prev;
    private final int[] next;

    /** Candidates keyed by (score descending, left ascending), payload (right, length). */
    private final MergeQueue queue = new MergeQueue();

    Merge(String text) {
      this.text = text;
      int n = text.codePointCount(0, text.length());
      start = new int[n];
      length = new int[n];
      prev = new int[n];
      next = new int[n];
      int pos = 0;
      for (int i = 0; i < n; i++) {
        int len = Character.charCount(text.codePointAt(pos));
        start[i] = pos;
        length[i] = len;
        prev[i] = i - 1;
        next[i] = i + 1 < n ? i + 1 : -1;
        pos += len;
      }
    }

    void run(IntList out) {
      int n = start.length;
      if (n == 0) {
        return;
      }
      for (int i = 1; i < n; i++) {
        propose(i - 1, i);
      }
      while (!queue.isEmpty()) {
        int left = (int) queue.poll();
        long payload = queue.lastPayload();
        int right = (int) (payload >>> 32);
        // Stale when either side has changed since the candidate was made.
        if (length[left] == 0
            || length[right] == 0
            || length[left] + length[right] != (int) payload) {
          continue;
        }
        length[left] += length[right];
        length[right] = 0;
        next[left] = next[right];
        if (next[right] >= 0) {
          prev[next[right]] = left;
        }
        propose(prev[left], left);
        propose(left, next[left]);
      }
      for (int i = 0; i != -1; i = next[i]) {
        String symbol = text.substring(start[i], start[i] + length[i]);
        Integer id = ids.get(symbol);
        if (id != null) {
          out.add(id);
        } else {
          for (byte b : utf8(symbol)) {
            out.add(byteTokens[b & 0xFF]);
          }
        }
      }
    }

    private void propose(int left, int right) {
      if (left < 0 || right < 0) {
        return;
      }
      int len = length[left] + length[right];
      Integer id = ids.get(text.substring(start[left], start[left] + len));
      if (id != null) {
        queue.add(
            MergeQueue.key(MergeQueue.descending(scores[id]), left), MergeQueue.key(right, len));
      }
    }
  }

  @Override
  byte[] computeTokenBytes(int id) {
    return switch (types[id]) {
      case NORMAL -> utf8(pieces[id].replace(SPACE_MARK, ' '));
      case BYTE -> byteOf(pieces[id]);
      case CONTROL, UNKNOWN, USER_DEFINED -> utf8(pieces[id]);
      default -> new byte[0];
    };
  }

  /** The byte of a {@code <0xXX>} token; a malformed one is taken literally. */
  private static byte[] byteOf(String piece) {
    if (piece.length() == 6 && piece.startsWith("<0x") && piece.endsWith(">")) {
      int hi = Character.digit(piece.charAt(3), 16);
      int lo = Character.digit(piece.charAt(4), 16);
      if (hi >= 0 && lo >= 0) {
        return new byte[] {(byte) (hi * 16 + lo)};
      }
    }
    return utf8(piece);
  }
}
