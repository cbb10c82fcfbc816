package io.kvslim.tokenizer;

import io.kvslim.gguf.GgufFile;
import java.io.ByteArrayOutputStream;
import java.util.HashMap;
import java.util.Map;
import java.util.PriorityQueue;
import java.util.concurrent.ConcurrentHashMap;

/**
 * GPT-2-style byte-level BPE (GPT-2, Qwen, Llama 3, StarCoder, DeepSeek, Falcon...): the text is
 * split into words by the model's pre-tokenizer regexes, each word's UTF-8 bytes are written as
 * GPT-2's byte characters, and adjacent symbols are merged by the rank of their pair in {@code
 * tokenizer.ggml.merges}, lowest rank first (leftmost on ties). Results are cached per word.
 */
final class BpeTokenizer extends Tokenizer {
  private static final int MAX_CACHED_WORDS = 100_000;

  private final PreTokenizer preTokenizer;
  private final boolean ignoreMerges;

  /** Rank of each merge, keyed by "left right" as stored in the merges list. */
  private final Map<String, Integer> mergeRanks;

  private final Map<String, int[]> wordCache = new ConcurrentHashMap<>();

  BpeTokenizer(TokenizerConfig config, GgufFile gguf) {
    super(config);
    this.preTokenizer = config.preTokenizer;
    this.ignoreMerges = config.ignoreMerges;
    String key = "tokenizer.ggml.merges";
    if (!gguf.has(key)) {
      throw new IllegalArgumentException(
          gguf.path() + ": BPE tokenizer metadata '" + key + "' (the merges) is missing");
    }
    String[] merges = gguf.getStringArray(key);
    mergeRanks = new HashMap<>(merges.length * 2);
    for (int rank = 0; rank < merges.length; rank++) {
      mergeRanks.putIfAbsent(merges[rank], rank);
    }
    cacheTokenBytes();
  }

  @Override
  public String model() {
    return "gpt2";
  }

  @Override
  void encodeText(String text, boolean afterSpecial, IntList out) {
    for (String word : preTokenizer.split(text)) {
      String symbols = ByteUnicode.encode(utf8(word));
      int[] tokens = wordCache.get(symbols);
      if (tokens == null) {
        tokens = mergeWord(symbols);
        if (wordCache.size() >= MAX_CACHED_WORDS) {
          wordCache.clear();
        }
        wordCache.put(symbols, tokens);
      }
      out.addAll(tokens);
    }
  }

  /** BPE over one word written in byte characters (one char per byte). */
  private int[] mergeWord(String word) {
    if (ignoreMerges) {
      Integer whole = ids.get(word);
      if (whole != null) {
        return new int[] {whole};
      }
    }
    int n = word.length();
    int[] length = new int[n];
    int[] prev = new int[n];
    int[] next = new int[n];
    for (int i = 0; i < n; i++) {
      length[i] = 1;
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
    }
    // A candidate is (rank << 32 | left): the queue pops the lowest rank, then the leftmost.
    PriorityQueue<long[]> queue =
        new PriorityQueue<>(
            (a, b) -> a[0] != b[0] ? Long.compare(a[0], b[0]) : Long.compare(a[1], b[1]));
    for (int i = 1; i < n; i++) {
      propose(word, length, i - 1, i, queue);
    }
    while (!queue.isEmpty()) {
      long[] c = queue.poll();
      int left = (int) c[1];
      int right = (int) c[2];
      // Stale when either side has changed since the candidate was made.
      if (length[left] != (int) c[3] || length[right] != (int) c[4]) {
        continue;
      }
      length[left] += length[right];
      length[right] = 0;
      next[left] = next[right];
      if (next[right] >= 0) {
        prev[next[right]] = left;
      }
      propose(word, length, prev[left], left, queue);
      propose(word, length, left, next[left], queue);
    }
    IntList out = new IntList(n);
    for (int i = 0; i != -1; i = next[i]) {
      String symbol = word.substring(i, i + length[i]);
      Integer id = ids.get(symbol);
      if (id != null) {
        out.add(id);
      } else {
        // Not a token (a vocabulary without all 256 byte tokens): keep the parts that are.
        for (int k = 0; k < symbol.length(); k++) {
          Integer part = ids.get(symbol.substring(k, k + 1));
          if (part != null) {
            out.add(part);
          }
        }
      }
    }
    return out.toArray();
  }

  private void propose(
      String word, int[] length, int left, int right, PriorityQueue<long[]> queue) {
    if (left < 0 || right < 0) {
      return;
    }
    String pair =
        word.substring(left, left + length[left])
            + ' '
            + word.substring(right, right + length[right]);
    Integer rank = mergeRanks.get(pair);
    if (rank != null) {
      queue.add(new long[] {rank, left, right, length[left], length[right]});
    }
  }

  @Override
  byte[] computeTokenBytes(int id) {
    return switch (types[id]) {
      case NORMAL -> decodeByteChars(pieces[id]);
      case CONTROL, UNKNOWN, USER_DEFINED -> utf8(pieces[id]);
      default -> new byte[0];
    };
  }

  /** The bytes behind a string of GPT-2 byte characters; other characters stand for themselves. */
  private static byte[] decodeByteChars(String piece) {
    ByteArrayOutputStream out = new ByteArrayOutputStream(piece.length());
    for (int i = 0; i < piece.length(); i++) {
      int b = ByteUnicode.decode(piece.charAt(i));
      if (b >= 0) {
        out.write(b);
      } else {
        int cp = piece.codePointAt(i);
        out.writeBytes(utf8(new String(Character.toChars(cp))));
        i += Character.charCount(cp) - 1;
      }
    }
    return out.toByteArray();
  }
}
