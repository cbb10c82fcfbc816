package io.kvslim.tokenizer;

/**
 * The coarse Unicode classes the BPE pre-tokenizer regexes use ({@code \p{L}}, {@code \p{N}},
 * {@code \p{P}}, {@code \p{M}}, {@code \p{S}}) and the whitespace set they treat as {@code \s}. The
 * whitespace set is Unicode's White_Space property (the set llama.cpp uses), which differs from
 * {@link Character#isWhitespace} (no NBSP there) and from Java's regex {@code \s} (ASCII).
 */
final class CodepointClass {
  static final int OTHER = 0;
  static final int NUMBER = 1;
  static final int LETTER = 2;
  static final int PUNCTUATION = 3;
  static final int MARK = 4;
  static final int SYMBOL = 5;

  private CodepointClass() {}

  static int of(int cp) {
    return switch (Character.getType(cp)) {
      case Character.UPPERCASE_LETTER,
          Character.LOWERCASE_LETTER,
          Character.TITLECASE_LETTER,
          Character.MODIFIER_LETTER,
          Character.OTHER_LETTER ->
          LETTER;
      case Character.DECIMAL_DIGIT_NUMBER, Character.LETTER_NUMBER, Character.OTHER_NUMBER ->
          NUMBER;
      case Character.NON_SPACING_MARK, Character.ENCLOSING_MARK, Character.COMBINING_SPACING_MARK ->
          MARK;
      case Character.CONNECTOR_PUNCTUATION,
          Character.DASH_PUNCTUATION,
          Character.START_PUNCTUATION,
          Character.END_PUNCTUATION,
          Character.INITIAL_QUOTE_PUNCTUATION,
          Character.FINAL_QUOTE_PUNCTUATION,
          Character.OTHER_PUNCTUATION ->
          PUNCTUATION;
      case Character.MATH_SYMBOL,
          Character.CURRENCY_SYMBOL,
          Character.MODIFIER_SYMBOL,
          Character.OTHER_SYMBOL ->
          SYMBOL;
      default -> OTHER;
    };
  }

  /** Unicode White_Space. */
  static boolean isWhitespace(int cp) {
    return (cp >= 0x09 && cp <= 0x0D)
        || cp == 0x20
        || cp == 0x85
        || cp == 0xA0
        || cp == 0x1680
        || (cp >= 0x2000 && cp <= 0x200A)
        || cp == 0x2028
        || cp == 0x2029
        || cp == 0x202F
        || cp == 0x205F
        || cp == 0x3000;
  }
}
