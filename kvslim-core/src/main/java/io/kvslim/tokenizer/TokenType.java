package io.kvslim.tokenizer;

/** The kind of a vocabulary entry, as stored in {@code tokenizer.ggml.token_type}. */
public enum TokenType {
  UNDEFINED,
  NORMAL,
  UNKNOWN,
  CONTROL,
  USER_DEFINED,
  UNUSED,
  BYTE;

  /** The type for a GGUF code; codes outside 0..6 are {@link #UNDEFINED}. */
  public static TokenType fromCode(long code) {
    TokenType[] all = values();
    return code >= 0 && code < all.length ? all[(int) code] : UNDEFINED;
  }

  /** Control, unknown and user-defined tokens are matched literally before normal tokenization. */
  boolean isSpecial() {
    return this == CONTROL || this == UNKNOWN || this == USER_DEFINED;
  }
}
