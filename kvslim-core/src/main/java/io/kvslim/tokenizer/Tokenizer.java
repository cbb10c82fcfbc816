package io.kvslim.tokenizer;

import io.kvslim.gguf.GgufFile;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.Comparator;
import java.util.List;
import java.util.Map;

/**
 * A model's tokenizer, read from GGUF metadata ({@code tokenizer.ggml.*}): text to token ids and
 * back, reproducing llama.cpp's tokenization exactly. Two kinds exist: SentencePiece-style ({@code
 * tokenizer.ggml.model = llama}, {@link SpmTokenizer}) and GPT-2 byte-level BPE ({@code gpt2},
 * {@link BpeTokenizer}). Instances are immutable and thread-safe.
 */
public abstract sealed class Tokenizer permits SpmTokenizer, BpeTokenizer {
  /** Token texts that end generation whatever the metadata says (as llama.cpp decides). */
  private static final List<String> END_OF_GENERATION_TEXTS =
      List.of(
          "<|eot_id|>",
          "<|im_end|>",
          "<|end|>",
          "<end_of_turn>",
          "<|endoftext|>",
          "<|eom_id|>",
          "<EOT>");

  protected final String[] pieces;
  protected final float[] scores;
  protected final TokenType[] types;
  protected final Map<String, Integer> ids;
  protected final boolean addSpacePrefix;
  private final boolean addBos;
  private final boolean addEos;
  private final int bos;
  private final int eos;
  private final int unk;
  private final boolean[] endOfGeneration;
  private final boolean[] stripRight;

  /** Control, unknown and user-defined tokens, longest text first. */
  private final int[] specialTokens;

  private final SpecialTokenTrie specialTrie;

  private final byte[][] bytesOfToken;

  /** Loads the tokenizer described by a model's (or a vocab-only) GGUF file. */
  public static Tokenizer fromGguf(GgufFile gguf) {
    return switch (TokenizerConfig.model(gguf)) {
      case "llama" -> new SpmTokenizer(new TokenizerConfig(gguf, false));
      case "gpt2" -> new BpeTokenizer(new TokenizerConfig(gguf, true), gguf);
      default -> throw new IllegalStateException("unreachable");
    };
  }

  Tokenizer(TokenizerConfig config) {
    this.pieces = config.pieces;
    this.scores = config.scores;
    this.types = config.types;
    this.ids = config.ids;
    this.addSpacePrefix = config.addSpacePrefix;
    this.addBos = config.addBos;
    this.addEos = config.addEos;
    this.bos = config.bos;
    this.eos = config.eos;
    this.unk = config.unk;
    int n = pieces.length;
    endOfGeneration = new boolean[n];
    for (String text : END_OF_GENERATION_TEXTS) {
      Integer id = ids.get(text);
      if (id != null) {
        endOfGeneration[id] = true;
        types[id] = TokenType.CONTROL; // llama.cpp treats these as control whatever their type
      }
    }
    for (int id : new int[] {eos, config.eot, config.eom}) {
      if (id >= 0) {
        endOfGeneration[id] = true;
      }
    }
    List<Integer> special = new ArrayList<>();
    for (int id = 0; id < n; id++) {
      if (types[id].isSpecial()) {
        special.add(id);
      }
    }
    special.sort(
        Comparator.<Integer>comparingInt(id -> -pieces[id].length()).thenComparingInt(id -> id));
    specialTokens = special.stream().mapToInt(Integer::intValue).toArray();
    specialTrie = new SpecialTokenTrie(pieces, specialTokens);
    stripRight = new boolean[n];
    if (config.phi3) {
      // Phi-3's special tokens swallow the whitespace after them, except these three.
      for (int id : specialTokens) {
        stripRight[id] = true;
      }
      setIfPresent(stripRight, "</s>", true);
      for (String text : List.of("<unk>", "<s>", "<|endoftext|>")) {
        setIfPresent(stripRight, text, false);
      }
    }
    bytesOfToken = new byte[n][];
  }

  private void setIfPresent(boolean[] flags, String text, boolean value) {
    Integer id = ids.get(text);
    if (id != null) {
      flags[id] = value;
    }
  }

  /** Builds the per-token byte cache; subclasses call this at the end of their constructor. */
  protected final void cacheTokenBytes() {
    for (int id = 0; id < pieces.length; id++) {
      bytesOfToken[id] = computeTokenBytes(id);
    }
  }

  // ---- encoding -------------------------------------------------------------------------------

  /**
   * Token ids for {@code text}. With {@code addSpecial}, BOS and EOS are added as the model's
   * metadata asks ({@code tokenizer.ggml.add_bos_token}, {@code add_eos_token}). With {@code
   * parseSpecial}, control tokens written in the text ({@code <s>}, {@code <|im_start|>}...) become
   * their ids; otherwise they are tokenized as plain text. User-defined tokens are always matched.
   */
  public int[] encode(String text, boolean addSpecial, boolean parseSpecial) {
    IntList out = new IntList(text.length() / 3 + 4);
    if (addSpecial && addBos && bos >= 0) {
      out.add(bos);
    }
    boolean afterSpecial = true;
    for (Fragment f : partition(text, parseSpecial)) {
      if (f.token >= 0) {
        out.add(f.token);
        afterSpecial = true;
      } else {
        encodeText(text.substring(f.start, f.end), afterSpecial, out);
        afterSpecial = false;
      }
    }
    if (addSpecial && addEos && eos >= 0) {
      out.add(eos);
    }
    return out.toArray();
  }

  /** Tokenizes plain text (no special tokens in it); {@code afterSpecial} at text start too. */
  abstract void encodeText(String text, boolean afterSpecial, IntList out);

  /** A piece of the input: either text {@code [start, end)} or a special token. */
  private record Fragment(int token, int start, int end) {}

  /**
   * Cuts out every literal occurrence of the special tokens, longest token first (each token is
   * searched in what the longer ones left), as llama.cpp does. Tokens marked to strip on the right
   * also remove the ASCII whitespace that follows them.
   */
  private List<Fragment> partition(String text, boolean parseSpecial) {
    List<Fragment> fragments = new ArrayList<>();
    if (text.isEmpty()) {
      return fragments;
    }
    fragments.add(new Fragment(-1, 0, text.length()));
    BitSet occurring = specialTrie.occurring(text);
    for (int id : specialTokens) {
      if (!occurring.get(id) || (!parseSpecial && types[id] != TokenType.USER_DEFINED)) {
        continue;
      }
      String piece = pieces[id];
      List<Fragment> next = null;
      for (int f = 0; f < fragments.size(); f++) {
        Fragment frag = fragments.get(f);
        int match = frag.token < 0 ? text.indexOf(piece, frag.start, frag.end) : -1;
        if (match < 0 || match + piece.length() > frag.end) {
          if (next != null) {
            next.add(frag);
          }
          continue;
        }
        if (next == null) {
          next = new ArrayList<>(fragments.subList(0, f));
        }
        int start = frag.start;
        while (match >= 0 && match + piece.length() <= frag.end) {
          if (match > start) {
            next.add(new Fragment(-1, start, match));
          }
          next.add(new Fragment(id, match, match + piece.length()));
          start = match + piece.length();
          if (stripRight[id]) {
            while (start < frag.end && isCSpace(text.charAt(start))) {
              start++;
            }
          }
          match = text.indexOf(piece, start, frag.end);
        }
        if (start < frag.end) {
          next.add(new Fragment(-1, start, frag.end));
        }
      }
      if (next != null) {
        fragments = next;
      }
    }
    return fragments;
  }

  private static boolean isCSpace(char c) {
    return c == ' ' || (c >= '\t' && c <= '\r');
  }

  // ---- decoding -------------------------------------------------------------------------------

  /**
   * The text of {@code ids}. Control and unknown tokens produce nothing; when the model adds a
   * space prefix (SentencePiece), the first space of the first text is removed, so that {@code
   * decode(encode(text, ...))} gives back {@code text}. Spaces are not "cleaned up" around
   * punctuation (llama.cpp's optional clean-up for some BPE models is not applied).
   */
  public String decode(int[] ids) {
    StreamingDecoder decoder = streamingDecoder(true);
    StringBuilder sb = new StringBuilder();
    for (int id : ids) {
      sb.append(decoder.feed(id));
    }
    return sb.append(decoder.flush()).toString();
  }

  /**
   * A decoder to feed one token at a time, for output during generation; it emits text only once
   * its UTF-8 bytes are complete. With {@code startOfText}, the first space is removed as in {@link
   * #decode}; pass false to decode a continuation.
   */
  public StreamingDecoder streamingDecoder(boolean startOfText) {
    return new StreamingDecoder(this, startOfText && addSpacePrefix);
  }

  /** A streaming decoder for a whole sequence: its output, concatenated, equals {@link #decode}. */
  public StreamingDecoder streamingDecoder() {
    return streamingDecoder(true);
  }

  /** Whether {@link #decode} renders this token (control and unknown tokens it skips). */
  boolean rendersAsText(int id) {
    TokenType t = types[id];
    return t != TokenType.CONTROL && t != TokenType.UNKNOWN;
  }

  /**
   * The bytes this token stands for in text: spaces for U+2581 (SentencePiece), the byte of a
   * {@code <0xXX>} token, the bytes behind GPT-2's byte characters; the literal text for control,
   * unknown and user-defined tokens; nothing for unused ones. A token may hold part of a UTF-8
   * character. The array is shared: do not modify it.
   */
  public byte[] tokenBytes(int id) {
    checkId(id);
    return bytesOfToken[id];
  }

  abstract byte[] computeTokenBytes(int id);

  // ---- vocabulary -----------------------------------------------------------------------------

  /**
   * The token's entry in the vocabulary, as stored (e.g. {@code ▁the}, {@code Ġthe}, {@code <s>}).
   */
  public String piece(int id) {
    checkId(id);
    return pieces[id];
  }

  /** The id of a vocabulary entry, or -1 if there is none. */
  public int tokenId(String piece) {
    Integer id = ids.get(piece);
    return id == null ? -1 : id;
  }

  public TokenType tokenType(int id) {
    checkId(id);
    return types[id];
  }

  public int vocabSize() {
    return pieces.length;
  }

  /** The beginning-of-sequence token, or -1 if the model has none. */
  public int bos() {
    return bos;
  }

  /** The end-of-sequence token, or -1 if the model has none. */
  public int eos() {
    return eos;
  }

  /** The unknown token, or -1 if the model has none. */
  public int unk() {
    return unk;
  }

  /** Whether {@link #encode} with {@code addSpecial} starts with {@link #bos()}. */
  public boolean addsBos() {
    return addBos && bos >= 0;
  }

  /** Whether generation stops at this token (EOS, end of turn, end of message...). */
  public boolean isEog(int id) {
    return id >= 0 && id < endOfGeneration.length && endOfGeneration[id];
  }

  /** {@code llama} (SentencePiece) or {@code gpt2} (byte-level BPE). */
  public abstract String model();

  private void checkId(int id) {
    if (id < 0 || id >= pieces.length) {
      throw new IllegalArgumentException(
          "token id " + id + " is out of range (vocabulary has " + pieces.length + " tokens)");
    }
  }

  static byte[] utf8(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }
}
